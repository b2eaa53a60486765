// SPDX-License-Identifier: GPL-2.0 OR MIT
// Engine behaviour under hostile or degraded conditions.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstring>

#include "bundle.h"
#include "harness.h"

extern "C" {
#include "crc32c.h"
}

using namespace vrtest;

namespace {

struct Pair {
	vrsim::Sim s;
	uint32_t ca = 0, cb = 0;
	explicit Pair(vr_config ca_cfg = base_cfg(), vr_config cb_cfg = base_cfg(), uint64_t seed = 7)
		: s(seed)
	{
		REQUIRE(s.add_node(ca_cfg) == 0);
		REQUIRE(s.add_node(cb_cfg) == 1);
		REQUIRE(vr_ep_open(A().eng, 0, 1, false) == 0);
		REQUIRE(vr_ep_open(B().eng, 0, 1, true) == 0);
		REQUIRE(connect(s, 0, 0, 1, 0, &ca, &cb));
	}
	vrsim::Node &A() { return s.node(0); }
	vrsim::Node &B() { return s.node(1); }
	bool wait(uint64_t cookie, int node = 0, uint64_t limit = 2000000000)
	{
		return s.run([&] { return find(s.node(node), cookie) != nullptr; }, s.now + limit);
	}
};

// Requester-side errno for a NAK reason (docs/wire-format.md).
int vr_nak_reason_errno(uint8_t r)
{
	switch (r) {
	case VR_NAK_BAD_KEY: return -EACCES;
	case VR_NAK_ACCESS: return -EPERM;
	case VR_NAK_BOUNDS: return -ERANGE;
	case VR_NAK_INVALID: return -EINVAL;
	default: return 0;
	}
}

}  // namespace

TEST_CASE("engine setup errors")
{
	vr_config c = base_cfg();
	vr_host_ops ho{};
	c.host = &ho;
	CHECK(vr_engine_mem_size(&c) == 0); // no callbacks
	vrsim::Sim s(1);
	vr_config bad = base_cfg();
	bad.mtu = 1499;
	CHECK(s.add_node(bad) == -EINVAL);
	bad = base_cfg();
	bad.mtu = 65536;
	CHECK(s.add_node(bad) == -EINVAL);
	REQUIRE(s.add_node(base_cfg()) == 0);
	vr_config good = base_cfg();
	good.host = &s.node(0).ops;
	size_t sz = vr_engine_mem_size(&good);
	REQUIRE(sz > 0);
	std::vector<uint64_t> mem(sz / 8);
	vr_engine *e;
	CHECK(vr_engine_create(&good, mem.data(), sz - 8, &e) == -ENOMEM);
	CHECK(vr_ep_open(s.node(0).eng, 4, 1, false) == -EINVAL);
	CHECK(vr_ep_open(s.node(0).eng, 0, 0, false) == -EINVAL);
	REQUIRE(vr_ep_open(s.node(0).eng, 0, 1, false) == 0);
	CHECK(vr_ep_open(s.node(0).eng, 0, 1, false) == -EEXIST);
}

TEST_CASE("peer vanishes: every op fails with -ETIMEDOUT within the retry limit")
{
	vr_config cfg = base_cfg();
	cfg.retry_limit = 5;
	cfg.rto_ns = 100000;
	cfg.rto_max_ns = 400000;
	Pair p(cfg, cfg);
	GuardedBuf src, dst, sink;
	src.init(100000, 1);
	sink.init(100000, 2);
	dst.init(100000, 3);
	REQUIRE(reg(p.A(), 0, src, VR_ACCESS_LOCAL_WRITE) == 0);
	REQUIRE(reg(p.A(), 0, sink, VR_ACCESS_LOCAL_WRITE) == 0);
	REQUIRE(reg(p.B(), 0, dst, VR_ACCESS_ALL) == 0);
	p.s.link(0, 1).down = true;
	p.s.link(1, 0).down = true;
	uint64_t t0 = p.s.now;
	REQUIRE(vr_post_write(p.A().eng, p.ca, src.key, 0, dst.key, 0, 90000, 1) == 0);
	REQUIRE(vr_post_read(p.A().eng, p.ca, sink.key, 0, dst.key, 0, 5000, 2) == 0);
	REQUIRE(vr_post_send(p.A().eng, p.ca, src.key, 0, 10, 9, 3) == 0);
	REQUIRE(vr_post_fadd(p.A().eng, p.ca, dst.key, 0, 1, 4) == 0);
	REQUIRE(vr_post_cswap(p.A().eng, p.ca, dst.key, 8, 0, 1, 5) == 0);
	// run to quiescence: must not hang
	p.s.run(nullptr, p.s.now + 10000000000ull);
	for (uint64_t k = 1; k <= 5; k++) {
		CAPTURE(k);
		REQUIRE(count(p.A(), k) == 1);
		CHECK(find(p.A(), k)->status == -ETIMEDOUT);
	}
	const vr_completion *d = find(p.A(), 777, VR_WC_DISCONNECT);
	REQUIRE(d);
	CHECK(d->status == -ETIMEDOUT);
	CHECK(vr_conn_state(p.A().eng, p.ca) == VR_CONN_ERROR);
	CHECK(vr_post_write(p.A().eng, p.ca, src.key, 0, dst.key, 0, 1, 6) == -ENOTCONN);
	// bound: sum of backed-off RTOs (100+200+400+400+400+400 us) plus slack
	CHECK(p.s.now - t0 < 3000000);
	CHECK(vr_engine_counters(p.A().eng)->timeouts == 6);
	CHECK(vr_disconnect(p.A().eng, p.ca) == 0);
	CHECK(vr_conn_state(p.A().eng, p.ca) == -ENOENT);
	CHECK(vr_engine_next_timeout(p.A().eng) == VR_U64_MAX);
}

TEST_CASE("connect failures: no listener, policy reject, table full, no answer")
{
	vrsim::Sim s(3);
	vr_config cb = base_cfg();
	cb.max_conns = 1;
	REQUIRE(s.add_node(base_cfg()) == 0);
	REQUIRE(s.add_node(cb) == 1);
	REQUIRE(vr_ep_open(s.node(0).eng, 0, 1, false) == 0);
	REQUIRE(vr_ep_open(s.node(1).eng, 0, 1, false) == 0); // not listening
	REQUIRE(vr_ep_open(s.node(1).eng, 1, 1, true) == 0);
	uint32_t c1, c2, c3;
	REQUIRE(vr_connect(s.node(0).eng, 0, s.node(1).mac, 0, 11, &c1) == 0);
	REQUIRE(vr_connect(s.node(0).eng, 0, s.node(1).mac, 3, 12, &c2) == 0); // no such ep
	s.run(nullptr, 1000000000);
	CHECK(find(s.node(0), 11)->status == -ECONNREFUSED);
	CHECK(find(s.node(0), 12)->status == -ECONNREFUSED);
	CHECK(find(s.node(0), 11)->nak_reason == VR_NAK_NO_EP);
	CHECK(find(s.node(0), 12)->nak_reason == VR_NAK_NO_EP);
	CHECK(vr_engine_counters(s.node(0).eng)->naks_rx[VR_NAK_NO_EP] == 2);

	s.node(1).accept = [](uint16_t, const uint8_t *, uint16_t pep) { return pep == 1 ? -1 : 0; };
	REQUIRE(vr_ep_open(s.node(0).eng, 1, 1, false) == 0);
	REQUIRE(vr_connect(s.node(0).eng, 1, s.node(1).mac, 1, 13, &c3) == 0);
	s.run(nullptr, s.now + 1000000000);
	CHECK(find(s.node(0), 13)->status == -ECONNREFUSED);
	CHECK(find(s.node(0), 13)->nak_reason == VR_NAK_REJECTED);
	CHECK(vr_engine_counters(s.node(0).eng)->naks_rx[VR_NAK_REJECTED] == 1);

	uint32_t ok1, ok2;
	REQUIRE(vr_connect(s.node(0).eng, 0, s.node(1).mac, 1, 14, &ok1) == 0);
	s.run(nullptr, s.now + 1000000000);
	CHECK(find(s.node(0), 14)->status == 0);
	CHECK(find(s.node(0), 14)->nak_reason == 0);
	REQUIRE(vr_connect(s.node(0).eng, 0, s.node(1).mac, 1, 15, &ok2) == 0);
	s.run(nullptr, s.now + 1000000000);
	CHECK(find(s.node(0), 15)->status == -ECONNREFUSED); // B's table full
	CHECK(find(s.node(0), 15)->nak_reason == VR_NAK_RESOURCES);
	CHECK(vr_engine_counters(s.node(1).eng)->conn_limit_refused == 1);

	uint8_t ghost[6] = {2, 0, 0, 0, 0, 9};
	uint32_t g;
	REQUIRE(vr_connect(s.node(0).eng, 0, ghost, 0, 16, &g) == 0);
	s.run(nullptr, s.now + 10000000000ull);
	CHECK(find(s.node(0), 16)->status == -ETIMEDOUT);
}

