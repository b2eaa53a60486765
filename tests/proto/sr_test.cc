// SPDX-License-Identifier: GPL-2.0 OR MIT
// Selective repeat (docs/proto.md, Reliability), frame by frame: chosen
// frames are lost on the simulated wire and each test checks what the
// receiver holds, what the sender sends again, that nothing acts ahead of
// its turn or twice, and that completions keep their order.  The randomised
// runs (sim_random_test, sim_chaos_test) check the same invariants at
// scale; these pin down the cases one by one, each against go-back-N.
#include <doctest/doctest.h>

#include <cstring>
#include <functional>
#include <set>

#include "harness.h"

using namespace vrtest;

namespace {

// Two nodes, connected.
struct Net : two_nodes {
	Net(vr_config a, vr_config b, uint64_t seed = 3) : two_nodes(a, b, seed)
	{
		REQUIRE(connect(s, 0, 0, 1, 0, &ca, &cb));
	}
	// Lose the first transmission of each data frame from `from` whose
	// position in that node's stream (0 = the first data frame after the
	// handshake) is in `which`; every later copy passes.
	void lose_first_copy(int from, std::set<uint32_t> which)
	{
		auto seen = std::make_shared<std::set<uint32_t>>();
		auto base = std::make_shared<int64_t>(-1);
		s.drop = [=](int f, int, const std::vector<uint8_t> &b) {
			vr_parsed p;
			if (f != from || vr_wire_parse(b.data(), (uint32_t)b.size(), VR_ETHERTYPE_DEFAULT, &p) ||
			    !vr_op_is_data(p.h.opcode))
				return false;
			if (*base < 0)
				*base = p.h.psn;
			uint32_t i = p.h.psn - (uint32_t)*base;
			return which.count(i) && seen->insert(i).second;
		};
	}
	// A patterned source of len bytes registered at `from` and a
	// destination the other node lets it write, for a write from -> to.
	void write_pair(int from, GuardedBuf &src, GuardedBuf &dst, uint32_t len, uint8_t pattern)
	{
		src.init(len, 1);
		dst.init(len, 2);
		for (uint32_t i = 0; i < len; i++)
			src.data()[i] = (uint8_t)(i * pattern + 3);
		REQUIRE(reg(s.node(from), 0, src, 0) == 0);
		REQUIRE(reg(s.node(1 - from), 0, dst, VR_ACCESS_REMOTE_WRITE) == 0);
	}
	size_t sent(int from, uint8_t opcode, uint8_t nak = 0) const
	{
		size_t k = 0;
		for (auto &f : seen)
			k += f.from == from && f.p.h.opcode == opcode && (!nak || f.p.h.nak_reason == nak);
		return k;
	}
};

vr_config cfg_with(uint32_t recovery)
{
	vr_config c = base_cfg();
	c.recovery = recovery;
	c.window = 64;
	return c;
}

uint64_t caps(const seen_frame *f)
{
	return f ? f->p.h.operand_a : ~0ull;
}

}  // namespace

