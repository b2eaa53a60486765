// SPDX-License-Identifier: GPL-2.0 OR MIT
// The handshake against a spoofer (docs/wire-format.md, Handshake): a
// listener keeps nothing for a CONNECT_REQ until the initiator echoes a
// cookie that only a receiver at its MAC can have; answers to an initiator
// must echo its ISN; a request that would replace a live connection is
// challenged, not obeyed; per-MAC and total limits; answers to strangers
// come after established connections; frames outside a connection's windows
// are dropped.
#include <doctest/doctest.h>

#include <cstring>

#include "harness.h"

using namespace vrtest;

namespace {

// Two nodes, A (0) and B (1, endpoint 0 listening), every frame recorded.
struct Net : frame_log {
	vrsim::Sim s;
	explicit Net(vr_config a = base_cfg(), vr_config b = base_cfg(), uint64_t seed = 5) : s(seed)
	{
		REQUIRE(s.add_node(a) == 0);
		REQUIRE(s.add_node(b) == 1);
		REQUIRE(vr_ep_open(A().eng, 0, 1, false) == 0);
		REQUIRE(vr_ep_open(B().eng, 0, 1, true) == 0);
		attach(s);
	}
	vrsim::Node &A() { return s.node(0); }
	vrsim::Node &B() { return s.node(1); }
	const vr_counters &ctr(int n) { return *vr_engine_counters(s.node(n).eng); }
	void settle(uint64_t ns = 1000000) { s.run(nullptr, s.now + ns); }
	void advance_to(uint64_t t)
	{
		s.at(t, [] {}); // the clock moves on events
		s.run(nullptr, t);
	}
	size_t accepts(int n = 1)
	{
		size_t k = 0;
		for (auto &c : s.node(n).comps)
			k += c.op == VR_WC_ACCEPT;
		return k;
	}
	void inject(int to, const std::vector<uint8_t> &f, uint64_t after = 1000)
	{
		s.inject(to, f, s.now + after);
	}
};

std::vector<uint8_t> frame(const uint8_t dst[6], const uint8_t src[6], const vr_hdr &h,
			   const void *payload = nullptr)
{
	std::vector<uint8_t> f(VR_ETH_HLEN + VR_HDR_LEN + h.payload_len);
	vr_wire_put_eth(f.data(), dst, src, VR_ETHERTYPE_DEFAULT);
	vr_wire_encode_full(f.data(), &h, payload);
	return f;
}

vr_hdr req(uint16_t src_ep, uint16_t dst_ep, uint32_t id, uint32_t isn, uint64_t cookie)
{
	vr_hdr h{};
	h.version = VR_WIRE_VERSION;
	h.opcode = VR_OP_CONNECT_REQ;
	h.src_ep = src_ep;
	h.dst_ep = dst_ep;
	h.msg_id = id;
	h.psn = isn;
	h.operand_b = cookie;
	return h;
}

const uint8_t spoofed[6] = {0x02, 0x66, 0x00, 0x00, 0x00, 0x01};

}  // namespace

TEST_CASE("a CONNECT_REQ opens nothing until it echoes the cookie sent to its MAC")
{
	Net n;
	n.inject(1, frame(n.B().mac, spoofed, req(3, 0, 0x1234abcd, 777, 0)));
	n.settle();
	// A cookie went to the claimed MAC; the listener holds no state at all.
	const seen_frame *retry = n.last(1, VR_OP_CONNECT_RETRY);
	REQUIRE(retry);
	CHECK(std::memcmp(retry->p.dst_mac, spoofed, 6) == 0);
	CHECK(retry->p.h.conn_id == 0x1234abcd);
	CHECK(retry->p.h.ack_psn == 777);
	CHECK(retry->p.h.dst_ep == 3);
	CHECK(retry->p.h.operand_b != 0);
	CHECK(retry->p.h.payload_len == 0); // no amplification
	CHECK(n.ctr(1).cookies_sent == 1);
	CHECK(n.accepts() == 0);
	CHECK(vr_engine_next_timeout(n.B().eng) == VR_U64_MAX); // not a single connection
	uint64_t cookie = retry->p.h.operand_b;

	// Wrong cookies, or the cookie of another request, open nothing.
	n.inject(1, frame(n.B().mac, spoofed, req(3, 0, 0x1234abcd, 777, cookie ^ 1)));
	n.inject(1, frame(n.B().mac, spoofed, req(3, 0, 0x1234abcd, 778, cookie)));
	n.inject(1, frame(n.B().mac, spoofed, req(4, 0, 0x1234abcd, 777, cookie)));
	const uint8_t other[6] = {0x02, 0x66, 0, 0, 0, 2};
	n.inject(1, frame(n.B().mac, other, req(3, 0, 0x1234abcd, 777, cookie)));
	n.settle();
	CHECK(n.ctr(1).cookies_refused == 4);
	CHECK(n.accepts() == 0);
	CHECK(vr_engine_next_timeout(n.B().eng) == VR_U64_MAX);

	// Whoever does receive at the MAC it claims can echo it: that opens.
	n.inject(1, frame(n.B().mac, spoofed, req(3, 0, 0x1234abcd, 777, cookie)));
	n.settle();
	CHECK(n.accepts() == 1);
	const seen_frame *ack = n.last(1, VR_OP_CONNECT_ACK);
	REQUIRE(ack);
	CHECK(ack->p.h.conn_id == 0x1234abcd);
	CHECK(ack->p.h.ack_psn == 777);
}