TEST_CASE("forged remote keys and bad requests are NAKed and memory stays untouched")
{
	struct Case {
		const char *name;
		int kind; // 0 write, 1 read, 2 fadd
		int key;  // 0 valid, 1 random, 2 other ep's region, 3 stale (deregistered)
		uint64_t off;
		uint32_t len;
		int want;
	};
	const Case cases[] = {
		{"random rkey", 0, 1, 0, 100, -EACCES},
		{"other endpoint's region", 0, 2, 0, 100, -EACCES},
		{"stale rkey", 0, 3, 0, 100, -EACCES},
		{"write one past the end", 0, 0, 4001, 3000, -ERANGE},
		{"write at huge offset", 0, 0, ~0ull - 10, 5, -ERANGE},
		{"write whose end wraps", 0, 0, ~0ull - 2, 5, -EINVAL},
		{"read beyond end", 1, 0, 4000, 97, -ERANGE},
		{"read without REMOTE_READ", 1, 4, 0, 10, -EPERM},
		{"write without REMOTE_WRITE", 0, 4, 0, 10, -EPERM},
		{"unaligned atomic", 2, 0, 4, 8, -EINVAL},
		{"atomic without right", 2, 4, 0, 8, -EPERM},
		{"atomic past end", 2, 0, 4096, 8, -ERANGE},
	};
	for (const Case &c : cases) {
		CAPTURE(c.name);
		Pair p;
		REQUIRE(vr_ep_open(p.B().eng, 1, 1, false) == 0);
		GuardedBuf src, dst, other, ro, stale, sink;
		src.init(8192, 1);
		dst.init(4096, 2);
		other.init(4096, 3);
		ro.init(4096, 4);
		stale.init(4096, 5);
		sink.init(8192, 6);
		REQUIRE(reg(p.A(), 0, src, 0) == 0);
		REQUIRE(reg(p.A(), 0, sink, VR_ACCESS_LOCAL_WRITE) == 0);
		REQUIRE(reg(p.B(), 0, dst, VR_ACCESS_REMOTE_WRITE | VR_ACCESS_REMOTE_READ |
						   VR_ACCESS_REMOTE_ATOMIC) == 0);
		REQUIRE(reg(p.B(), 1, other, VR_ACCESS_ALL) == 0);
		REQUIRE(reg(p.B(), 0, ro, VR_ACCESS_LOCAL_WRITE) == 0);
		REQUIRE(reg(p.B(), 0, stale, VR_ACCESS_ALL) == 0);
		uint64_t stale_key = stale.key;
		REQUIRE(vr_dereg_mr(p.B().eng, stale_key) == 0);
		uint64_t rk = c.key == 0 ? dst.key : c.key == 1 ? (dst.key ^ 0x5A5A0000u) :
			      c.key == 2 ? other.key : c.key == 3 ? stale_key : ro.key;
		std::vector<uint8_t> before[4] = {dst.raw, other.raw, ro.raw, stale.raw};
		int rc;
		if (c.kind == 0)
			rc = vr_post_write(p.A().eng, p.ca, src.key, 0, rk, c.off, c.len, 1);
		else if (c.kind == 1)
			rc = vr_post_read(p.A().eng, p.ca, sink.key, 0, rk, c.off, c.len, 1);
		else
			rc = vr_post_fadd(p.A().eng, p.ca, rk, c.off, 1, 1);
		if (rc) {
			CHECK(rc == c.want); // refused synchronously
			continue;
		}
		REQUIRE(p.wait(1));
		p.s.run(nullptr, p.s.now + 100000000);
		CHECK(count(p.A(), 1) == 1);
		CHECK(find(p.A(), 1)->status == c.want);
		// the completion names the remote NAK behind the errno
		CHECK(vr_nak_reason_errno(find(p.A(), 1)->nak_reason) == c.want);
		CHECK(dst.raw == before[0]);
		CHECK(other.raw == before[1]);
		CHECK(ro.raw == before[2]);
		CHECK(stale.raw == before[3]);
		CHECK(sink.guards_ok(6));
		// remote access errors are fatal to the connection (as in RC)
		CHECK(vr_conn_state(p.A().eng, p.ca) == VR_CONN_ERROR);
		CHECK(find(p.B(), 0, VR_WC_DISCONNECT) != nullptr);
	}
}

TEST_CASE("local key checks at post time")
{
	Pair p;
	GuardedBuf src, ro;
	src.init(100, 1);
	ro.init(100, 2);
	REQUIRE(reg(p.A(), 0, src, VR_ACCESS_LOCAL_WRITE) == 0);
	REQUIRE(reg(p.A(), 0, ro, 0) == 0);
	CHECK(vr_post_write(p.A().eng, p.ca, src.key, 1, 1, 0, 100, 1) == -ERANGE);
	CHECK(vr_post_write(p.A().eng, p.ca, src.key ^ 0x100000, 0, 1, 0, 10, 1) == -EACCES);
	CHECK(vr_post_read(p.A().eng, p.ca, ro.key, 0, 1, 0, 10, 1) == -EPERM);
	CHECK(vr_post_recv(p.A().eng, 0, ro.key, 0, 10, 0, 0, 1) == -EPERM);
	CHECK(vr_post_recv(p.A().eng, 0, src.key, 50, 51, 0, 0, 1) == -ERANGE);
	CHECK(vr_post_recv(p.A().eng, 3, src.key, 0, 1, 0, 0, 1) == -ENOENT);
	CHECK(vr_post_send(p.A().eng, p.ca + 1, src.key, 0, 10, 0, 1) == -ENOENT);
	CHECK(vr_post_fadd(p.A().eng, p.ca, 1, 12, 1, 1) == -EINVAL);
	p.s.run(nullptr, p.s.now + 10000000);
	CHECK(p.A().comps.size() == 1); // only the connect completion
}

TEST_CASE("replayed, truncated and bit-flipped frames are dropped, never applied")
{
	Pair p;
	GuardedBuf src, dst, sink, atom;
	src.init(20000, 1);
	dst.init(20000, 2);
	sink.init(20000, 3);
	atom.init(64, 4);
	REQUIRE(reg(p.A(), 0, src, 0) == 0);
	REQUIRE(reg(p.A(), 0, sink, VR_ACCESS_LOCAL_WRITE) == 0);
	REQUIRE(reg(p.B(), 0, dst, VR_ACCESS_ALL) == 0);
	REQUIRE(reg(p.B(), 0, atom, VR_ACCESS_REMOTE_ATOMIC) == 0);
	std::vector<std::vector<uint8_t>> captured;
	p.s.tap = [&](int from, const std::vector<uint8_t> &b) {
		if (from == 0)
			captured.push_back(b);
	};
	REQUIRE(vr_post_write(p.A().eng, p.ca, src.key, 0, dst.key, 0, 10000, 1) == 0);
	REQUIRE(vr_post_fadd(p.A().eng, p.ca, atom.key, 0, 5, 2) == 0);
	REQUIRE(vr_post_read(p.A().eng, p.ca, sink.key, 0, dst.key, 0, 10000, 3) == 0);
	REQUIRE(vr_post_recv(p.B().eng, 0, dst.key, 12000, 100, 1, ~0ull, 4) == 0);
	REQUIRE(vr_post_send(p.A().eng, p.ca, src.key, 0, 100, 1, 5) == 0);
	REQUIRE(p.s.run([&] { return p.A().comps.size() == 5 && p.B().comps.size() == 2; },
			p.s.now + 1000000000));
	p.s.run(nullptr, p.s.now + 100000000);
	p.s.tap = nullptr;
	REQUIRE(captured.size() >= 10);
	// the host scribbles over the target; replays must not restore anything
	memset(dst.data(), 0xEE, dst.len);
	auto snap_dst = dst.raw, snap_atom = atom.raw;
	size_t nb = p.B().comps.size(), na = p.A().comps.size();
	uint64_t dups0 = vr_engine_counters(p.B().eng)->dups;
	vrsim::Rng r(5);
	uint64_t t = p.s.now + 1000;
	size_t injected_trunc = 0, injected_flip = 0;
	for (auto &f : captured) {
		p.s.inject(1, f, t);
		auto tr = f;
		tr.resize(r.below(f.size()));
		p.s.inject(1, tr, t);
		injected_trunc++;
		auto fl = f;
		fl[VR_ETH_HLEN + r.below(fl.size() - VR_ETH_HLEN)] ^= 1;
		p.s.inject(1, fl, t);
		injected_flip++;
		t += 100;
	}
	p.s.run(nullptr, t + 100000000);
	CHECK(dst.raw == snap_dst);
	CHECK(atom.raw == snap_atom);
	CHECK(p.B().comps.size() == nb);
	CHECK(p.A().comps.size() == na);
	const vr_counters *k = vr_engine_counters(p.B().eng);
	CHECK(k->dups - dups0 >= 5);
	uint64_t parse = 0;
	for (int c = 0; c < VR_WERR_MAX; c++)
		parse += k->drop_parse[c];
	CHECK(parse >= injected_trunc + injected_flip - 2 * 2); // flips of len field etc. all drop
	CHECK(k->drop_parse[VR_WERR_TRUNCATED] + k->drop_parse[VR_WERR_LENGTH] >= injected_trunc);
	// the connection still works afterwards
	REQUIRE(vr_post_write(p.A().eng, p.ca, src.key, 0, dst.key, 0, 100, 6) == 0);
	REQUIRE(p.wait(6));
	CHECK(find(p.A(), 6)->status == 0);
	CHECK(memcmp(dst.data(), src.data(), 100) == 0);
}

TEST_CASE("forged frame from an unknown source is dropped")
{
	Pair p;
	GuardedBuf dst;
	dst.init(4096, 2);
	REQUIRE(reg(p.B(), 0, dst, VR_ACCESS_ALL) == 0);
	auto snap = dst.raw;
	// a well-formed WRITE naming the right conn and key, but from another MAC
	vr_hdr h{};
	h.version = VR_WIRE_VERSION;
	h.opcode = VR_OP_WRITE_ONLY;
	h.dst_ep = 0;
	h.conn_id = p.cb;
	h.rkey = dst.key;
	h.total_len = 16;
	h.payload_len = 16;
	uint8_t pl[16] = {1};
	std::vector<uint8_t> f(VR_ETH_HLEN + VR_HDR_LEN + 16);
	uint8_t evil[6] = {2, 0, 0, 0, 0, 0x66};
	vr_wire_put_eth(f.data(), p.B().mac, evil, VR_ETHERTYPE_DEFAULT);
	vr_wire_encode_full(f.data(), &h, pl);
	uint64_t before = vr_engine_counters(p.B().eng)->drop_no_conn;
	CHECK(vr_engine_input(p.B().eng, f.data(), (uint32_t)f.size(), p.s.now) == -ENOTCONN);
	CHECK(vr_engine_counters(p.B().eng)->drop_no_conn == before + 1);
	// not addressed to B at all
	vr_wire_put_eth(f.data(), evil, p.A().mac, VR_ETHERTYPE_DEFAULT);
	vr_wire_encode_full(f.data(), &h, pl);
	CHECK(vr_engine_input(p.B().eng, f.data(), (uint32_t)f.size(), p.s.now) == -EADDRNOTAVAIL);
	// right everything, but the source MAC flipped in flight: CRC catches it
	vr_wire_put_eth(f.data(), p.B().mac, p.A().mac, VR_ETHERTYPE_DEFAULT);
	vr_wire_encode_full(f.data(), &h, pl);
	f[6 + 5] ^= 0x40;
	CHECK(vr_engine_input(p.B().eng, f.data(), (uint32_t)f.size(), p.s.now) == -EBADMSG);
	CHECK(dst.raw == snap);
}