TEST_CASE("selective repeat is agreed only when both ends offer it; a loss costs its frame")
{
	const uint32_t SR = VR_RECOVERY_SELECTIVE, GBN = VR_RECOVERY_GO_BACK_N;
	const uint32_t modes[][2] = {{SR, SR}, {SR, GBN}, {GBN, SR}, {GBN, GBN}};
	for (auto &m : modes) {
		CAPTURE(m[0]);
		CAPTURE(m[1]);
		Net n(cfg_with(m[0]), cfg_with(m[1]));
		bool sack = m[0] == SR && m[1] == SR;
		CHECK(((caps(n.last(0, VR_OP_CONNECT_REQ)) & VR_CAP_SACK) != 0) == (m[0] == SR));
		CHECK(((caps(n.last(1, VR_OP_CONNECT_ACK)) & VR_CAP_SACK) != 0) == sack);
		GuardedBuf src, dst;
		const uint32_t len = 20 * 1428; // 20 frames at MTU 1500
		n.write_pair(0, src, dst, len, 7);
		n.lose_first_copy(0, {2});
		REQUIRE(vr_post_write(n.A().eng, n.ca, src.key, 0, dst.key, 0, len, 1) == 0);
		REQUIRE(n.wait(1));
		CHECK(find(n.A(), 1)->status == 0);
		CHECK(std::memcmp(src.data(), dst.data(), len) == 0);
		CHECK(dst.guards_ok(2));
		CHECK(n.ctr(0).timeouts == 0);
		if (sack) {
			CHECK(n.ctr(0).retransmits == 1);           // the lost frame, nothing else
			CHECK(n.ctr(1).held_ahead >= 3);            // what came after it was kept
			CHECK(n.ctr(1).naks_tx[VR_NAK_SEQ] == 0);   // and told in SACK maps
			CHECK(n.ctr(1).dups == 0);
		} else {
			CHECK(n.ctr(0).retransmits > 1);            // go-back-N: the frames after it too
			CHECK(n.ctr(1).held_ahead == 0);
			CHECK(n.ctr(1).naks_tx[VR_NAK_SEQ] >= 1);
		}
	}
}

TEST_CASE("an atomic behind a lost write runs in its turn, once")
{
	for (uint32_t mode : {VR_RECOVERY_SELECTIVE, VR_RECOVERY_GO_BACK_N}) {
		CAPTURE(mode);
		Net n(cfg_with(mode), cfg_with(mode));
		GuardedBuf src, word, tail;
		src.init(4096, 1);
		word.init(8, 2);
		tail.init(4096, 3);
		const uint64_t x = 0x1122334455667788ull, start = 5;
		std::memcpy(src.data(), &x, 8);
		std::memcpy(word.data(), &start, 8);
		REQUIRE(reg(n.A(), 0, src, 0) == 0);
		REQUIRE(reg(n.B(), 0, word, VR_ACCESS_ALL) == 0);
		REQUIRE(reg(n.B(), 0, tail, VR_ACCESS_ALL) == 0);
		// the write of the word is lost once; the FADD and a write after it
		// arrive ahead of it
		n.lose_first_copy(0, {0});
		REQUIRE(vr_post_write(n.A().eng, n.ca, src.key, 0, word.key, 0, 8, 1) == 0);
		REQUIRE(vr_post_fadd(n.A().eng, n.ca, word.key, 0, 1, 2) == 0);
		REQUIRE(vr_post_write(n.A().eng, n.ca, src.key, 0, tail.key, 0, 4096, 3) == 0);
		REQUIRE(n.wait(3));
		REQUIRE(n.wait(2));
		const vr_completion *f = find(n.A(), 2);
		CHECK(f->status == 0);
		CHECK(f->value == x); // it saw the write before it, not the old word
		uint64_t now;
		std::memcpy(&now, word.data(), 8);
		CHECK(now == x + 1); // applied once, after the write
		CHECK(std::memcmp(tail.data(), src.data(), 4096) == 0);
		CHECK(word.guards_ok(2));
		CHECK(tail.guards_ok(3));
		CHECK(count(n.A(), 2) == 1);
		if (mode == VR_RECOVERY_SELECTIVE)
			CHECK(n.ctr(1).held_ahead >= 3); // the later write was kept, not the FADD
	}
}

