// SPDX-License-Identifier: GPL-2.0 OR MIT
// Names: an endpoint announces a name, vr_resolve finds it with a RESOLVE
// broadcast and an ANNOUNCE answer; a forged or stray answer finds nothing.
#include <doctest/doctest.h>

#include <cstring>
#include <string>

#include "harness.h"

using namespace vrtest;

namespace {

struct Segment {
	vrsim::Sim s{17};
	std::vector<std::pair<int, std::vector<uint8_t>>> sent;
	explicit Segment(int nodes)
	{
		for (int i = 0; i < nodes; i++) {
			REQUIRE(s.add_node(base_cfg()) == i);
			REQUIRE(vr_ep_open(s.node(i).eng, 0, 1, false) == 0);
			REQUIRE(vr_ep_open(s.node(i).eng, 1, 1, true) == 0);
		}
		s.tap = [this](int from, const std::vector<uint8_t> &b) { sent.push_back({from, b}); };
	}
	vrsim::Node &n(int i) { return s.node(i); }
	const vr_completion *wait(int node, uint64_t cookie, uint64_t limit = 100000000)
	{
		s.run([&] { return find(n(node), cookie, VR_WC_RESOLVE) != nullptr; }, s.now + limit);
		return find(n(node), cookie, VR_WC_RESOLVE);
	}
	static uint64_t packed(const uint8_t mac[6])
	{
		uint64_t v = 0;
		for (int i = 0; i < 6; i++)
			v = v << 8 | mac[i];
		return v;
	}
	size_t count_sent(uint8_t opcode) const
	{
		size_t k = 0;
		for (auto &f : sent)
			k += f.second[VR_ETH_HLEN + VR_OFF_OPCODE] == opcode;
		return k;
	}
};

} // namespace

TEST_CASE("names: a name announced on one host is found from another")
{
	Segment g(3);
	REQUIRE(vr_ep_set_name(g.n(2).eng, 1, "db-primary", 10) == 0);
	REQUIRE(vr_ep_set_name(g.n(1).eng, 1, "cache", 5) == 0);
	REQUIRE(vr_resolve(g.n(0).eng, 0, "db-primary", 10, 42) == 0);
	auto *wc = g.wait(0, 42);
	REQUIRE(wc);
	CHECK(wc->status == 0);
	CHECK(wc->value == Segment::packed(g.n(2).mac));
	CHECK(wc->tag == 1);
	CHECK(count(g.n(0), 42) == 1);
	// One RESOLVE broadcast reached both others; only the owner answered.
	CHECK(g.count_sent(VR_OP_ANNOUNCE) == 1);

	// And the connection it leads to works.
	uint32_t ca, cb;
	uint8_t mac[6];
	for (int i = 0; i < 6; i++)
		mac[i] = (uint8_t)(wc->value >> (40 - 8 * i));
	REQUIRE(memcmp(mac, g.n(2).mac, 6) == 0);
	REQUIRE(connect(g.s, 0, 0, 2, (uint16_t)wc->tag, &ca, &cb));
}

TEST_CASE("names: nobody has it -> EHOSTUNREACH after the handshake's tries")
{
	Segment g(2);
	REQUIRE(vr_resolve(g.n(0).eng, 0, "nobody", 6, 7) == 0);
	auto *wc = g.wait(0, 7, 1000000000);
	REQUIRE(wc);
	CHECK(wc->status == -EHOSTUNREACH);
	CHECK(g.count_sent(VR_OP_RESOLVE) == base_cfg().retry_limit + 1);
	CHECK(count(g.n(0), 7) == 1);
	// Announced later, a new question finds it.
	REQUIRE(vr_ep_set_name(g.n(1).eng, 0, "nobody", 6) == 0);
	REQUIRE(vr_resolve(g.n(0).eng, 0, "nobody", 6, 8) == 0);
	wc = g.wait(0, 8);
	REQUIRE(wc);
	CHECK(wc->status == 0);
	CHECK(wc->tag == 0);
}