TEST_CASE("a cookie lives for one or two secret epochs of the listener's clock")
{
	Net n;
	uint64_t epoch = 1ull << VR_COOKIE_EPOCH_SHIFT;
	n.advance_to(3 * epoch + epoch / 2);
	n.inject(1, frame(n.B().mac, spoofed, req(1, 0, 0x10001, 5, 0)));
	n.settle();
	REQUIRE(n.last(1, VR_OP_CONNECT_RETRY));
	uint64_t cookie = n.last(1, VR_OP_CONNECT_RETRY)->p.h.operand_b;

	// Next epoch: the previous secret is still accepted.
	n.advance_to(4 * epoch + 10);
	n.inject(1, frame(n.B().mac, spoofed, req(1, 0, 0x10001, 5, cookie)));
	n.settle();
	CHECK(n.accepts() == 1);
	CHECK(n.ctr(1).cookies_refused == 0);

	// Two epochs on, the same kind of cookie has expired: a new one is sent.
	n.inject(1, frame(n.B().mac, spoofed, req(1, 0, 0x20002, 6, 0)));
	n.settle();
	uint64_t old = n.last(1, VR_OP_CONNECT_RETRY)->p.h.operand_b;
	n.advance_to(6 * epoch + 10);
	size_t retries = n.count_op(1, VR_OP_CONNECT_RETRY);
	n.inject(1, frame(n.B().mac, spoofed, req(1, 0, 0x20002, 6, old)));
	n.settle();
	CHECK(n.accepts() == 1);
	CHECK(n.ctr(1).cookies_refused == 1);
	REQUIRE(n.count_op(1, VR_OP_CONNECT_RETRY) == retries + 1);
	CHECK(n.last(1, VR_OP_CONNECT_RETRY)->p.h.operand_b != old);
}

TEST_CASE("a flood of spoofed CONNECT_REQs takes no slot and few answers; a real initiator connects")
{
	vr_config b = base_cfg();
	b.max_conns = 4;
	Net n(base_cfg(), b);
	vrsim::Rng rng(99);
	const int flood = 3000;
	for (int i = 0; i < flood; i++) {
		uint8_t mac[6] = {0x02, 0x77};
		uint64_t r = rng.next();
		std::memcpy(mac + 2, &r, 4);
		n.s.inject(1, frame(n.B().mac, mac, req((uint16_t)r, 0, (uint32_t)(r >> 16), (uint32_t)r, 0)),
			   n.s.now + 1000 + (uint64_t)i * 1000); // 1M requests/s for 3 ms
	}
	uint32_t ca = 0, cb = 0;
	REQUIRE(connect(n.s, 0, 0, 1, 0, &ca, &cb));
	n.settle(10000000);
	CHECK(n.accepts() == 1);
	// At most a burst of answers per millisecond went out; the rest were dropped.
	CHECK(n.ctr(1).cookies_sent <= (uint64_t)VR_CTL_REPLY_BURST * 6);
	CHECK(n.ctr(1).cookies_sent > 0);
	CHECK(n.ctr(1).ctl_replies_dropped > 0);
	CHECK(n.ctr(1).cookies_sent + n.ctr(1).ctl_replies_dropped >= (uint64_t)flood);
	CHECK(vr_conn_state(n.B().eng, cb) == VR_CONN_CONNECTED);
}