TEST_CASE("pool exhaustion: ops, recvs, regions -> -EAGAIN / -ENOSPC and counters")
{
	vr_config cfg = base_cfg();
	cfg.max_ops = 2;
	cfg.max_recvs = 2;
	cfg.max_regions = 3;
	Pair p(cfg, cfg);
	GuardedBuf src, dst, x;
	src.init(1000, 1);
	dst.init(1000, 2);
	x.init(10, 3);
	REQUIRE(reg(p.A(), 0, src, VR_ACCESS_LOCAL_WRITE) == 0);
	REQUIRE(reg(p.B(), 0, dst, VR_ACCESS_ALL) == 0);
	CHECK(vr_post_write(p.A().eng, p.ca, src.key, 0, dst.key, 0, 10, 1) == 0);
	CHECK(vr_post_write(p.A().eng, p.ca, src.key, 0, dst.key, 0, 10, 2) == 0);
	CHECK(vr_post_write(p.A().eng, p.ca, src.key, 0, dst.key, 0, 10, 3) == -EAGAIN);
	CHECK(vr_engine_counters(p.A().eng)->pool_exhausted == 1);
	CHECK(vr_post_recv(p.A().eng, 0, src.key, 0, 10, 0, 0, 4) == 0);
	CHECK(vr_post_recv(p.A().eng, 0, src.key, 0, 10, 0, 0, 5) == 0);
	CHECK(vr_post_recv(p.A().eng, 0, src.key, 0, 10, 0, 0, 6) == -EAGAIN);
	uint64_t k1, k2, k3;
	CHECK(vr_reg_mr(p.A().eng, 0, x.data(), 10, 0, &k1) == 0);
	CHECK(vr_reg_mr(p.A().eng, 0, x.data(), 10, 0, &k2) == 0);
	CHECK(vr_reg_mr(p.A().eng, 0, x.data(), 10, 0, &k3) == -ENOSPC);
	CHECK(vr_engine_counters(p.A().eng)->pool_exhausted == 3);
	REQUIRE(p.wait(2));
	CHECK(vr_post_write(p.A().eng, p.ca, src.key, 0, dst.key, 0, 10, 3) == 0); // freed again
	REQUIRE(p.wait(3));
	CHECK(find(p.A(), 3)->status == 0);
}

TEST_CASE("receiver not ready: RNR NAK, retry, then success when a recv appears")
{
	vr_config cfg = base_cfg();
	cfg.unexp_depth = 1;
	cfg.unexp_buf_size = 100;
	Pair p(cfg, cfg);
	GuardedBuf src, rb;
	src.init(5000, 1);
	rb.init(5000, 2);
	REQUIRE(reg(p.A(), 0, src, 0) == 0);
	REQUIRE(reg(p.B(), 0, rb, VR_ACCESS_LOCAL_WRITE) == 0);
	REQUIRE(vr_post_send(p.A().eng, p.ca, src.key, 0, 3000, 42, 1) == 0); // too big to buffer
	p.s.run(nullptr, p.s.now + 500000);
	CHECK(find(p.A(), 1) == nullptr);
	CHECK(vr_engine_counters(p.B().eng)->naks_tx[VR_NAK_RNR] >= 2);
	CHECK(vr_engine_counters(p.A().eng)->rnr_waits >= 2);
	REQUIRE(vr_post_recv(p.B().eng, 0, rb.key, 0, 4000, 42, ~0ull, 2) == 0);
	REQUIRE(p.wait(2, 1));
	REQUIRE(p.wait(1, 0));
	CHECK(find(p.A(), 1)->status == 0);
	CHECK(find(p.B(), 2)->bytes == 3000);
	CHECK(memcmp(rb.data(), src.data(), 3000) == 0);
}

TEST_CASE("RNR retry limit exhausted fails the op and the connection")
{
	vr_config cfg = base_cfg();
	cfg.unexp_depth = 0;
	cfg.rnr_retry_limit = 3;
	Pair p(cfg, cfg);
	GuardedBuf src;
	src.init(100, 1);
	REQUIRE(reg(p.A(), 0, src, 0) == 0);
	REQUIRE(vr_post_send(p.A().eng, p.ca, src.key, 0, 10, 1, 1) == 0);
	REQUIRE(vr_post_send(p.A().eng, p.ca, src.key, 0, 10, 1, 2) == 0);
	p.s.run(nullptr, p.s.now + 1000000000);
	REQUIRE(count(p.A(), 1) == 1);
	CHECK(find(p.A(), 1)->status == -ENOBUFS);
	CHECK(find(p.A(), 1)->nak_reason == VR_NAK_RNR);
	CHECK(find(p.A(), 2)->status == -ECONNRESET);
	CHECK(find(p.A(), 2)->nak_reason == 0);
	CHECK(vr_engine_counters(p.A().eng)->rnr_waits == 4); // 3 retries + the one that fails
}

TEST_CASE("responder out of response slots: -ENOBUFS with nak_reason RESOURCES")
{
	vr_config ca = base_cfg(), cb = base_cfg();
	ca.rnr_retry_limit = 3;
	cb.max_ops = 1; // one response slot: a second READ in flight is refused
	Pair p(ca, cb);
	GuardedBuf sink, mem;
	sink.init(2 << 20, 1);
	mem.init(2 << 20, 2);
	REQUIRE(reg(p.A(), 0, sink, VR_ACCESS_LOCAL_WRITE) == 0);
	REQUIRE(reg(p.B(), 0, mem, VR_ACCESS_ALL) == 0);
	// the first response takes ~0.9 ms on the wire; the RNR budget ~80 us
	REQUIRE(vr_post_read(p.A().eng, p.ca, sink.key, 0, mem.key, 0, 1 << 20, 1) == 0);
	REQUIRE(vr_post_read(p.A().eng, p.ca, sink.key, 1 << 20, mem.key, 0, 100, 2) == 0);
	p.s.run(nullptr, p.s.now + 1000000000);
	REQUIRE(count(p.A(), 1) == 1);
	REQUIRE(count(p.A(), 2) == 1);
	CHECK(find(p.A(), 2)->status == -ENOBUFS);
	CHECK(find(p.A(), 2)->nak_reason == VR_NAK_RESOURCES);
	CHECK(find(p.A(), 1)->status == -ECONNRESET);
	CHECK(find(p.A(), 1)->nak_reason == 0);
	CHECK(vr_engine_counters(p.B().eng)->naks_tx[VR_NAK_RESOURCES] >= 4);
}

TEST_CASE("tag matching: posted receives in posting order, unexpected in arrival order")
{
	Pair p;
	GuardedBuf src, rb;
	src.init(1000, 1);
	rb.init(1000, 2);
	for (int i = 0; i < 10; i++)
		memset(src.data() + 10 * i, 'a' + i, 10);
	REQUIRE(reg(p.A(), 0, src, 0) == 0);
	REQUIRE(reg(p.B(), 0, rb, VR_ACCESS_LOCAL_WRITE) == 0);
	auto send = [&](int i, uint64_t tag) {
		REQUIRE(vr_post_send(p.A().eng, p.ca, src.key, 10 * i, 10, tag, 100 + i) == 0);
		REQUIRE(p.wait(100 + i));
		p.s.run(nullptr, p.s.now + 1000000);
	};
	auto got = [&](uint64_t cookie) -> char {
		const vr_completion *c = find(p.B(), cookie, VR_WC_RECV);
		if (!c || c->status)
			return '?';
		return (char)rb.data()[(cookie - 1) * 10];
	};
	// posted: R1 tag 5, R2 wildcard, R3 tag 5 (mask keeps the low byte)
	REQUIRE(vr_post_recv(p.B().eng, 0, rb.key, 0, 10, 0x05, 0xFF, 1) == 0);
	REQUIRE(vr_post_recv(p.B().eng, 0, rb.key, 10, 10, 0, 0, 2) == 0);
	REQUIRE(vr_post_recv(p.B().eng, 0, rb.key, 20, 10, 0x105, 0xFF, 3) == 0);
	send(0, 0x705);   // R1 (first posted that matches)
	send(1, 0x705);   // R2 (wildcard posted before R3)
	send(2, 0x905);   // R3
	CHECK(got(1) == 'a');
	CHECK(got(2) == 'b');
	CHECK(got(3) == 'c');
	CHECK(find(p.B(), 3)->tag == 0x905);
	// unexpected: tags 1, 2, 1 arrive before any receive
	send(3, 1);
	send(4, 2);
	send(5, 1);
	REQUIRE(vr_post_recv(p.B().eng, 0, rb.key, 30, 10, 1, ~0ull, 4) == 0); // first tag 1
	REQUIRE(vr_post_recv(p.B().eng, 0, rb.key, 40, 10, 0, 0, 5) == 0);     // oldest: tag 2
	REQUIRE(vr_post_recv(p.B().eng, 0, rb.key, 50, 10, 1, ~0ull, 6) == 0); // second tag 1
	CHECK(got(4) == 'd');
	CHECK(got(5) == 'e');
	CHECK(got(6) == 'f');
	// truncation: recv smaller than message
	REQUIRE(vr_post_recv(p.B().eng, 0, rb.key, 60, 4, 7, ~0ull, 7) == 0);
	send(6, 7);
	const vr_completion *c = find(p.B(), 7, VR_WC_RECV);
	REQUIRE(c);
	CHECK(c->status == -EMSGSIZE);
	CHECK(c->bytes == 10);
	CHECK(rb.data()[64] != 'g');
	CHECK(rb.guards_ok(2));
}