TEST_CASE("READs complete in order when the last frame of a response is held")
{
	for (uint32_t mode : {VR_RECOVERY_SELECTIVE, VR_RECOVERY_GO_BACK_N}) {
		CAPTURE(mode);
		Net n(cfg_with(mode), cfg_with(mode));
		GuardedBuf remote, sink1, sink2;
		const uint32_t len1 = 3 * 1428, len2 = 100;
		remote.init(len1, 1);
		sink1.init(len1, 2);
		sink2.init(len2, 3);
		for (uint32_t i = 0; i < len1; i++)
			remote.data()[i] = (uint8_t)(i * 13 + 1);
		REQUIRE(reg(n.B(), 0, remote, VR_ACCESS_REMOTE_READ) == 0);
		REQUIRE(reg(n.A(), 0, sink1, VR_ACCESS_LOCAL_WRITE) == 0);
		REQUIRE(reg(n.A(), 0, sink2, VR_ACCESS_LOCAL_WRITE) == 0);
		// B's response stream: READ 1's three frames, then READ 2's one.
		// Losing READ 1's second frame leaves its last frame and READ 2's
		// whole response ahead of the gap.
		n.lose_first_copy(1, {1});
		REQUIRE(vr_post_read(n.A().eng, n.ca, sink1.key, 0, remote.key, 0, len1, 1) == 0);
		REQUIRE(vr_post_read(n.A().eng, n.ca, sink2.key, 0, remote.key, 0, len2, 2) == 0);
		REQUIRE(n.wait(2));
		REQUIRE(n.wait(1));
		int first = -1, second = -1;
		for (size_t i = 0; i < n.A().comps.size(); i++) {
			if (n.A().comps[i].cookie == 1 && n.A().comps[i].op == VR_WC_READ)
				first = (int)i;
			if (n.A().comps[i].cookie == 2 && n.A().comps[i].op == VR_WC_READ)
				second = (int)i;
		}
		CHECK(first >= 0);
		CHECK(first < second);
		CHECK(find(n.A(), 1)->status == 0);
		CHECK(find(n.A(), 2)->status == 0);
		CHECK(count(n.A(), 1) == 1);
		CHECK(count(n.A(), 2) == 1);
		CHECK(std::memcmp(sink1.data(), remote.data(), len1) == 0);
		CHECK(std::memcmp(sink2.data(), remote.data(), len2) == 0);
		CHECK(sink1.guards_ok(2));
		CHECK(sink2.guards_ok(3));
		if (mode == VR_RECOVERY_SELECTIVE) {
			CHECK(n.ctr(0).held_ahead == 2);  // READ 1's last frame and READ 2's
			CHECK(n.ctr(1).retransmits == 1);
		}
	}
}

TEST_CASE("a SEND's middle frames are kept once its first matched; its first and last wait")
{
	Net n(cfg_with(VR_RECOVERY_SELECTIVE), cfg_with(VR_RECOVERY_SELECTIVE));
	GuardedBuf src, sink;
	const uint32_t len = 5 * 1428;
	src.init(len, 1);
	sink.init(len, 2);
	for (uint32_t i = 0; i < len; i++)
		src.data()[i] = (uint8_t)(i * 5 + 9);
	REQUIRE(reg(n.A(), 0, src, 0) == 0);
	REQUIRE(reg(n.B(), 0, sink, VR_ACCESS_LOCAL_WRITE) == 0);
	REQUIRE(vr_post_recv(n.B().eng, 0, sink.key, 0, len, 77, ~0ull, 9) == 0);
	// frames: FIRST, MIDDLE (lost), MIDDLE, MIDDLE, LAST
	n.lose_first_copy(0, {1});
	REQUIRE(vr_post_send(n.A().eng, n.ca, src.key, 0, len, 77, 1) == 0);
	REQUIRE(n.wait(1));
	REQUIRE(n.wait(9, 1));
	const vr_completion *r = find(n.B(), 9, VR_WC_RECV);
	CHECK(r->status == 0);
	CHECK(r->bytes == len);
	CHECK(r->tag == 77);
	CHECK(count(n.B(), 9) == 1);
	CHECK(std::memcmp(sink.data(), src.data(), len) == 0);
	CHECK(sink.guards_ok(2));
	CHECK(n.ctr(1).held_ahead == 2);              // the two middle frames
	CHECK(n.ctr(1).naks_tx[VR_NAK_SEQ] == 1);     // the last one could not be kept
	CHECK(n.ctr(0).retransmits == 2);             // the lost frame and the last
}

