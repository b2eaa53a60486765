// SPDX-License-Identifier: GPL-2.0 OR MIT
// Authenticated frames (docs/wire-format.md, Authentication): the shared
// vector (the kernel test module checks the same bytes), the construction
// against libsodium's AEAD, negotiation, and every on-path forgery of
// issue 13 failing with authentication on (and passing without it, which is
// what the default mode does not protect against).
#include <doctest/doctest.h>

#include <sodium.h>

#include <cstring>

#include "harness.h"

extern "C" {
#include "auth.h"
#include "crc32c.h"
#include "tests/kbuild/auth_vector.h"
}

using namespace vrtest;

namespace {

vr_config auth_cfg(uint8_t key_seed)
{
	vr_config c = base_cfg();
	c.auth = VR_AUTH_PSK;
	for (int i = 0; i < VR_AUTH_KEY_LEN; i++)
		c.auth_key[i] = static_cast<uint8_t>(key_seed + i);
	return c;
}

struct Net : frame_log {
	vrsim::Sim s;
	uint32_t ca = 0, cb = 0;
	Net(vr_config a, vr_config b, uint64_t seed = 3) : s(seed)
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
	void settle(uint64_t ns = 2000000) { s.run(nullptr, s.now + ns); }
	bool wait(uint64_t cookie, int node = 0)
	{
		return s.run([&] { return find(s.node(node), cookie) != nullptr; }, s.now + 2000000000);
	}
};

// An on-path forger: takes a real frame, changes it and fixes the CRC (it
// cannot fix the tag without the key).
std::vector<uint8_t> recrc(std::vector<uint8_t> f)
{
	vr_parsed p{};
	uint8_t flags = f[VR_ETH_HLEN + VR_OFF_FLAGS];
	uint32_t hl = vr_wire_hdrs_len(flags);
	vr_put_be32(f.data() + VR_ETH_HLEN + VR_OFF_CRC, 0);
	uint32_t st = vr_crc32c_update(VR_CRC32C_INIT, f.data(), hl);
	if (!(flags & (VR_F_AUTH | VR_F_LINK_FCS)))
		st = vr_crc32c_update(st, f.data() + hl, (uint32_t)f.size() - hl);
	vr_wire_set_crc(f.data(), vr_crc32c_final(st));
	REQUIRE(vr_wire_parse(f.data(), (uint32_t)f.size(), VR_ETHERTYPE_DEFAULT, &p) == 0);
	return f;
}

}  // namespace

TEST_CASE("the shared vector: connection key, frame tag and cookie hash as the kernel computes them")
{
	uint8_t psk[32], key[32], frame[VRV_FRAME_LEN], tag[16];
	for (int i = 0; i < 32; i++)
		psk[i] = VRV_PSK_BYTE(i);
	vr_auth_conn_key(key, psk, VRV_INIT_ID, VRV_INIT_ISN, VRV_ACC_ID, VRV_ACC_ISN);
	CHECK(std::memcmp(key, vrv_conn_key, 32) == 0);
	for (int i = 0; i < VRV_FRAME_LEN; i++)
		frame[i] = VRV_FRAME_BYTE(i);
	vr_auth_mac m;
	vr_auth_begin(&m, vrv_conn_key, VRV_NONCE);
	vr_auth_update(&m, frame, 50); // in pieces, as the payload comes from a region
	vr_auth_update(&m, frame + 50, VRV_FRAME_LEN - 50);
	vr_auth_finish(&m, tag);
	CHECK(std::memcmp(tag, vrv_tag, 16) == 0);
	uint8_t sk[16], sin[15];
	for (int i = 0; i < 16; i++)
		sk[i] = static_cast<uint8_t>(i);
	for (int i = 0; i < 15; i++)
		sin[i] = static_cast<uint8_t>(i);
	CHECK(vr_siphash24(sk, sin, 15) == VRV_SIPHASH);
}

TEST_CASE("a frame's tag is the RFC 8439 AEAD tag of an empty message with the frame as additional data")
{
	REQUIRE(sodium_init() >= 0);
	vrsim::Rng rng(17);
	for (int round = 0; round < 200; round++) {
		uint8_t key[32], tag[16], want[16], npub[12] = {};
		std::vector<uint8_t> ad(rng.range(1, 3000));
		for (auto &b : key)
			b = static_cast<uint8_t>(rng.next());
		for (auto &b : ad)
			b = static_cast<uint8_t>(rng.next());
		uint64_t nonce = rng.next();
		for (int i = 0; i < 8; i++)
			npub[4 + i] = static_cast<uint8_t>(nonce >> (8 * i));
		unsigned long long maclen = 0;
		uint8_t none[1] = {}; // the empty message (libsodium wants pointers)
		crypto_aead_chacha20poly1305_ietf_encrypt_detached(none, want, &maclen, none, 0,
								   ad.data(), ad.size(), nullptr,
								   npub, key);
		vr_auth_mac m;
		vr_auth_begin(&m, key, nonce);
		size_t cut = rng.below(ad.size());
		vr_auth_update(&m, ad.data(), (uint32_t)cut);
		vr_auth_update(&m, ad.data() + cut, (uint32_t)(ad.size() - cut));
		vr_auth_finish(&m, tag);
		CAPTURE(round);
		REQUIRE(std::memcmp(tag, want, 16) == 0);
	}
}