TEST_CASE("answers to an initiator must echo its ISN")
{
	Net n;
	const uint8_t ghost[6] = {0x02, 0x55, 0, 0, 0, 7};
	uint32_t conn = 0;
	REQUIRE(vr_connect(n.A().eng, 0, ghost, 2, 41, &conn) == 0);
	n.settle();
	const seen_frame *r = n.last(0, VR_OP_CONNECT_REQ);
	REQUIRE(r);
	uint32_t isn = r->p.h.psn;
	auto answer = [&](uint8_t op, uint32_t ack, uint64_t cookie) {
		vr_hdr h{};
		h.version = VR_WIRE_VERSION;
		h.opcode = op;
		h.src_ep = 2;
		h.dst_ep = 0;
		h.conn_id = conn;
		h.ack_psn = ack;
		h.operand_b = cookie;
		h.msg_id = 0x30003;
		h.psn = 1000;
		if (op == VR_OP_NAK)
			h.nak_reason = VR_NAK_REJECTED;
		n.inject(0, frame(n.A().mac, ghost, h));
		n.settle(1000);
	};
	uint64_t bad = n.ctr(0).drop_bad_state;
	answer(VR_OP_CONNECT_RETRY, isn + 1, 0xabc);
	answer(VR_OP_NAK, isn ^ 0x80000000u, 0);
	answer(VR_OP_CONNECT_ACK, 0, 0);
	CHECK(n.ctr(0).drop_bad_state - bad == 3);
	CHECK(vr_conn_state(n.A().eng, conn) == VR_CONN_CONNECTING);
	CHECK(find(n.A(), 41) == nullptr);
	for (auto &x : n.seen)
		if (x.from == 0 && x.p.h.opcode == VR_OP_CONNECT_REQ)
			CHECK(x.p.h.operand_b == 0); // no forged cookie was taken

	// With the ISN the answers are taken: a cookie is echoed, then an ACK completes it.
	answer(VR_OP_CONNECT_RETRY, isn, 0xabc);
	n.settle(1000);
	REQUIRE(n.last(0, VR_OP_CONNECT_REQ));
	CHECK(n.last(0, VR_OP_CONNECT_REQ)->p.h.operand_b == 0xabc);
	answer(VR_OP_CONNECT_ACK, isn, 0);
	REQUIRE(find(n.A(), 41));
	CHECK(find(n.A(), 41)->status == 0);
	CHECK(vr_conn_state(n.A().eng, conn) == VR_CONN_CONNECTED);
}

TEST_CASE("a CONNECT_REQ that would replace a live connection is challenged, not obeyed")
{
	Net n;
	uint32_t ca = 0, cb = 0;
	REQUIRE(connect(n.s, 0, 0, 1, 0, &ca, &cb));
	const seen_frame *mine = n.last(0, VR_OP_CONNECT_REQ);
	REQUIRE(mine);
	REQUIRE(mine->p.h.operand_b != 0); // the one that opened: it echoed a cookie
	std::vector<uint8_t> opened = mine->bytes;
	vr_hdr h = mine->p.h;
	CHECK(n.accepts() == 1);

	// The request that opened it, replayed: the ACK again, nothing new.
	size_t acks = n.count_op(1, VR_OP_CONNECT_ACK);
	n.inject(1, opened);
	n.settle();
	CHECK(n.accepts() == 1);
	CHECK(n.count_op(1, VR_OP_CONNECT_ACK) == acks + 1);

	// Same ids, a new ISN: it must earn its own cookie first ...
	h.psn += 12345;
	h.operand_b = 0;
	n.inject(1, frame(n.B().mac, n.A().mac, h));
	n.settle();
	const seen_frame *retry = n.last(1, VR_OP_CONNECT_RETRY);
	REQUIRE(retry);
	REQUIRE(retry->p.h.ack_psn == h.psn);
	CHECK(n.ctr(1).challenges == 0);
	// ... and even with it, the live connection is only probed. A is alive
	// and answers, so the connection stays and nothing new opens.
	h.operand_b = retry->p.h.operand_b;
	std::vector<uint8_t> replacing = frame(n.B().mac, n.A().mac, h);
	uint64_t probes = n.ctr(0).acks_rx;
	n.inject(1, replacing);
	n.settle(10 * base_cfg().rto_max_ns);
	CHECK(n.ctr(1).challenges == 1);
	CHECK(n.ctr(0).acks_rx > probes);
	CHECK(n.ctr(1).challenge_resets == 0);
	CHECK(vr_conn_state(n.B().eng, cb) == VR_CONN_CONNECTED);
	CHECK(n.accepts() == 1);

	// A restarted peer does not answer the probe (its engine has no such
	// connection): the old connection fails, and the request gets in.
	n.s.link(0, 1).down = true;
	n.inject(1, replacing);
	n.settle(2 * base_cfg().rto_max_ns);
	CHECK(n.ctr(1).challenges == 2);
	CHECK(n.ctr(1).challenge_resets == 1);
	CHECK(vr_conn_state(n.B().eng, cb) == VR_CONN_ERROR);
	const vr_completion *gone = nullptr;
	for (auto &c : n.B().comps)
		if (c.op == VR_WC_DISCONNECT && c.conn == cb)
			gone = &c;
	REQUIRE(gone);
	CHECK(gone->status == -ECONNRESET);
	n.inject(1, replacing);
	n.settle();
	CHECK(n.accepts() == 2);
	// Its retransmission does not open a third.
	n.inject(1, replacing);
	n.settle();
	CHECK(n.accepts() == 2);
}