TEST_CASE("a lost ACK or a lost last frame costs a tail-loss probe, not an RTO")
{
	for (uint32_t mode : {VR_RECOVERY_SELECTIVE, VR_RECOVERY_GO_BACK_N}) {
		for (int lose_ack : {1, 0}) {
			CAPTURE(mode);
			CAPTURE(lose_ack);
			vr_config c = cfg_with(mode);
			c.rto_ns = 5000000; // far above a probe (2 x ack_delay_ns = 10 us)
			c.rto_max_ns = 80000000;
			Net n(c, c);
			GuardedBuf src, dst;
			n.write_pair(0, src, dst, 3 * 1428, 5);
			bool lost = false;
			n.s.drop = [&](int from, int, const std::vector<uint8_t> &b) {
				uint8_t op = b[VR_ETH_HLEN + VR_OFF_OPCODE];
				bool hit = lose_ack ? from == 1 && op == VR_OP_ACK
						    : from == 0 && op == VR_OP_WRITE_LAST;
				if (hit && !lost)
					return lost = true;
				return false;
			};
			REQUIRE(vr_post_write(n.A().eng, n.ca, src.key, 0, dst.key, 0, 3 * 1428, 1) == 0);
			REQUIRE(n.wait(1));
			CHECK(lost);
			CHECK(find(n.A(), 1)->status == 0);
			CHECK(std::memcmp(src.data(), dst.data(), 3 * 1428) == 0);
			if (mode == VR_RECOVERY_SELECTIVE) {
				CHECK(n.ctr(0).tail_probes >= 1);
				CHECK(n.ctr(0).timeouts == 0);
			} else {
				CHECK(n.ctr(0).tail_probes == 0);
				CHECK(n.ctr(0).timeouts >= 1);
			}
		}
	}
}

TEST_CASE("a SACK map that claims a frame the peer lacks does not stall the connection")
{
	vr_config c = cfg_with(VR_RECOVERY_SELECTIVE);
	Net n(c, c);
	GuardedBuf src, dst;
	const uint32_t len = 12 * 1428;
	n.write_pair(0, src, dst, len, 3);
	// Frames 2 and 3 are lost; B's first ACK with a map is replaced by one
	// that says frame 3 is held (an on-path forger, or a bug).
	uint32_t base = 0;
	bool have_base = false, forged = false;
	std::set<uint32_t> once;
	n.s.drop = [&](int from, int, const std::vector<uint8_t> &b) {
		vr_parsed p;
		if (vr_wire_parse(b.data(), (uint32_t)b.size(), VR_ETHERTYPE_DEFAULT, &p))
			return false;
		if (from == 0 && vr_op_is_data(p.h.opcode)) {
			if (!have_base) {
				base = p.h.psn;
				have_base = true;
			}
			uint32_t i = p.h.psn - base;
			return (i == 2 || i == 3) && once.insert(i).second;
		}
		if (from == 1 && p.h.opcode == VR_OP_ACK && p.h.rkey && !forged) {
			forged = true;
			vr_hdr h = p.h;
			REQUIRE(h.ack_psn == base + 2);
			h.rkey |= 1; // bit 0: PSN ack + 1 = frame 3
			std::vector<uint8_t> f(b.size());
			std::memcpy(f.data(), b.data(), VR_ETH_HLEN);
			vr_wire_encode_full(f.data(), &h, nullptr);
			n.s.inject(0, f, n.s.now + 1000);
			return true;
		}
		return false;
	};
	REQUIRE(vr_post_write(n.A().eng, n.ca, src.key, 0, dst.key, 0, len, 1) == 0);
	REQUIRE(n.wait(1));
	CHECK(forged);
	CHECK(find(n.A(), 1)->status == 0);
	CHECK(std::memcmp(src.data(), dst.data(), len) == 0);
	// Frame 3 is at snd_una once frame 2 is in: the probe sends it again
	// (snd_una is never in a map).  Claims further ahead are healed the same
	// way one by one, or by the second RTO in a row, which forgets the map.
	CHECK(n.ctr(0).tail_probes + n.ctr(0).timeouts >= 1);
}