TEST_CASE("names: one name per engine, checked arguments, withdrawal, a local name")
{
	Segment g(2);
	REQUIRE(vr_ep_set_name(g.n(0).eng, 1, "svc", 3) == 0);
	CHECK(vr_ep_set_name(g.n(0).eng, 0, "svc", 3) == -EADDRINUSE);
	CHECK(vr_ep_set_name(g.n(0).eng, 1, "svc", 3) == 0); // its own again: fine
	CHECK(vr_ep_set_name(g.n(0).eng, 3, "x", 1) == -ENOENT);
	std::string longname(VR_NAME_MAX + 1, 'n');
	CHECK(vr_ep_set_name(g.n(0).eng, 0, longname.data(), (uint32_t)longname.size()) == -EINVAL);
	CHECK(vr_resolve(g.n(1).eng, 0, longname.data(), (uint32_t)longname.size(), 1) == -EINVAL);
	CHECK(vr_resolve(g.n(1).eng, 0, "", 0, 1) == -EINVAL);
	CHECK(vr_resolve(g.n(1).eng, 3, "svc", 3, 1) == -ENOENT);

	// Another endpoint of the same engine asks: answered at once, nothing sent.
	size_t before = g.sent.size();
	REQUIRE(vr_resolve(g.n(0).eng, 0, "svc", 3, 2) == 0);
	auto *wc = find(g.n(0), 2, VR_WC_RESOLVE);
	REQUIRE(wc);
	CHECK(wc->status == 0);
	CHECK(wc->tag == 1);
	CHECK(wc->value == Segment::packed(g.n(0).mac));
	g.s.run(nullptr, g.s.now + 1000000);
	CHECK(g.sent.size() == before);

	// Withdrawn, or its endpoint closed: not found.
	REQUIRE(vr_ep_set_name(g.n(0).eng, 1, nullptr, 0) == 0);
	REQUIRE(vr_ep_set_name(g.n(0).eng, 0, "svc", 3) == 0); // free for another now
	REQUIRE(vr_ep_close(g.n(0).eng, 0) == 0);
	REQUIRE(vr_resolve(g.n(1).eng, 0, "svc", 3, 3) == 0);
	wc = g.wait(1, 3, 1000000000);
	REQUIRE(wc);
	CHECK(wc->status == -EHOSTUNREACH);
}

TEST_CASE("names: the asker's endpoint closing cancels its question; the pool is bounded")
{
	Segment g(2);
	for (uint64_t i = 0; i < 8; i++)
		REQUIRE(vr_resolve(g.n(0).eng, 0, "q", 1, 100 + i) == 0);
	CHECK(vr_resolve(g.n(0).eng, 0, "q", 1, 200) == -EAGAIN);
	REQUIRE(vr_ep_close(g.n(0).eng, 0) == 0);
	for (uint64_t i = 0; i < 8; i++) {
		auto *wc = find(g.n(0), 100 + i, VR_WC_RESOLVE);
		REQUIRE(wc);
		CHECK(wc->status == -ECANCELED);
	}
}