TEST_CASE("deregistration cancels in-flight users and memory is never touched after")
{
	vr_config cfg = base_cfg();
	cfg.window = 2; // keep the write in flight for a while
	Pair p(cfg, cfg);
	GuardedBuf src, dst, sink, rb;
	src.init(200000, 1);
	dst.init(200000, 2);
	sink.init(200000, 3);
	rb.init(1000, 4);
	REQUIRE(reg(p.A(), 0, src, 0) == 0);
	REQUIRE(reg(p.A(), 0, sink, VR_ACCESS_LOCAL_WRITE) == 0);
	REQUIRE(reg(p.B(), 0, dst, VR_ACCESS_ALL) == 0);
	REQUIRE(reg(p.B(), 0, rb, VR_ACCESS_LOCAL_WRITE) == 0);
	SUBCASE("local source of a write") {
		REQUIRE(vr_post_write(p.A().eng, p.ca, src.key, 0, dst.key, 0, 150000, 1) == 0);
		p.s.run(nullptr, p.s.now + 20000);
		REQUIRE(find(p.A(), 1) == nullptr);
		REQUIRE(vr_dereg_mr(p.A().eng, src.key) == 0);
		REQUIRE(count(p.A(), 1) == 1);
		CHECK(find(p.A(), 1)->status == -ECANCELED);
		auto snap = src.raw;
		std::fill(src.raw.begin(), src.raw.end(), 0xCC); // host reuses it
		p.s.run(nullptr, p.s.now + 100000000);
		CHECK(count(p.A(), 1) == 1);
		// every target byte is either untouched or the pre-dereg source byte:
		// nothing of the reused buffer reached the peer
		GuardedBuf pristine;
		pristine.init(200000, 2);
		size_t bad = 0;
		for (size_t i = 0; i < 150000; i++)
			if (dst.data()[i] != pristine.data()[i] &&
			    dst.data()[i] != snap[GuardedBuf::G + i])
				bad++;
		CHECK(bad == 0);
		CHECK(dst.guards_ok(2));
		CHECK(vr_conn_state(p.A().eng, p.ca) == VR_CONN_CONNECTED);
		GuardedBuf s2;
		s2.init(100, 9);
		REQUIRE(reg(p.A(), 0, s2, 0) == 0);
		REQUIRE(vr_post_write(p.A().eng, p.ca, s2.key, 0, dst.key, 0, 100, 2) == 0);
		REQUIRE(p.wait(2));
		CHECK(find(p.A(), 2)->status == 0);
	}
	SUBCASE("local sink of a read") {
		REQUIRE(vr_post_read(p.A().eng, p.ca, sink.key, 0, dst.key, 0, 150000, 1) == 0);
		p.s.run(nullptr, p.s.now + 30000);
		REQUIRE(find(p.A(), 1) == nullptr);
		REQUIRE(vr_dereg_mr(p.A().eng, sink.key) == 0);
		CHECK(find(p.A(), 1)->status == -ECANCELED);
		auto snap = sink.raw;
		p.s.run(nullptr, p.s.now + 100000000);
		CHECK(sink.raw == snap);
		CHECK(count(p.A(), 1) == 1);
	}
	SUBCASE("remote target of a write") {
		REQUIRE(vr_post_write(p.A().eng, p.ca, src.key, 0, dst.key, 0, 150000, 1) == 0);
		p.s.run(nullptr, p.s.now + 20000);
		REQUIRE(vr_dereg_mr(p.B().eng, dst.key) == 0);
		auto snap = dst.raw;
		p.s.run(nullptr, p.s.now + 100000000);
		CHECK(dst.raw == snap);
		REQUIRE(count(p.A(), 1) == 1);
		CHECK(find(p.A(), 1)->status == -EACCES);
		CHECK(find(p.A(), 1)->nak_reason == VR_NAK_BAD_KEY);
	}
	SUBCASE("remote source of a read") {
		REQUIRE(vr_post_read(p.A().eng, p.ca, sink.key, 0, dst.key, 0, 150000, 1) == 0);
		p.s.run(nullptr, p.s.now + 30000);
		REQUIRE(vr_dereg_mr(p.B().eng, dst.key) == 0);
		p.s.run(nullptr, p.s.now + 100000000);
		REQUIRE(count(p.A(), 1) == 1);
		CHECK(find(p.A(), 1)->status == -EACCES);
		CHECK(find(p.A(), 1)->nak_reason == VR_NAK_BAD_KEY); // from the aborted READ_RESP
		CHECK(sink.guards_ok(3));
	}
	SUBCASE("posted receive buffer") {
		REQUIRE(vr_post_recv(p.B().eng, 0, rb.key, 0, 1000, 0, 0, 1) == 0);
		REQUIRE(vr_dereg_mr(p.B().eng, rb.key) == 0);
		CHECK(find(p.B(), 1)->status == -ECANCELED);
		auto snap = rb.raw;
		REQUIRE(vr_post_send(p.A().eng, p.ca, src.key, 0, 10, 0, 2) == 0);
		p.s.run(nullptr, p.s.now + 1000000);
		CHECK(rb.raw == snap);
		CHECK(count(p.B(), 1) == 1);
	}
}

TEST_CASE("disconnect: local ops cancelled, peer told")
{
	Pair p;
	GuardedBuf src, dst;
	src.init(100000, 1);
	dst.init(100000, 2);
	REQUIRE(reg(p.A(), 0, src, 0) == 0);
	REQUIRE(reg(p.B(), 0, dst, VR_ACCESS_ALL) == 0);
	REQUIRE(vr_post_write(p.A().eng, p.ca, src.key, 0, dst.key, 0, 100000, 1) == 0);
	REQUIRE(vr_disconnect(p.A().eng, p.ca) == 0);
	CHECK(find(p.A(), 1)->status == -ECANCELED);
	p.s.run(nullptr, p.s.now + 100000000);
	const vr_completion *d = find(p.B(), 0, VR_WC_DISCONNECT);
	REQUIRE(d);
	CHECK(d->status == -ECONNRESET);
	CHECK(vr_conn_state(p.A().eng, p.ca) == -ENOENT);
	CHECK(vr_conn_state(p.B().eng, p.cb) == VR_CONN_ERROR);
	CHECK(vr_disconnect(p.B().eng, p.cb) == 0);
	CHECK(count(p.A(), 1) == 1);
}

TEST_CASE("DRR: backlogged endpoints share the wire in proportion to weight")
{
	vrsim::Sim s(11);
	vr_config cfg = base_cfg();
	cfg.window = 64;
	REQUIRE(s.add_node(cfg) == 0);
	REQUIRE(s.add_node(cfg) == 1);
	s.link(0, 1).gbps = 1; // slow wire -> the host queue fills -> -EAGAIN
	s.link(0, 1).queue_ns = 20000;
	REQUIRE(vr_ep_open(s.node(0).eng, 0, 1, false) == 0);
	REQUIRE(vr_ep_open(s.node(0).eng, 1, 3, false) == 0);
	REQUIRE(vr_ep_open(s.node(1).eng, 0, 1, true) == 0);
	uint32_t c0, c1, p0, p1;
	REQUIRE(connect(s, 0, 0, 1, 0, &c0, &p0));
	REQUIRE(connect(s, 0, 1, 1, 0, &c1, &p1));
	GuardedBuf s0, s1, d;
	s0.init(1 << 20, 1);
	s1.init(1 << 20, 2);
	d.init(1 << 20, 3);
	REQUIRE(reg(s.node(0), 0, s0, 0) == 0);
	REQUIRE(reg(s.node(0), 1, s1, 0) == 0);
	REQUIRE(reg(s.node(1), 0, d, VR_ACCESS_REMOTE_WRITE) == 0);
	vr_counters b0{}, b1{};
	vr_ep_counters(s.node(0).eng, 0, &b0);
	vr_ep_counters(s.node(0).eng, 1, &b1);
	REQUIRE(vr_post_write(s.node(0).eng, c0, s0.key, 0, d.key, 0, 1 << 20, 1) == 0);
	REQUIRE(vr_post_write(s.node(0).eng, c1, s1.key, 0, d.key, 0, 1 << 20, 2) == 0);
	s.run(nullptr, s.now + 4000000); // 4 ms at 1 Gb/s: both still backlogged
	CHECK(find(s.node(0), 1) == nullptr);
	CHECK(find(s.node(0), 2) == nullptr);
	vr_counters e0{}, e1{};
	vr_ep_counters(s.node(0).eng, 0, &e0);
	vr_ep_counters(s.node(0).eng, 1, &e1);
	double r = double(e1.tx_bytes - b1.tx_bytes) / double(e0.tx_bytes - b0.tx_bytes);
	CAPTURE(r);
	CHECK(r > 2.5);
	CHECK(r < 3.5);
	CHECK(vr_engine_counters(s.node(0).eng)->xmit_eagain > 0);
	REQUIRE(s.run([&] { return find(s.node(0), 1) && find(s.node(0), 2); }, s.now + 1000000000));
	CHECK(find(s.node(0), 1)->status == 0);
	CHECK(find(s.node(0), 2)->status == 0);
}