TEST_CASE("the replay window takes every nonce once and none far behind")
{
	vr_replay w{};
	CHECK(vr_replay_fresh(&w, 0));
	vr_replay_take(&w, 0);
	CHECK(!vr_replay_fresh(&w, 0));
	vr_replay_take(&w, 5);
	CHECK(vr_replay_fresh(&w, 3)); // late, but inside the window
	vr_replay_take(&w, 3);
	CHECK(!vr_replay_fresh(&w, 3));
	CHECK(!vr_replay_fresh(&w, 5));
	vr_replay_take(&w, 200);
	CHECK(!vr_replay_fresh(&w, 200 - VR_AUTH_REPLAY_WINDOW));
	CHECK(vr_replay_fresh(&w, 200 - VR_AUTH_REPLAY_WINDOW + 1));
	CHECK(!vr_replay_fresh(&w, 5));
}

TEST_CASE("two authenticating engines: every frame tagged, every operation as usual, within the MTU")
{
	Net n(auth_cfg(1), auth_cfg(1));
	REQUIRE(connect(n.s, 0, 0, 1, 0, &n.ca, &n.cb));
	GuardedBuf src, dst, back;
	src.init(100000, 1);
	dst.init(100000, 2);
	back.init(100000, 3);
	REQUIRE(reg(n.A(), 0, src, 0) == 0);
	REQUIRE(reg(n.A(), 0, back, VR_ACCESS_LOCAL_WRITE) == 0);
	REQUIRE(reg(n.B(), 0, dst, VR_ACCESS_ALL) == 0);
	REQUIRE(vr_post_write(n.A().eng, n.ca, src.key, 0, dst.key, 0, 100000, 1) == 0);
	REQUIRE(n.wait(1));
	CHECK(find(n.A(), 1)->status == 0);
	CHECK(std::memcmp(src.data(), dst.data(), 100000) == 0);
	REQUIRE(vr_post_read(n.A().eng, n.ca, back.key, 0, dst.key, 0, 100000, 2) == 0);
	REQUIRE(vr_post_fadd(n.A().eng, n.ca, dst.key, 8, 5, 3) == 0);
	REQUIRE(vr_post_recv(n.B().eng, 0, dst.key, 4096, 4096, 9, ~0ull, 4) == 0);
	REQUIRE(vr_post_send(n.A().eng, n.ca, src.key, 0, 3000, 9, 5) == 0);
	REQUIRE(n.wait(2));
	REQUIRE(n.wait(3));
	REQUIRE(n.wait(4, 1));
	CHECK(find(n.A(), 2)->status == 0);
	CHECK(find(n.A(), 3)->status == 0);
	CHECK(find(n.B(), 4)->status == 0);
	CHECK(std::memcmp(src.data(), back.data(), 8) == 0);
	CHECK(src.guards_ok(1));
	CHECK(dst.guards_ok(2));
	size_t tagged = 0, plain = 0;
	for (auto &x : n.seen) {
		CHECK(x.bytes.size() <= VR_ETH_HLEN + 1500u);
		if (x.p.h.opcode == VR_OP_CONNECT_RETRY)
			continue; // a stateless listener's cookie: no connection, no key
		(x.tagged ? tagged : plain)++;
	}
	CHECK(plain == 0);
	CHECK(tagged > 100);
	CHECK(n.ctr(0).auth_failed == 0);
	CHECK(n.ctr(1).auth_failed == 0);
	CHECK(n.ctr(1).auth_replays == 0);
}