TEST_CASE("names: forged and stray ANNOUNCEs find nothing; RESOLVE floods cost bounded replies")
{
	Segment g(3); // 0 asks, 1 has the name, 2 forges
	REQUIRE(vr_ep_set_name(g.n(1).eng, 1, "real", 4) == 0);
	// Cut 1 off so that the question stays open while forgeries arrive.
	g.s.link(0, 1).down = true;
	REQUIRE(vr_resolve(g.n(0).eng, 0, "real", 4, 5) == 0);
	g.s.run([&] { return g.count_sent(VR_OP_RESOLVE) >= 1; }, g.s.now + 1000000);

	// A blind forger does not know the nonce.
	vr_hdr h{};
	h.version = VR_WIRE_VERSION;
	h.opcode = VR_OP_ANNOUNCE;
	h.src_ep = 9;
	h.dst_ep = 0;
	h.msg_id = 0xdeadbeef;
	h.payload_len = 4;
	std::vector<uint8_t> f(VR_ETH_HLEN + VR_HDR_LEN + 4);
	vr_wire_put_eth(f.data(), g.n(0).mac, g.n(2).mac, VR_ETHERTYPE_DEFAULT);
	vr_wire_encode_full(f.data(), &h, "real");
	uint64_t no_conn = vr_engine_counters(g.n(0).eng)->drop_no_conn;
	g.s.inject(0, f, g.s.now + 10);
	// A right nonce for another name, and to another endpoint, is no answer either.
	std::vector<uint8_t> seen;
	for (auto &s : g.sent)
		if (s.second[VR_ETH_HLEN + VR_OFF_OPCODE] == VR_OP_RESOLVE)
			seen = s.second;
	REQUIRE(!seen.empty());
	vr_parsed q;
	REQUIRE(vr_wire_parse(seen.data(), (uint32_t)seen.size(), VR_ETHERTYPE_DEFAULT, &q) == 0);
	CHECK(memcmp(q.dst_mac, "\xff\xff\xff\xff\xff\xff", 6) == 0);
	h.msg_id = q.h.msg_id;
	vr_wire_encode_full(f.data(), &h, "fake");
	g.s.inject(0, f, g.s.now + 20);
	h.dst_ep = 1;
	vr_wire_encode_full(f.data(), &h, "real");
	g.s.inject(0, f, g.s.now + 30);
	g.s.run(nullptr, g.s.now + 1000);
	CHECK(find(g.n(0), 5, VR_WC_RESOLVE) == nullptr);
	CHECK(vr_engine_counters(g.n(0).eng)->drop_no_conn == no_conn + 3);

	// The link back: the real answer arrives on a re-sent question.
	g.s.link(0, 1).down = false;
	auto *wc = g.wait(0, 5, 1000000000);
	REQUIRE(wc);
	CHECK(wc->status == 0);
	CHECK(wc->value == Segment::packed(g.n(1).mac));

	// 100 questions at once: at most VR_ANNOUNCE_RING answers wait, the
	// rest are counted, none is answered twice.
	h = {};
	h.version = VR_WIRE_VERSION;
	h.opcode = VR_OP_RESOLVE;
	h.src_ep = 0;
	h.payload_len = 4;
	size_t answers = g.count_sent(VR_OP_ANNOUNCE);
	uint64_t exhausted = vr_engine_counters(g.n(1).eng)->pool_exhausted;
	for (uint32_t i = 0; i < 100; i++) {
		h.msg_id = i;
		vr_wire_put_eth(f.data(), (const uint8_t *)"\xff\xff\xff\xff\xff\xff", g.n(2).mac,
				VR_ETHERTYPE_DEFAULT);
		vr_wire_encode_full(f.data(), &h, "real");
		vr_engine_input(g.n(1).eng, f.data(), (uint32_t)f.size(), g.s.now);
	}
	g.s.run(nullptr, g.s.now + 1000000);
	CHECK(g.count_sent(VR_OP_ANNOUNCE) - answers == 8);
	CHECK(vr_engine_counters(g.n(1).eng)->pool_exhausted - exhausted == 92);

	// A RESOLVE to some other host's MAC is not for us.
	uint64_t nfu = vr_engine_counters(g.n(1).eng)->drop_not_for_us;
	vr_wire_put_eth(f.data(), g.n(0).mac, g.n(2).mac, VR_ETHERTYPE_DEFAULT);
	vr_wire_encode_full(f.data(), &h, "real");
	CHECK(vr_engine_input(g.n(1).eng, f.data(), (uint32_t)f.size(), g.s.now) == -EADDRNOTAVAIL);
	CHECK(vr_engine_counters(g.n(1).eng)->drop_not_for_us == nfu + 1);
}