TEST_CASE("PSN wrap-around and large MTU")
{
	vr_config cfg = base_cfg();
	cfg.mtu = 65535;
	vrsim::Sim s(5);
	REQUIRE(s.add_node(cfg) == 0);
	REQUIRE(s.add_node(cfg) == 1);
	// force both ISNs just below 2^32 so the PSN space wraps mid-transfer
	s.node(0).random_override = [] { return 0xFFFFFFF0u; };
	s.node(1).random_override = [] { return 0xFFFFFFFAu; };
	REQUIRE(vr_ep_open(s.node(0).eng, 0, 1, false) == 0);
	REQUIRE(vr_ep_open(s.node(1).eng, 0, 1, true) == 0);
	s.link(0, 1).loss_ppm = 20000;
	uint32_t ca, cb;
	REQUIRE(connect(s, 0, 0, 1, 0, &ca, &cb));
	GuardedBuf src, dst;
	src.init(3 << 20, 1);
	dst.init(3 << 20, 2);
	REQUIRE(reg(s.node(0), 0, src, 0) == 0);
	REQUIRE(reg(s.node(1), 0, dst, VR_ACCESS_REMOTE_WRITE) == 0);
	REQUIRE(vr_post_write(s.node(0).eng, ca, src.key, 0, dst.key, 0, 3 << 20, 1) == 0);
	REQUIRE(vr_post_read(s.node(0).eng, ca, src.key, 0, dst.key, 0, 1 << 20, 2) == -EPERM);
	REQUIRE(s.run([&] { return find(s.node(0), 1) != nullptr; }, s.now + 2000000000));
	CHECK(find(s.node(0), 1)->status == 0);
	CHECK(memcmp(src.data(), dst.data(), 3 << 20) == 0);
	// responses wrap the other direction's PSN space too
	GuardedBuf sink;
	sink.init(1 << 20, 3);
	REQUIRE(reg(s.node(0), 0, sink, VR_ACCESS_LOCAL_WRITE) == 0);
	GuardedBuf rsrc;
	rsrc.init(1 << 20, 4);
	REQUIRE(reg(s.node(1), 0, rsrc, VR_ACCESS_REMOTE_READ) == 0);
	REQUIRE(vr_post_read(s.node(0).eng, ca, sink.key, 0, rsrc.key, 0, 1 << 20, 3) == 0);
	REQUIRE(s.run([&] { return find(s.node(0), 3) != nullptr; }, s.now + 2000000000));
	CHECK(find(s.node(0), 3)->status == 0);
	CHECK(memcmp(sink.data(), rsrc.data(), 1 << 20) == 0);
	CHECK(dst.guards_ok(2));
}

TEST_CASE("graceful disconnect: DISCONNECT carries the ACK for what was received")
{
	vr_config cfg = base_cfg();
	cfg.ack_every = 64;            // no coalesced ACK before the message ends
	cfg.ack_delay_ns = 1000000000; // and no delayed ACK within the test
	Pair p(cfg, cfg);
	GuardedBuf src, dst, rb;
	src.init(100000, 1);
	dst.init(100000, 2);
	rb.init(100000, 3);
	REQUIRE(reg(p.B(), 0, src, 0) == 0);
	REQUIRE(reg(p.A(), 0, dst, VR_ACCESS_ALL) == 0);
	REQUIRE(reg(p.A(), 0, rb, VR_ACCESS_LOCAL_WRITE) == 0);
	bool in_callback = false;
	SUBCASE("host disconnects after the receive completed") {}
	SUBCASE("host disconnects from inside the completion callback") {
		in_callback = true;
		p.A().on_complete = [&](const vr_completion &wc) {
			if (wc.op == VR_WC_RECV && wc.cookie == 50)
				CHECK(vr_disconnect(p.A().eng, p.ca) == 0);
		};
	}
	REQUIRE(vr_post_recv(p.A().eng, 0, rb.key, 0, 10000, 5, ~0ull, 50) == 0);
	// B: a multi-frame WRITE, then a multi-frame SEND (the reply A waits for)
	REQUIRE(vr_post_write(p.B().eng, p.cb, src.key, 0, dst.key, 0, 4000, 1) == 0);
	REQUIRE(vr_post_send(p.B().eng, p.cb, src.key, 100, 3000, 5, 2) == 0);
	// Stop right after A consumed the SEND, before A's engine can send anything.
	REQUIRE(p.s.run([&] { return find(p.A(), 50) != nullptr; }, p.s.now + 100000000));
	CHECK(find(p.A(), 50)->status == 0);
	const uint64_t acks0 = vr_engine_counters(p.A().eng)->acks_tx;
	if (!in_callback)
		REQUIRE(vr_disconnect(p.A().eng, p.ca) == 0);
	CHECK(vr_conn_state(p.A().eng, p.ca) == VR_CONN_CLOSING);
	p.s.run(nullptr, p.s.now + 100000000);
	CHECK(vr_engine_counters(p.A().eng)->acks_tx == acks0); // only the DISCONNECT acked
	REQUIRE(count(p.B(), 1) == 1);
	REQUIRE(count(p.B(), 2) == 1);
	CHECK(find(p.B(), 1)->status == 0);
	CHECK(find(p.B(), 2)->status == 0);
	CHECK(find(p.B(), 2)->bytes == 3000);
	const vr_completion *d = find(p.B(), 0, VR_WC_DISCONNECT);
	REQUIRE(d);
	CHECK(d->status == -ECONNRESET);
	CHECK(memcmp(dst.data(), src.data(), 4000) == 0);
	CHECK(memcmp(rb.data(), src.data() + 100, 3000) == 0);
	CHECK(vr_conn_state(p.A().eng, p.ca) == -ENOENT);
	CHECK(vr_disconnect(p.B().eng, p.cb) == 0);
}

TEST_CASE("graceful disconnect: ops not delivered still fail with -ECONNRESET")
{
	Pair p;
	GuardedBuf src, dst, rb;
	src.init(100000, 1);
	dst.init(100000, 2);
	rb.init(100000, 3);
	REQUIRE(reg(p.B(), 0, src, VR_ACCESS_LOCAL_WRITE) == 0);
	REQUIRE(reg(p.A(), 0, dst, VR_ACCESS_ALL) == 0);
	REQUIRE(reg(p.A(), 0, rb, VR_ACCESS_LOCAL_WRITE) == 0);
	REQUIRE(vr_post_recv(p.A().eng, 0, rb.key, 0, 10000, 5, ~0ull, 50) == 0);
	// delivered before the close: a READ (response fully received) and a SEND
	REQUIRE(vr_post_read(p.B().eng, p.cb, src.key, 50000, dst.key, 0, 5000, 1) == 0);
	REQUIRE(p.s.run([&] { return find(p.B(), 1) != nullptr; }, p.s.now + 100000000));
	REQUIRE(vr_post_send(p.B().eng, p.cb, src.key, 0, 100, 5, 2) == 0);
	REQUIRE(p.s.run([&] { return find(p.A(), 50) != nullptr; }, p.s.now + 100000000));
	// never delivered: everything B sends from now on is lost
	p.s.link(1, 0).down = true;
	REQUIRE(vr_post_write(p.B().eng, p.cb, src.key, 0, dst.key, 0, 3000, 3) == 0);
	REQUIRE(vr_post_fadd(p.B().eng, p.cb, dst.key, 64, 1, 4) == 0);
	REQUIRE(vr_post_send(p.B().eng, p.cb, src.key, 0, 10, 5, 5) == 0);
	p.s.run(nullptr, p.s.now + 20000); // B transmits into the void
	REQUIRE(vr_disconnect(p.A().eng, p.ca) == 0);
	p.s.run(nullptr, p.s.now + 100000000);
	for (uint64_t k = 1; k <= 5; k++) {
		CAPTURE(k);
		REQUIRE(count(p.B(), k) == 1);
		CHECK(find(p.B(), k)->status == (k <= 2 ? 0 : -ECONNRESET));
	}
	REQUIRE(find(p.B(), 0, VR_WC_DISCONNECT));
	CHECK(memcmp(src.data() + 50000, dst.data(), 5000) == 0);
}

TEST_CASE("graceful disconnect: queued responses go out before the DISCONNECT")
{
	Pair p;
	GuardedBuf mem, sink;
	mem.init(100000, 1);
	sink.init(100000, 2);
	REQUIRE(reg(p.A(), 0, mem, VR_ACCESS_ALL) == 0);
	REQUIRE(reg(p.B(), 0, sink, VR_ACCESS_LOCAL_WRITE) == 0);
	uint64_t word0;
	memcpy(&word0, mem.data() + 800, 8);
	std::vector<uint8_t> ops_from_a;
	p.s.tap = [&](int from, const std::vector<uint8_t> &b) {
		if (from == 0)
			ops_from_a.push_back(b[VR_ETH_HLEN + VR_OFF_OPCODE]);
	};
	const uint64_t rx0 = vr_engine_counters(p.A().eng)->rx_data_frames;
	std::vector<uint8_t> want;
	SUBCASE("READ") {
		REQUIRE(vr_post_read(p.B().eng, p.cb, sink.key, 0, mem.key, 1000, 5000, 1) == 0);
		want = {VR_OP_READ_RESP_FIRST, VR_OP_READ_RESP_MIDDLE, VR_OP_READ_RESP_MIDDLE,
			VR_OP_READ_RESP_LAST, VR_OP_DISCONNECT};
	}
	SUBCASE("FADD") {
		REQUIRE(vr_post_fadd(p.B().eng, p.cb, mem.key, 800, 7, 1) == 0);
		want = {VR_OP_ATOMIC_RESP, VR_OP_DISCONNECT};
	}
	// A has executed the request but not sent a single response frame yet
	REQUIRE(p.s.run([&] { return vr_engine_counters(p.A().eng)->rx_data_frames == rx0 + 1; },
			p.s.now + 100000000));
	CHECK(ops_from_a.empty());
	REQUIRE(vr_disconnect(p.A().eng, p.ca) == 0);
	p.s.run(nullptr, p.s.now + 100000000);
	REQUIRE(count(p.B(), 1) == 1);
	const vr_completion *wc = find(p.B(), 1);
	CHECK(wc->status == 0);
	if (wc->op == VR_WC_READ) {
		CHECK(memcmp(sink.data(), mem.data() + 1000, 5000) == 0);
	} else {
		CHECK(wc->value == word0);
		uint64_t word1;
		memcpy(&word1, mem.data() + 800, 8);
		CHECK(word1 == word0 + 7);
	}
	CHECK(ops_from_a == want); // wire order: the responses, then DISCONNECT
	CHECK(vr_conn_state(p.A().eng, p.ca) == -ENOENT);
	REQUIRE(find(p.B(), 0, VR_WC_DISCONNECT));
	CHECK(sink.guards_ok(2));
}