TEST_CASE("both sides authenticate or the connection is refused; a wrong key opens nothing")
{
	SUBCASE("initiator with a key, listener without") {
		Net n(auth_cfg(1), base_cfg());
		uint32_t c = 0;
		REQUIRE(vr_connect(n.A().eng, 0, n.B().mac, 0, 7, &c) == 0);
		REQUIRE(n.wait(7));
		CHECK(find(n.A(), 7)->status == -ECONNREFUSED);
		CHECK(find(n.A(), 7)->nak_reason == VR_NAK_REJECTED);
		CHECK(n.ctr(1).auth_refused == 1);
	}
	SUBCASE("listener with a key, initiator without") {
		Net n(base_cfg(), auth_cfg(1));
		uint32_t c = 0;
		REQUIRE(vr_connect(n.A().eng, 0, n.B().mac, 0, 7, &c) == 0);
		REQUIRE(n.wait(7));
		CHECK(find(n.A(), 7)->status == -ECONNREFUSED);
		CHECK(n.ctr(1).auth_refused == 1);
	}
	SUBCASE("different keys") {
		Net n(auth_cfg(1), auth_cfg(2));
		uint32_t c = 0;
		REQUIRE(vr_connect(n.A().eng, 0, n.B().mac, 0, 7, &c) == 0);
		REQUIRE(n.wait(7));
		CHECK(find(n.A(), 7)->status == -ETIMEDOUT);
		CHECK(n.ctr(1).auth_failed > 0);
		for (auto &comp : n.B().comps)
			CHECK(comp.op != VR_WC_ACCEPT);
	}
	SUBCASE("an endpoint's own key instead of the device's") {
		Net n(base_cfg(), auth_cfg(1));
		uint8_t key[VR_AUTH_KEY_LEN];
		for (int i = 0; i < VR_AUTH_KEY_LEN; i++)
			key[i] = static_cast<uint8_t>(1 + i); // the same as auth_cfg(1)'s
		REQUIRE(vr_ep_set_auth_key(n.A().eng, 0, key) == 0);
		REQUIRE(connect(n.s, 0, 0, 1, 0, &n.ca, &n.cb));
		CHECK(n.last(0, VR_OP_CONNECT_REQ)->tagged);
		key[0] ^= 1;
		REQUIRE(vr_ep_set_auth_key(n.B().eng, 0, key) == 0);
		uint32_t c = 0;
		REQUIRE(vr_connect(n.A().eng, 0, n.B().mac, 0, 8, &c) == 0);
		REQUIRE(n.wait(8));
		CHECK(find(n.A(), 8)->status == -ETIMEDOUT);
		REQUIRE(vr_ep_set_auth_key(n.A().eng, 0, nullptr) == 0); // back to the device's: none
		REQUIRE(vr_connect(n.A().eng, 0, n.B().mac, 0, 9, &c) == 0);
		REQUIRE(n.wait(9));
		CHECK(find(n.A(), 9)->status == -ECONNREFUSED);
		CHECK(vr_ep_set_auth_key(n.A().eng, 3, key) == -ENOENT);
	}
}