TEST_CASE("a listener takes a limited share of connections from one MAC and keeps a reserve")
{
	vrsim::Sim s(8);
	vr_config b = base_cfg(); // 8 connections: 6 per MAC, 1 kept for B's own connects
	REQUIRE(s.add_node(base_cfg()) == 0);
	REQUIRE(s.add_node(b) == 1);
	REQUIRE(s.add_node(base_cfg()) == 2);
	REQUIRE(vr_ep_open(s.node(0).eng, 0, 1, false) == 0);
	REQUIRE(vr_ep_open(s.node(1).eng, 0, 1, true) == 0);
	REQUIRE(vr_ep_open(s.node(2).eng, 0, 1, true) == 0);
	uint32_t ca, cb;
	for (int i = 0; i < 6; i++)
		REQUIRE(connect(s, 0, 0, 1, 0, &ca, &cb));
	uint32_t refused = 0;
	REQUIRE(vr_connect(s.node(0).eng, 0, s.node(1).mac, 0, 901, &refused) == 0);
	s.run([&] { return find(s.node(0), 901) != nullptr; }, s.now + 1000000000);
	REQUIRE(find(s.node(0), 901));
	CHECK(find(s.node(0), 901)->status == -ECONNREFUSED);
	CHECK(find(s.node(0), 901)->nak_reason == VR_NAK_RESOURCES);
	CHECK(vr_engine_counters(s.node(1).eng)->conn_limit_refused == 1);
	// Another MAC still gets in, up to the reserve ...
	REQUIRE(connect(s, 2, 0, 1, 0, &ca, &cb));
	REQUIRE(vr_connect(s.node(2).eng, 0, s.node(1).mac, 0, 902, &refused) == 0);
	s.run([&] { return find(s.node(2), 902) != nullptr; }, s.now + 1000000000);
	CHECK(find(s.node(2), 902)->status == -ECONNREFUSED);
	CHECK(vr_engine_counters(s.node(1).eng)->conn_limit_refused == 2);
	// ... which is still there for the listener's own connect.
	REQUIRE(connect(s, 1, 0, 2, 0, &ca, &cb));
}

TEST_CASE("answers to strangers take at most an eighth of a poll while connections have frames")
{
	Net n;
	uint32_t ca = 0, cb = 0;
	REQUIRE(connect(n.s, 0, 0, 1, 0, &ca, &cb));
	GuardedBuf src, dst;
	src.init(200000, 1);
	dst.init(200000, 2);
	REQUIRE(reg(n.B(), 0, src, 0) == 0);
	REQUIRE(reg(n.A(), 0, dst, VR_ACCESS_ALL) == 0);
	// B has a write to send and a queue of cookies for 24 strangers.
	uint64_t cookies = n.ctr(1).cookies_sent;
	for (int i = 0; i < 24; i++) {
		uint8_t mac[6] = {0x02, 0x44, 0, 0, 0, (uint8_t)i};
		auto f = frame(n.B().mac, mac, req(1, 0, 0x10000u + (uint32_t)i, (uint32_t)i, 0));
		REQUIRE(vr_engine_input(n.B().eng, f.data(), (uint32_t)f.size(), n.s.now) == 0);
	}
	REQUIRE(vr_post_write(n.B().eng, cb, src.key, 0, dst.key, 0, 200000, 5) == 0);
	size_t before = n.seen.size();
	REQUIRE(vr_engine_tx_poll(n.B().eng, n.s.now, 16) == 16);
	size_t retries = 0, data = 0;
	for (size_t i = before; i < n.seen.size(); i++) {
		retries += n.seen[i].p.h.opcode == VR_OP_CONNECT_RETRY;
		data += vr_op_is_data(n.seen[i].p.h.opcode);
	}
	CHECK(retries == 16 / 8 + 1);
	CHECK(data == 16 - retries);
	// Once the connection has nothing more to send, the rest go out.
	n.s.run([&] { return find(n.B(), 5) != nullptr; }, n.s.now + 1000000000);
	n.settle();
	CHECK(find(n.B(), 5)->status == 0);
	CHECK(n.ctr(1).cookies_sent - cookies == 24);
}