TEST_CASE("endpoint close: connections, receives and regions go; the id comes back after the DISCONNECT")
{
	Pair p;
	GuardedBuf src, mine, recvbuf, peer;
	src.init(100000, 1);
	mine.init(4096, 3);
	recvbuf.init(4096, 4);
	peer.init(100000, 2);
	REQUIRE(reg(p.A(), 0, src, 0) == 0);
	REQUIRE(reg(p.A(), 0, mine, VR_ACCESS_ALL) == 0);
	REQUIRE(reg(p.A(), 0, recvbuf, VR_ACCESS_LOCAL_WRITE) == 0);
	REQUIRE(reg(p.B(), 0, peer, VR_ACCESS_ALL) == 0);
	REQUIRE(vr_post_write(p.A().eng, p.ca, src.key, 0, peer.key, 0, 100000, 1) == 0);
	REQUIRE(vr_post_recv(p.A().eng, 0, recvbuf.key, 0, 4096, 5, ~0ull, 2) == 0);

	REQUIRE(vr_ep_close(p.A().eng, 0) == 0);
	CHECK(find(p.A(), 1)->status == -ECANCELED);  // the write on its connection
	CHECK(find(p.A(), 2, VR_WC_RECV)->status == -ECANCELED);
	// Its regions are gone: new work naming them or the endpoint is refused.
	CHECK(vr_ep_close(p.A().eng, 0) == -ENOENT);
	uint64_t key = 0;
	uint32_t conn = 0;
	CHECK(vr_reg_mr(p.A().eng, 0, mine.data(), 16, 0, &key) == -ENOENT);
	CHECK(vr_post_recv(p.A().eng, 0, recvbuf.key, 0, 16, 0, 0, 3) == -ENOENT);
	CHECK(vr_connect(p.A().eng, 0, p.B().mac, 0, 4, &conn) == -ENOENT);
	CHECK(vr_ep_open(p.A().eng, 0, 1, false) == -EBUSY);  // DISCONNECT not sent yet

	// The peer can no longer reach the closed endpoint's memory.
	uint32_t cb2 = 0, ca2 = 0;
	REQUIRE(vr_ep_open(p.A().eng, 1, 1, true) == 0);
	p.s.run(nullptr, p.s.now + 100000000);
	const vr_completion *d = find(p.B(), 0, VR_WC_DISCONNECT);
	REQUIRE(d);
	CHECK(d->status == -ECONNRESET);
	CHECK(vr_conn_state(p.A().eng, p.ca) == -ENOENT);

	// Once the DISCONNECT went out the id is free again.
	REQUIRE(vr_ep_open(p.A().eng, 0, 1, true) == 0);
	REQUIRE(connect(p.s, 1, 0, 0, 0, &cb2, &ca2));
	REQUIRE(vr_post_write(p.B().eng, cb2, peer.key, 0, mine.key, 0, 16, 9) == 0);
	REQUIRE(p.wait(9, 1));
	CHECK(find(p.B(), 9)->status == -EACCES);  // the old key died with the endpoint
	CHECK(mine.guards_ok(3));
	CHECK(count(p.A(), 1) == 1);
	CHECK(count(p.A(), 2) == 1);
}

TEST_CASE("destroying an engine completes a connect still in progress")
{
	vrsim::Sim s(1);
	vr_config c = vrtest::base_cfg();
	s.add_node(c);
	s.add_node(c);
	REQUIRE(vr_ep_open(s.node(0).eng, 0, 1, false) == 0);
	uint32_t conn = 0;
	REQUIRE(vr_connect(s.node(0).eng, 0, s.node(1).mac, 0, 42, &conn) == 0);
	vr_engine_destroy(s.node(0).eng);
	const vr_completion *wc = find(s.node(0), 42, VR_WC_CONNECT);
	REQUIRE(wc);
	CHECK(wc->status == -ECANCELED);
}

TEST_CASE("congestion window: loss shrinks it, and a lossy link costs far less than a window per loss")
{
	// Same transfer over a clean and a lossy link: with the window halving
	// once per loss event, retransmissions stay a small multiple of the
	// frames lost instead of a whole window each.
	auto run = [](uint32_t loss_ppm, vr_counters *out) {
		vr_config c = base_cfg();
		c.window = 64;
		c.max_ops = 32;
		Pair p(c, c, 11);
		p.s.link(0, 1).loss_ppm = loss_ppm;
		GuardedBuf src, dst;
		src.init(2000000, 1);
		dst.init(2000000, 2);
		REQUIRE(reg(p.A(), 0, src, 0) == 0);
		REQUIRE(reg(p.B(), 0, dst, VR_ACCESS_ALL) == 0);
		for (uint64_t k = 0; k < 4; k++)
			REQUIRE(vr_post_write(p.A().eng, p.ca, src.key, k * 500000, dst.key, k * 500000,
					      500000, 100 + k) == 0);
		for (uint64_t k = 0; k < 4; k++) {
			REQUIRE(p.wait(100 + k));
			CHECK(find(p.A(), 100 + k)->status == 0);
		}
		CHECK(std::memcmp(src.data(), dst.data(), 2000000) == 0);
		*out = *vr_engine_counters(p.A().eng);
		return p.s.stats(0, 1).lost;
	};
	vr_counters clean{}, lossy{};
	run(0, &clean);
	uint64_t lost = run(20000, &lossy);  // 2 % of A's frames
	CHECK(clean.congestion_events == 0);
	CHECK(clean.retransmits == 0);
	REQUIRE(lost > 0);
	CHECK(lossy.congestion_events > 0);
	CHECK(lossy.congestion_events <= lost);
	MESSAGE("lost " << lost << " frames; retransmitted " << lossy.retransmits << " of "
			<< lossy.tx_data_frames << " data frames");
	// Go-back-N with a fixed 64-frame window resent about a window per loss.
	CHECK(lossy.retransmits < 64 * lost / 4);
}

namespace {

// Posts `n` small writes from A with A's link to B down, and returns the
// first transmission of each (its data frame), in order.
std::vector<std::vector<uint8_t>> writes_held_back(Pair &p, GuardedBuf &src, GuardedBuf &dst,
						   int n, uint64_t first_cookie)
{
	std::vector<std::vector<uint8_t>> frames;
	p.s.link(0, 1).down = true;
	p.s.tap = [&](int from, const std::vector<uint8_t> &f) {
		if (from == 0 && (int)frames.size() < n)
			frames.push_back(f);
	};
	for (int i = 0; i < n; i++)
		REQUIRE(vr_post_write(p.A().eng, p.ca, src.key, 100 * i, dst.key, 100 * i, 100,
				      first_cookie + i) == 0);
	p.s.run([&] { return (int)frames.size() == n; }, p.s.now + 10000);
	p.s.tap = nullptr;
	REQUIRE((int)frames.size() == n);
	return frames;
}

}  // namespace