// The on-path attacks of issue 13 (item 5): an attacker that sees every
// frame takes the next real WRITE, READ_REQ or FADD, changes it and puts it
// on the wire first with a good CRC.  Without authentication each of them
// lands (that is what the default mode does not stop); with it each is
// dropped, counted, and the real frame still lands.
TEST_CASE("on-path forgeries: they land on a CRC-only connection, and fail on an authenticated one")
{
	for (bool auth : {false, true}) {
		CAPTURE(auth);
		vr_config cfg = auth ? auth_cfg(9) : base_cfg();
		cfg.rto_ns = 1000000; // no retransmission while a forgery is on its way
		cfg.rto_max_ns = 8000000;
		Net n(cfg, cfg);
		REQUIRE(connect(n.s, 0, 0, 1, 0, &n.ca, &n.cb));
		GuardedBuf src, dst, sink;
		src.init(4096, 1);
		dst.init(4096, 2);
		sink.init(4096, 3);
		REQUIRE(reg(n.A(), 0, src, 0) == 0);
		REQUIRE(reg(n.A(), 0, sink, VR_ACCESS_LOCAL_WRITE) == 0);
		REQUIRE(reg(n.B(), 0, dst, VR_ACCESS_ALL) == 0);
		// A's frames to B are held back: the forger's copy arrives first.
		std::vector<std::vector<uint8_t>> held;
		n.s.link(0, 1).down = true;
		auto capture_next = [&](uint8_t op) {
			n.settle(20000);
			const seen_frame *x = n.last(0, op);
			REQUIRE(x);
			return x->bytes;
		};
		auto deliver_real = [&](const std::vector<uint8_t> &real) {
			n.s.link(0, 1).down = false;
			n.s.inject(1, real, n.s.now + 2000);
			n.settle(3000000);
			n.s.link(0, 1).down = true;
		};
		uint64_t base_failed = n.ctr(1).auth_failed;

		// A forged WRITE at the real one's PSN with the attacker's bytes.
		REQUIRE(vr_post_write(n.A().eng, n.ca, src.key, 0, dst.key, 0, 64, 1) == 0);
		std::vector<uint8_t> real = capture_next(VR_OP_WRITE_ONLY);
		std::vector<uint8_t> forged = real;
		uint32_t hl = vr_wire_hdrs_len(forged[VR_ETH_HLEN + VR_OFF_FLAGS]);
		std::memset(forged.data() + hl, 0xEE, 64);
		n.s.inject(1, recrc(forged), n.s.now + 1000);
		n.settle(100000);
		bool landed = dst.data()[0] == 0xEE;
		CHECK(landed == !auth);
		deliver_real(real);
		if (auth) {
			REQUIRE(find(n.A(), 1));
			CHECK(find(n.A(), 1)->status == 0);
			CHECK(std::memcmp(dst.data(), src.data(), 64) == 0); // the real bytes
		}

		// A forged READ_REQ: the attacker asks for region data.
		size_t resp_before = 0;
		for (auto &x : n.seen)
			resp_before += x.from == 1 && x.p.h.opcode == VR_OP_READ_RESP_ONLY;
		REQUIRE(vr_post_read(n.A().eng, n.ca, sink.key, 0, dst.key, 0, 32, 2) == 0);
		real = capture_next(VR_OP_READ_REQ);
		forged = real;
		vr_put_be64(forged.data() + VR_ETH_HLEN + VR_OFF_REMOTE_OFF, 1024);
		n.s.inject(1, recrc(forged), n.s.now + 1000);
		n.settle(100000);
		size_t resp_after = 0;
		for (auto &x : n.seen)
			resp_after += x.from == 1 && x.p.h.opcode == VR_OP_READ_RESP_ONLY;
		CHECK((resp_after > resp_before) == !auth);
		deliver_real(real);

		// A forged FADD of the attacker's addend.
		uint64_t word_before;
		std::memcpy(&word_before, dst.data() + 16, 8);
		REQUIRE(vr_post_fadd(n.A().eng, n.ca, dst.key, 16, 1, 3) == 0);
		real = capture_next(VR_OP_ATOMIC_FADD);
		forged = real;
		vr_put_be64(forged.data() + VR_ETH_HLEN + VR_OFF_OPERAND_A, 1000000);
		n.s.inject(1, recrc(forged), n.s.now + 1000);
		n.settle(100000);
		uint64_t word_after;
		std::memcpy(&word_after, dst.data() + 16, 8);
		CHECK((word_after == word_before + 1000000) == !auth);
		deliver_real(real);

		if (auth) {
			std::memcpy(&word_after, dst.data() + 16, 8);
			CHECK(word_after == word_before + 1); // the real FADD, once
			CHECK(n.ctr(1).auth_failed - base_failed == 3);
			// A replay of a real frame is refused by its nonce.
			n.s.inject(1, real, n.s.now + 1000);
			n.settle(100000);
			CHECK(n.ctr(1).auth_replays >= 1);
			// A forged DISCONNECT inside the windows, with a fresh nonce:
			// the connection stays.
			const seen_frame *ack = n.last(0, VR_OP_ACK);
			REQUIRE(ack);
			std::vector<uint8_t> bye = ack->bytes;
			uint8_t *block = bye.data() + VR_ETH_HLEN + VR_HDR_LEN;
			bye[VR_ETH_HLEN + VR_OFF_OPCODE] = VR_OP_DISCONNECT;
			bye[VR_ETH_HLEN + VR_OFF_FLAGS] &= (uint8_t)~VR_F_ACKREQ;
			vr_put_be64(block, vr_get_be64(block) + 1000);
			n.s.inject(1, recrc(bye), n.s.now + 1000);
			n.settle(100000);
			CHECK(vr_conn_state(n.B().eng, n.cb) == VR_CONN_CONNECTED);
			CHECK(n.ctr(1).auth_failed - base_failed == 4);
		}
		CHECK(dst.guards_ok(2));
	}
}

TEST_CASE("a host whose memory has no walk: the payload is tagged through copies")
{
	// The default pointer ops without walk, as a kernel host without it would be.
	static vr_mem_ops no_walk = vr_ptr_mem_ops;
	no_walk.walk = nullptr;
	vr_config a = auth_cfg(4), b = auth_cfg(4);
	a.mem = &no_walk;
	Net n(a, b);
	REQUIRE(connect(n.s, 0, 0, 1, 0, &n.ca, &n.cb));
	GuardedBuf src, dst;
	src.init(5000, 1);
	dst.init(5000, 2);
	REQUIRE(reg(n.A(), 0, src, 0) == 0);
	REQUIRE(reg(n.B(), 0, dst, VR_ACCESS_ALL) == 0);
	REQUIRE(vr_post_write(n.A().eng, n.ca, src.key, 0, dst.key, 0, 5000, 1) == 0);
	REQUIRE(n.wait(1));
	CHECK(find(n.A(), 1)->status == 0);
	CHECK(std::memcmp(src.data(), dst.data(), 5000) == 0);
	CHECK(n.ctr(1).auth_failed == 0);
}