TEST_CASE("frames of a connection outside its windows are dropped before they count")
{
	vr_config cfg = base_cfg();
	cfg.keepalive_ns = 200000;
	cfg.peer_timeout_ns = 2000000;
	Net n(cfg, cfg);
	uint32_t ca = 0, cb = 0;
	REQUIRE(connect(n.s, 0, 0, 1, 0, &ca, &cb));
	GuardedBuf src, dst;
	src.init(4000, 1);
	dst.init(4000, 2);
	REQUIRE(reg(n.A(), 0, src, 0) == 0);
	REQUIRE(reg(n.B(), 0, dst, VR_ACCESS_ALL) == 0);
	REQUIRE(vr_post_write(n.A().eng, ca, src.key, 0, dst.key, 0, 3000, 1) == 0);
	n.s.run([&] { return find(n.A(), 1) != nullptr; }, n.s.now + 100000000);
	const seen_frame *w = n.last(0, VR_OP_WRITE_LAST);
	REQUIRE(w);
	uint32_t rcv_nxt = w->p.h.psn + 1; // what B expects next
	uint32_t b_next = w->p.h.ack_psn;  // what A expects from B
	auto forge = [&](uint8_t op, uint32_t psn, uint32_t ack, uint8_t flags) {
		vr_hdr h{};
		h.version = VR_WIRE_VERSION;
		h.opcode = op;
		h.flags = flags;
		h.conn_id = cb;
		h.psn = psn;
		h.ack_psn = ack;
		h.rkey = dst.key;
		h.total_len = op == VR_OP_ACK ? 0 : 8;
		h.payload_len = op == VR_OP_ACK ? 0 : 8;
		const char evil[8] = {'E', 'V', 'I', 'L', 'E', 'V', 'I', 'L'};
		n.inject(1, frame(n.B().mac, n.A().mac, h, evil));
		n.settle(10000);
	};
	uint64_t out = n.ctr(1).drop_out_of_window, seq = n.ctr(1).naks_tx[VR_NAK_SEQ];
	forge(VR_OP_WRITE_ONLY, rcv_nxt + 100000, b_next, 0);          // PSN far ahead
	forge(VR_OP_WRITE_ONLY, rcv_nxt - 100000, b_next, 0);          // far behind
	forge(VR_OP_WRITE_ONLY, rcv_nxt, b_next + 1000, 0);            // acks what B never sent
	forge(VR_OP_WRITE_ONLY, rcv_nxt, b_next - 100000, 0);          // an ACK from long ago
	forge(VR_OP_ACK, rcv_nxt + 100000, b_next, VR_F_ACKREQ);       // a probe from outside
	forge(VR_OP_ACK, rcv_nxt - 1, b_next, VR_F_ACKREQ);            // behind what B received
	CHECK(n.ctr(1).drop_out_of_window - out == 6);
	CHECK(n.ctr(1).naks_tx[VR_NAK_SEQ] == seq); // no NAK went back for them
	CHECK(std::memcmp(dst.data(), src.data(), 3000) == 0);
	// Inside the windows a frame from the future is a gap, answered as before.
	forge(VR_OP_WRITE_ONLY, rcv_nxt + 10, b_next, 0);
	CHECK(n.ctr(1).naks_tx[VR_NAK_SEQ] == seq + 1);

	// A forger's probes do not keep a vanished peer's connection alive.
	n.s.link(0, 1).down = true;
	n.s.link(1, 0).down = true;
	for (int i = 0; i < 30; i++)
		forge(VR_OP_ACK, rcv_nxt + 70000 + (uint32_t)i, b_next, VR_F_ACKREQ);
	n.settle(cfg.peer_timeout_ns);
	CHECK(vr_conn_state(n.B().eng, cb) == VR_CONN_ERROR);
}