TEST_CASE("bundles: every frame inside is applied like a lone frame; a malformed bundle is dropped whole")
{
	Pair p;
	GuardedBuf src, dst;
	src.init(2000, 1);
	dst.init(2000, 2);
	REQUIRE(reg(p.A(), 0, src, 0) == 0);
	REQUIRE(reg(p.B(), 0, dst, VR_ACCESS_ALL) == 0);
	auto frames = writes_held_back(p, src, dst, 6, 100);
	auto good = bundle_of(frames);
	auto snap = dst.raw;
	const vr_counters *k = vr_engine_counters(p.B().eng);
	uint64_t rx0 = k->rx_frames, bundles0 = k->rx_bundles;

	SUBCASE("a whole bundle delivers what the lone frames would have") {
		p.s.inject(1, good, p.s.now + 1);
		// A's own link is down: only the bundle can have carried the writes.
		REQUIRE(p.s.run([&] { return p.A().comps.size() >= 6 + 1; }, p.s.now + 20000000));
		for (int i = 0; i < 6; i++) {
			REQUIRE(find(p.A(), 100 + i));
			CHECK(find(p.A(), 100 + i)->status == 0);
		}
		CHECK(memcmp(dst.data(), src.data(), 600) == 0);
		CHECK(k->rx_bundles == bundles0 + 1);
		CHECK(k->rx_frames >= rx0 + 6);
	}
	SUBCASE("malformed bundles apply nothing and are counted as parse drops") {
		std::vector<std::vector<uint8_t>> bad;
		auto b = good;
		vr_wire_bundle_set_count(b.data(), 7); // count disagrees
		bad.push_back(b);
		b = good;
		vr_put_be32(b.data() + VR_ETH_HLEN + VR_BUNDLE_OFF_RESERVED, 1);
		bad.push_back(b);
		b = good;
		b.pop_back(); // the last entry overruns the frame
		bad.push_back(b);
		b = good;
		b.push_back(0); // a stray byte after the last entry
		bad.push_back(b);
		b = good;
		vr_put_be16(b.data() + VR_ETH_HLEN + VR_BUNDLE_HLEN, 10); // entry shorter than a frame
		bad.push_back(b);
		b = good;
		b[VR_ETH_HLEN + VR_BUNDLE_HLEN + 2 + 11] ^= 1; // inner source MAC differs
		bad.push_back(b);
		b = good;
		b.resize(VR_ETH_HLEN + 4); // truncated header
		bad.push_back(b);
		uint64_t parse0 = 0;
		for (auto d : k->drop_parse)
			parse0 += d;
		for (auto &f : bad)
			p.s.inject(1, f, p.s.now + 1);
		// A bundle inside a bundle: the outer is well formed, the inner is
		// refused as an unknown opcode and nothing else happens.
		auto nested = bundle_of({good, frames[0]});
		p.s.inject(1, nested, p.s.now + 1);
		p.s.run(nullptr, p.s.now + 40000);
		uint64_t parse = 0;
		for (auto d : k->drop_parse)
			parse += d;
		CHECK(parse - parse0 == bad.size() + 1);
		CHECK(k->rx_bundles == bundles0 + 1);
		// The nested bundle's second entry was a good frame: it alone landed.
		CHECK(memcmp(dst.data(), src.data(), 100) == 0);
		CHECK(memcmp(dst.raw.data() + GuardedBuf::G + 100, snap.data() + GuardedBuf::G + 100,
			     dst.len - 100) == 0);
		CHECK(dst.guards_ok(2));
	}
	SUBCASE("a corrupted frame inside is dropped alone; go-back-N resends it") {
		frames.back()[frames.back().size() - 1] ^= 0x40;
		p.s.inject(1, bundle_of(frames), p.s.now + 1);
		REQUIRE(p.s.run([&] { return find(p.A(), 104) != nullptr; }, p.s.now + 20000000));
		CHECK(find(p.A(), 105) == nullptr);
		CHECK(k->drop_parse[VR_WERR_CHECKSUM] >= 1);
		p.s.link(0, 1).down = false;
		REQUIRE(p.wait(105));
		CHECK(find(p.A(), 105)->status == 0);
		CHECK(memcmp(dst.data(), src.data(), 600) == 0);
	}
}

TEST_CASE("retransmit budget is time: a silence shorter than peer_timeout is survived, a longer one is not")
{
	vr_config cfg = base_cfg();
	cfg.retry_limit = 3;
	cfg.rto_ns = 100000;
	cfg.rto_max_ns = 400000;
	cfg.peer_timeout_ns = 50000000; /* 50 ms */
	for (uint64_t silence : { 30000000ull, 0ull /* for good */ }) {
		CAPTURE(silence);
		Pair p(cfg, cfg);
		GuardedBuf src, dst;
		src.init(60000, 1);
		dst.init(60000, 2);
		REQUIRE(reg(p.A(), 0, src, 0) == 0);
		REQUIRE(reg(p.B(), 0, dst, VR_ACCESS_ALL) == 0);
		p.s.link(0, 1).down = true;
		p.s.link(1, 0).down = true;
		uint64_t t0 = p.s.now;
		if (silence)
			p.s.at(t0 + silence, [&] {
				p.s.link(0, 1).down = false;
				p.s.link(1, 0).down = false;
			});
		REQUIRE(vr_post_write(p.A().eng, p.ca, src.key, 0, dst.key, 0, 60000, 1) == 0);
		REQUIRE(p.wait(1, 0, 1000000000));
		const vr_completion *w = find(p.A(), 1);
		if (silence) {
			// Far more expiries than retry_limit, and still alive.
			CHECK(w->status == 0);
			CHECK(vr_engine_counters(p.A().eng)->timeouts > cfg.retry_limit + 10);
			CHECK(memcmp(dst.data(), src.data(), 60000) == 0);
			CHECK(vr_conn_state(p.A().eng, p.ca) == VR_CONN_CONNECTED);
		} else {
			CHECK(w->status == -ETIMEDOUT);
			// Not before the budget, and within one capped RTO after it
			// (the budget runs from the first expiry).
			CHECK(p.s.now - t0 >= cfg.peer_timeout_ns);
			CHECK(p.s.now - t0 < cfg.peer_timeout_ns + cfg.rto_ns + 2 * cfg.rto_max_ns);
		}
	}
}

TEST_CASE("keepalive: an idle live connection stays up; a vanished peer fails even a side with only a posted receive")
{
	vr_config cfg = base_cfg();
	cfg.keepalive_ns = 1000000;     /* probe after 1 ms of silence */
	cfg.peer_timeout_ns = 10000000; /* gone after 10 ms */
	Pair p(cfg, cfg);
	GuardedBuf sink;
	sink.init(256, 4);
	REQUIRE(reg(p.B(), 0, sink, VR_ACCESS_LOCAL_WRITE) == 0);
	REQUIRE(vr_post_recv(p.B().eng, 0, sink.key, 0, 256, 5, ~0ull, 50) == 0);
	// Idle for 100 ms (ten peer timeouts): the probes keep it alive.
	uint64_t acks0 = vr_engine_counters(p.A().eng)->acks_tx;
	p.s.run(nullptr, p.s.now + 100000000);
	CHECK(vr_conn_state(p.A().eng, p.ca) == VR_CONN_CONNECTED);
	CHECK(vr_conn_state(p.B().eng, p.cb) == VR_CONN_CONNECTED);
	CHECK(vr_engine_counters(p.A().eng)->acks_tx - acks0 >= 20);
	CHECK(find(p.B(), 50) == nullptr);
	// The peer vanishes without a word: both sides learn it in bounded time,
	// and the receive nobody can match any more fails.
	p.s.link(0, 1).down = true;
	p.s.link(1, 0).down = true;
	uint64_t t0 = p.s.now;
	REQUIRE(p.wait(50, 1, 1000000000));
	const vr_completion *r = find(p.B(), 50);
	CHECK(r->status == -ETIMEDOUT);
	CHECK(p.s.now - t0 <= cfg.peer_timeout_ns + 2 * cfg.keepalive_ns);
	CHECK(p.s.now - t0 >= cfg.peer_timeout_ns - 2 * cfg.keepalive_ns);
	p.s.run(nullptr, p.s.now + 20000000);
	CHECK(vr_conn_state(p.A().eng, p.ca) == VR_CONN_ERROR);
	CHECK(vr_conn_state(p.B().eng, p.cb) == VR_CONN_ERROR);
}

TEST_CASE("an endpoint whose connections have all failed refuses new receives until they are disconnected")
{
	Pair p;
	GuardedBuf src, sink;
	src.init(64, 1);
	sink.init(256, 2);
	REQUIRE(reg(p.A(), 0, src, 0) == 0);
	REQUIRE(reg(p.B(), 0, sink, VR_ACCESS_LOCAL_WRITE) == 0);
	// A message sent before the peer leaves stays deliverable.
	REQUIRE(vr_post_send(p.A().eng, p.ca, src.key, 0, 64, 7, 1) == 0);
	REQUIRE(p.wait(1, 0, 1000000000));
	REQUIRE(vr_disconnect(p.A().eng, p.ca) == 0);
	p.s.run(nullptr, p.s.now + 10000000);
	REQUIRE(vr_conn_state(p.B().eng, p.cb) == VR_CONN_ERROR);
	REQUIRE(vr_post_recv(p.B().eng, 0, sink.key, 0, 256, 7, ~0ull, 10) == 0);
	const vr_completion *r = find(p.B(), 10);
	REQUIRE(r);
	CHECK(r->status == 0);
	CHECK(r->bytes == 64);
	CHECK(memcmp(sink.data(), src.data(), 64) == 0);
	// Nothing else can arrive: a receive posted now (the peer left between
	// two receives) is refused instead of waiting forever.
	CHECK(vr_post_recv(p.B().eng, 0, sink.key, 0, 256, 0, 0, 11) == -ENOTCONN);
	CHECK(find(p.B(), 11) == nullptr);
	// Once the host has let go of the failed connection, the endpoint waits
	// for new peers again.
	REQUIRE(vr_disconnect(p.B().eng, p.cb) == 0);
	CHECK(vr_post_recv(p.B().eng, 0, sink.key, 0, 256, 0, 0, 12) == 0);
	p.s.run(nullptr, p.s.now + 10000000);
	CHECK(find(p.B(), 12) == nullptr);
}