TEST_CASE("a probe that falls due just before the ACK that answers everything is dropped, and the connection still ACKs")
{
	// On a host a turn can fire the probe timer and then read the ACK for
	// every frame in flight before it transmits: the probe has no frame left
	// to send, and must not keep the connection from sending anything else
	// (it did: A never ACKed B again, and B's write timed out).
	vr_config c = cfg_with(VR_RECOVERY_SELECTIVE);
	c.rto_ns = 5000000;
	c.rto_max_ns = 80000000;
	Net n(c, c);
	const uint32_t len = 3 * 1428;
	GuardedBuf a_src, b_dst, b_src, a_dst;
	n.write_pair(0, a_src, b_dst, len, 7);
	n.write_pair(1, b_src, a_dst, len, 5);
	// B's ACK of A's write is held back, to be handed to A by hand.
	std::vector<uint8_t> ack;
	n.s.drop = [&](int from, int, const std::vector<uint8_t> &b) {
		if (from != 1 || b[VR_ETH_HLEN + VR_OFF_OPCODE] != VR_OP_ACK || !ack.empty())
			return false;
		ack = b;
		return true;
	};
	REQUIRE(vr_post_write(n.A().eng, n.ca, a_src.key, 0, b_dst.key, 0, len, 1) == 0);
	REQUIRE(n.s.run([&] { return !ack.empty(); }, n.s.now + 1000000));
	n.s.drop = nullptr;
	// The probe falls due (its deadline is A's next), then the ACK comes in
	// before A transmits.
	uint64_t t = vr_engine_next_timeout(n.A().eng);
	REQUIRE(t < n.s.now + c.rto_ns);
	n.s.now = t;
	vr_engine_on_timer(n.A().eng, t);
	REQUIRE(vr_engine_input(n.A().eng, ack.data(), (uint32_t)ack.size(), t) == 0);
	REQUIRE(find(n.A(), 1));
	CHECK(find(n.A(), 1)->status == 0);
	// B writes to A: A must ACK it.
	REQUIRE(vr_post_write(n.B().eng, n.cb, b_src.key, 0, a_dst.key, 0, len, 2) == 0);
	REQUIRE(n.wait(2, 1, 100000000));
	CHECK(find(n.B(), 2)->status == 0);
	CHECK(std::memcmp(b_src.data(), a_dst.data(), len) == 0);
	CHECK(n.ctr(1).timeouts == 0);
}

TEST_CASE("a frame lost mid-stream is found by what the peer holds and resent while new frames flow")
{
	// 200 frames through a window of 64: the SACK maps show frame 2 missing
	// three frames after it, so it goes again long before the stream ends,
	// with no probe and no RTO.  (Without the rule the sender would fill the
	// span behind frame 2 and wait for a tail-loss probe.)  The RTO is far
	// above the ~80 us a window takes to leave at 10 Gb/s, which an RTO of
	// 50 us would not wait for.
	vr_config c = cfg_with(VR_RECOVERY_SELECTIVE);
	c.rto_ns = 5000000;
	c.rto_max_ns = 80000000;
	Net n(c, c);
	const uint32_t frames = 200, len = frames * 1428;
	GuardedBuf src, dst;
	n.write_pair(0, src, dst, len, 11);
	n.lose_first_copy(0, {2});
	REQUIRE(vr_post_write(n.A().eng, n.ca, src.key, 0, dst.key, 0, len, 1) == 0);
	REQUIRE(n.wait(1));
	CHECK(find(n.A(), 1)->status == 0);
	CHECK(std::memcmp(src.data(), dst.data(), len) == 0);
	CHECK(n.ctr(0).retransmits == 1);
	CHECK(n.ctr(0).tail_probes == 0);
	CHECK(n.ctr(0).timeouts == 0);
	// Where the second copy of frame 2 went, among A's data frames.
	uint32_t base = 0, position = 0, resent_at = 0, copies = 0;
	bool have_base = false;
	for (auto &f : n.seen) {
		if (f.from != 0 || !vr_op_is_data(f.p.h.opcode))
			continue;
		if (!have_base) {
			base = f.p.h.psn;
			have_base = true;
		}
		position++;
		if (f.p.h.psn - base == 2 && ++copies == 2)
			resent_at = position;
	}
	CHECK(copies == 2);
	CHECK(resent_at > 0);
	CHECK(resent_at < 100); // among the first half of the stream's frames
}