TEST_CASE("a forged DISCONNECT outside the connection's windows is dropped; connection ids are not predictable")
{
	Pair p;
	GuardedBuf src, dst;
	src.init(4000, 1);
	dst.init(4000, 2);
	REQUIRE(reg(p.A(), 0, src, 0) == 0);
	REQUIRE(reg(p.B(), 0, dst, VR_ACCESS_ALL) == 0);
	REQUIRE(vr_post_write(p.A().eng, p.ca, src.key, 0, dst.key, 0, 4000, 1) == 0);
	REQUIRE(p.wait(1));
	// What an off-path attacker can know: both MACs, the endpoints and the
	// connection id. Not the PSNs.
	auto forge = [&](uint32_t psn, uint32_t ack) {
		std::vector<uint8_t> f(VR_ETH_HLEN + VR_HDR_LEN);
		vr_hdr h{};
		h.version = VR_WIRE_VERSION;
		h.opcode = VR_OP_DISCONNECT;
		h.src_ep = 0;
		h.dst_ep = 0;
		h.conn_id = p.cb;
		h.psn = psn;
		h.ack_psn = ack;
		vr_wire_put_eth(f.data(), p.B().mac, p.A().mac, VR_ETHERTYPE_DEFAULT);
		vr_wire_encode_full(f.data(), &h, nullptr);
		p.s.inject(1, f, p.s.now + 1000);
		p.s.run(nullptr, p.s.now + 1000000);
	};
	uint64_t bad0 = vr_engine_counters(p.B().eng)->drop_bad_ack;
	forge(0, 0);
	forge(0x12345678, 0x9abcdef0);
	CHECK(vr_conn_state(p.B().eng, p.cb) == VR_CONN_CONNECTED);
	CHECK(vr_engine_counters(p.B().eng)->drop_bad_ack - bad0 == 2);
	// The connection still carries data, and a real DISCONNECT still works.
	REQUIRE(vr_post_write(p.A().eng, p.ca, src.key, 0, dst.key, 0, 4000, 2) == 0);
	REQUIRE(p.wait(2));
	CHECK(find(p.A(), 2)->status == 0);
	REQUIRE(vr_disconnect(p.A().eng, p.ca) == 0);
	p.s.run(nullptr, p.s.now + 10000000);
	CHECK(vr_conn_state(p.B().eng, p.cb) == VR_CONN_ERROR);

	// The same slot, reconnected again and again: its generation is random.
	std::vector<uint32_t> ids;
	for (int i = 0; i < 20; i++) {
		REQUIRE(vr_disconnect(p.B().eng, p.cb) == 0);
		p.s.run(nullptr, p.s.now + 1000000);
		uint32_t ca = 0, cb = 0;
		REQUIRE(connect(p.s, 0, 0, 1, 0, &ca, &cb));
		ids.push_back(cb);
		REQUIRE(vr_disconnect(p.A().eng, ca) == 0);
		p.s.run(nullptr, p.s.now + 10000000);
		p.cb = cb;
	}
	std::sort(ids.begin(), ids.end());
	CHECK(std::unique(ids.begin(), ids.end()) - ids.begin() >= 18);
	int consecutive = 0;
	for (size_t i = 1; i < ids.size(); i++)
		consecutive += (ids[i] >> 16) == (ids[i - 1] >> 16) + 1;
	CHECK(consecutive < 5);
}

TEST_CASE("a forged key closes the guessing connection on both sides; a MAC with many offences is refused for a while")
{
	Pair p;
	GuardedBuf src, dst;
	src.init(64, 1);
	dst.init(64, 2);
	REQUIRE(reg(p.A(), 0, src, 0) == 0);
	REQUIRE(reg(p.B(), 0, dst, VR_ACCESS_ALL) == 0);
	uint32_t ca = p.ca, cb = p.cb;
	uint64_t cookie = 100;
	for (int offence = 1; offence <= VR_OFFENCE_LIMIT; offence++) {
		CAPTURE(offence);
		REQUIRE(vr_post_write(p.A().eng, ca, src.key, 0, dst.key ^ 0x5a5a0000u, 0, 64, ++cookie) == 0);
		REQUIRE(p.wait(cookie));
		CHECK(find(p.A(), cookie)->status == -EACCES);
		p.s.run(nullptr, p.s.now + 1000000);
		// The responder closed its side at once: guessing cannot go on.
		CHECK(vr_conn_state(p.B().eng, cb) == VR_CONN_ERROR);
		CHECK(vr_engine_counters(p.B().eng)->offences == static_cast<uint64_t>(offence));
		CHECK(vr_disconnect(p.A().eng, ca) == 0);
		CHECK(vr_disconnect(p.B().eng, cb) == 0);
		p.s.run(nullptr, p.s.now + 1000000);
		if (offence < VR_OFFENCE_LIMIT)
			REQUIRE(connect(p.s, 0, 0, 1, 0, &ca, &cb));
	}
	// The limit is reached: this MAC's next CONNECT_REQ is refused ...
	uint32_t c2 = 0;
	REQUIRE(vr_connect(p.A().eng, 0, p.B().mac, 0, 555, &c2) == 0);
	REQUIRE(p.wait(555));
	CHECK(find(p.A(), 555)->status == -ECONNREFUSED);
	CHECK(vr_engine_counters(p.B().eng)->offenders_refused == 1);
	// ... until the window has passed; the real region was never touched.
	p.s.at(p.s.now + VR_OFFENCE_WINDOW_NS, [] {}); // the clock moves on events
	p.s.run(nullptr, p.s.now + VR_OFFENCE_WINDOW_NS + 1);
	uint32_t c3 = 0;
	REQUIRE(vr_connect(p.A().eng, 0, p.B().mac, 0, 556, &c3) == 0);
	REQUIRE(p.wait(556));
	CHECK(find(p.A(), 556)->status == 0);
	CHECK(vr_engine_counters(p.B().eng)->offenders_refused == 1);
	CHECK(dst.guards_ok(2));
}

TEST_CASE("an ACK asked for waits up to ackreq_delay_ns: an answer meanwhile carries it, else it goes when the time is up")
{
	constexpr uint64_t delay = 50000;
	bool answer = false, at_once = false;
	SUBCASE("the receiver answers at once: its SEND carries the ACK") { answer = true; }
	SUBCASE("the receiver stays silent: an ACK frame when the delay is up") {}
	SUBCASE("ackreq_delay_ns 0: an ACK frame at once") { at_once = true; }
	vr_config a = base_cfg(), b = base_cfg();
	a.ack_every = b.ack_every = 64;               // no ACK for the count of frames
	a.ack_delay_ns = b.ack_delay_ns = 1000000000; // nor for time, within the test
	a.ackreq_delay_ns = at_once ? 0 : delay;      // A receives, and may answer
	Pair p(a, b);
	GuardedBuf src, in, reply, back;
	src.init(100, 1);
	in.init(100, 2);
	reply.init(100, 3);
	back.init(100, 4);
	REQUIRE(reg(p.B(), 0, src, 0) == 0);
	REQUIRE(reg(p.B(), 0, back, VR_ACCESS_LOCAL_WRITE) == 0);
	REQUIRE(reg(p.A(), 0, in, VR_ACCESS_LOCAL_WRITE) == 0);
	REQUIRE(reg(p.A(), 0, reply, 0) == 0);
	REQUIRE(vr_post_recv(p.A().eng, 0, in.key, 0, 100, 5, ~0ull, 50) == 0);
	REQUIRE(vr_post_recv(p.B().eng, 0, back.key, 0, 100, 6, ~0ull, 60) == 0);
	if (answer)
		p.A().on_complete = [&](const vr_completion &wc) {
			if (wc.op == VR_WC_RECV && wc.cookie == 50)
				CHECK(vr_post_send(p.A().eng, p.ca, reply.key, 0, 100, 6, 2) == 0);
		};
	const uint64_t acks0 = vr_engine_counters(p.A().eng)->acks_tx;
	const uint64_t t0 = p.s.now;
	REQUIRE(vr_post_send(p.B().eng, p.cb, src.key, 0, 100, 5, 1) == 0);
	REQUIRE(p.wait(1, 1)); // B's send completes once A's ACK is in
	CHECK(find(p.B(), 1)->status == 0);
	const uint64_t took = p.s.now - t0; // simulated time
	const uint64_t ack_frames = vr_engine_counters(p.A().eng)->acks_tx - acks0;
	if (answer) {
		CHECK(ack_frames == 0);
		CHECK(took < delay);
		REQUIRE(p.wait(60, 1));
		CHECK(memcmp(back.data(), reply.data(), 100) == 0);
	} else if (at_once) {
		CHECK(ack_frames == 1);
		CHECK(took < delay);
	} else {
		CHECK(ack_frames == 1);
		CHECK(took >= delay);
	}
	CHECK(memcmp(in.data(), src.data(), 100) == 0);
}

TEST_CASE("a receiver knows while a message's rest is on its way (vr_engine_rx_mid_message), and counts the data frames it took")
{
	vr_config cfg = base_cfg();
	vrsim::Sim s(11);
	REQUIRE(s.add_node(cfg) == 0);
	REQUIRE(s.add_node(cfg) == 1);
	REQUIRE(vr_ep_open(s.node(0).eng, 0, 1, false) == 0);
	REQUIRE(vr_ep_open(s.node(1).eng, 0, 1, true) == 0);
	uint32_t ca, cb;
	REQUIRE(connect(s, 0, 0, 1, 0, &ca, &cb));
	CHECK_FALSE(vr_engine_rx_mid_message(s.node(1).eng)); // control frames only so far
	GuardedBuf src, dst;
	src.init(4000, 1); // three frames at MTU 1500
	dst.init(4000, 2);
	REQUIRE(reg(s.node(0), 0, src, 0) == 0);
	REQUIRE(reg(s.node(1), 0, dst, VR_ACCESS_REMOTE_WRITE) == 0);
	REQUIRE(vr_post_write(s.node(0).eng, ca, src.key, 0, dst.key, 0, 4000, 1) == 0);
	bool mid = false;
	REQUIRE(s.run([&] {
		mid = mid || vr_engine_rx_mid_message(s.node(1).eng);
		return find(s.node(0), 1) != nullptr;
	}, s.now + 1000000000));
	CHECK(mid);                                          // after the first and the middle frame
	CHECK_FALSE(vr_engine_rx_mid_message(s.node(1).eng)); // the last one ended it
	// A one-frame message never leaves it set.
	REQUIRE(vr_post_write(s.node(0).eng, ca, src.key, 0, dst.key, 0, 100, 2) == 0);
	mid = false;
	REQUIRE(s.run([&] {
		mid = mid || vr_engine_rx_mid_message(s.node(1).eng);
		return find(s.node(0), 2) != nullptr;
	}, s.now + 1000000000));
	CHECK_FALSE(mid);
	CHECK(memcmp(src.data(), dst.data(), 4000) == 0);
	// rx_data_frames (which the eth: host reads around each frame to know
	// whether it carried data): the four data frames the target took, not
	// the handshake's frames nor the ACKs; the writer took none.
	CHECK(vr_engine_counters(s.node(1).eng)->rx_data_frames == 4);
	CHECK(vr_engine_counters(s.node(1).eng)->rx_frames > 4);
	CHECK(vr_engine_counters(s.node(0).eng)->rx_data_frames == 0);
}
