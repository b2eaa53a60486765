// SPDX-License-Identifier: GPL-2.0 OR MIT
// Integrity modes: what each frame's CRC covers, agreed per connection in
// the handshake (VR_CAP_LINK_FCS), and what a receiver refuses.
#include <doctest/doctest.h>

#include <cstring>

#include "harness.h"

extern "C" {
#include "crc32c.h"
}

using namespace vrtest;

namespace {

vr_config cfg_with(uint32_t integrity)
{
	vr_config c = base_cfg();
	c.integrity = integrity;
	return c;
}

struct Link {
	vrsim::Sim s{11};
	uint32_t ca = 0, cb = 0;
	std::vector<std::vector<uint8_t>> from_a; // every frame A sent
	Link(uint32_t ia, uint32_t ib)
	{
		REQUIRE(s.add_node(cfg_with(ia)) == 0);
		REQUIRE(s.add_node(cfg_with(ib)) == 1);
		REQUIRE(vr_ep_open(s.node(0).eng, 0, 1, false) == 0);
		REQUIRE(vr_ep_open(s.node(1).eng, 0, 1, true) == 0);
		s.tap = [this](int from, const std::vector<uint8_t> &b) {
			if (from == 0)
				from_a.push_back(b);
		};
		REQUIRE(connect(s, 0, 0, 1, 0, &ca, &cb));
	}
	vrsim::Node &A() { return s.node(0); }
	vrsim::Node &B() { return s.node(1); }
	GuardedBuf src, dst;
	// n bytes each side: src on A (read only), dst on B (every right).
	void regions(size_t n, uint8_t seed)
	{
		src.init(n, seed);
		dst.init(n, static_cast<uint8_t>(seed + 1));
		REQUIRE(reg(A(), 0, src, 0) == 0);
		REQUIRE(reg(B(), 0, dst, VR_ACCESS_ALL) == 0);
	}
	// The last frame A sent with this opcode.
	std::vector<uint8_t> last_sent(uint8_t opcode) const
	{
		std::vector<uint8_t> found;
		for (auto &f : from_a)
			if (f[VR_ETH_HLEN + VR_OFF_OPCODE] == opcode)
				found = f;
		REQUIRE(!found.empty());
		return found;
	}
	// Writes n bytes of src to dst and waits for the completion.
	void write(GuardedBuf &src, GuardedBuf &dst, uint32_t n, uint64_t cookie)
	{
		REQUIRE(vr_post_write(A().eng, ca, src.key, 0, dst.key, 0, n, cookie) == 0);
		REQUIRE(s.run([&] { return find(A(), cookie) != nullptr; }, s.now + 1000000000));
		REQUIRE(find(A(), cookie)->status == 0);
	}
	size_t flagged_data_frames() const
	{
		size_t k = 0;
		for (auto &f : from_a)
			if (f.size() > VR_ETH_HLEN + VR_HDR_LEN &&
			    (f[VR_ETH_HLEN + VR_OFF_FLAGS] & VR_F_LINK_FCS))
				k++;
		return k;
	}
	size_t data_frames() const
	{
		size_t k = 0;
		for (auto &f : from_a)
			if (f.size() > VR_ETH_HLEN + VR_HDR_LEN)
				k++;
		return k;
	}
};

// The integrity capabilities of A's CONNECT_REQ (selective repeat's, offered
// by default, aside).
uint8_t connect_req_caps(const Link &l)
{
	for (auto &f : l.from_a)
		if (f[VR_ETH_HLEN + VR_OFF_OPCODE] == VR_OP_CONNECT_REQ)
			return static_cast<uint8_t>(vr_get_be64(f.data() + VR_ETH_HLEN + VR_OFF_OPERAND_A) &
						    ~VR_CAP_SACK);
	return 0xFF;
}

// Sets the CRC field the way a sender of header-only frames does.
void seal_header_only(std::vector<uint8_t> &f)
{
	vr_put_be32(f.data() + VR_ETH_HLEN + VR_OFF_CRC, 0);
	vr_wire_set_crc(f.data(), vr_crc32c_final(vr_wire_hdr_crc_state(f.data())));
}

}  // namespace

TEST_CASE("integrity: both ends allow link -> payloads leave unchecked, data still lands")
{
	Link l(VR_INTEGRITY_LINK, VR_INTEGRITY_LINK);
	l.regions(10000, 1);
	l.write(l.src, l.dst, 10000, 1);
	CHECK(memcmp(l.dst.data(), l.src.data(), 10000) == 0);
	CHECK(l.dst.guards_ok(2));
	CHECK(connect_req_caps(l) == VR_CAP_LINK_FCS);
	CHECK(l.data_frames() >= 7); // 10000 bytes in 1500-byte frames
	CHECK(l.flagged_data_frames() == l.data_frames());
}

TEST_CASE("integrity: either end at end-to-end keeps every byte checked")
{
	for (auto [ia, ib] : { std::pair{ VR_INTEGRITY_LINK, VR_INTEGRITY_END_TO_END },
			       std::pair{ VR_INTEGRITY_END_TO_END, VR_INTEGRITY_LINK },
			       std::pair{ VR_INTEGRITY_END_TO_END, VR_INTEGRITY_END_TO_END } }) {
		CAPTURE(ia);
		CAPTURE(ib);
		Link l(ia, ib);
		l.regions(5000, 3);
		l.write(l.src, l.dst, 5000, 1);
		CHECK(memcmp(l.dst.data(), l.src.data(), 5000) == 0);
		CHECK(connect_req_caps(l) == (ia == VR_INTEGRITY_LINK ? VR_CAP_LINK_FCS : 0));
		CHECK(l.data_frames() >= 4);
		CHECK(l.flagged_data_frames() == 0);
	}
}

TEST_CASE("integrity: a header-only frame on an end-to-end connection is refused and counted")
{
	Link l(VR_INTEGRITY_END_TO_END, VR_INTEGRITY_LINK);
	l.regions(3000, 5);
	l.write(l.src, l.dst, 1000, 1);
	std::vector<uint8_t> forged = l.last_sent(VR_OP_WRITE_ONLY);
	// The next PSN, other bytes, flagged and sealed as a header-only frame.
	vr_put_be32(forged.data() + VR_ETH_HLEN + VR_OFF_PSN,
		    vr_get_be32(forged.data() + VR_ETH_HLEN + VR_OFF_PSN) + 1);
	forged[VR_ETH_HLEN + VR_OFF_FLAGS] |= VR_F_LINK_FCS;
	memset(forged.data() + VR_ETH_HLEN + VR_HDR_LEN, 0xAB, 1000);
	seal_header_only(forged);
	vr_parsed parsed;
	REQUIRE(vr_wire_parse(forged.data(), forged.size(), VR_ETHERTYPE_DEFAULT, &parsed) == 0);
	auto snap = l.dst.raw;
	uint64_t field0 = vr_engine_counters(l.B().eng)->drop_parse[VR_WERR_FIELD];
	l.s.inject(1, forged, l.s.now + 1000);
	l.s.run(nullptr, l.s.now + 10000000);
	CHECK(l.dst.raw == snap);
	CHECK(vr_engine_counters(l.B().eng)->drop_parse[VR_WERR_FIELD] == field0 + 1);
	// The real stream goes on at that PSN.
	l.write(l.src, l.dst, 3000, 2);
	CHECK(memcmp(l.dst.data(), l.src.data(), 3000) == 0);
}

TEST_CASE("integrity: in link mode the headers stay checked; the payload is what is given up")
{
	Link l(VR_INTEGRITY_LINK, VR_INTEGRITY_LINK);
	l.regions(2000, 7);
	l.write(l.src, l.dst, 1000, 1);
	std::vector<uint8_t> frame = l.last_sent(VR_OP_WRITE_ONLY);
	vr_parsed parsed;
	// Any flipped bit in either header, the flag itself included, fails the CRC.
	for (size_t byte = 0; byte < VR_ETH_HLEN + VR_HDR_LEN; byte++) {
		if (byte >= VR_ETH_HLEN + VR_OFF_CRC && byte < VR_ETH_HLEN + VR_OFF_CRC + 4)
			continue;
		auto f = frame;
		f[byte] ^= 0x04;
		int rc = vr_wire_parse(f.data(), f.size(), VR_ETHERTYPE_DEFAULT, &parsed);
		CAPTURE(byte);
		CHECK(rc != 0);
	}
	// A payload bit is not covered: the frame parses (the link's FCS is what
	// would have caught it; docs/wire-format.md).
	auto f = frame;
	f[VR_ETH_HLEN + VR_HDR_LEN + 10] ^= 0x01;
	CHECK(vr_wire_parse(f.data(), f.size(), VR_ETHERTYPE_DEFAULT, &parsed) == 0);
	// The same flip in an end-to-end frame is caught.
	f[VR_ETH_HLEN + VR_OFF_FLAGS] &= static_cast<uint8_t>(~VR_F_LINK_FCS);
	vr_put_be32(f.data() + VR_ETH_HLEN + VR_OFF_CRC, 0);
	uint32_t st = vr_wire_hdr_crc_state(f.data());
	st = vr_crc32c_update(st, frame.data() + VR_ETH_HLEN + VR_HDR_LEN, 1000);
	vr_wire_set_crc(f.data(), vr_crc32c_final(st));
	CHECK(vr_wire_parse(f.data(), f.size(), VR_ETHERTYPE_DEFAULT, &parsed) == -EBADMSG);
}

TEST_CASE("integrity: the flag on a frame without payload is a malformed field")
{
	uint8_t frame[VR_ETH_HLEN + VR_HDR_LEN] = {};
	const uint8_t mac_a[6] = { 2, 0, 0, 0, 0, 1 }, mac_b[6] = { 2, 0, 0, 0, 0, 2 };
	vr_hdr h{};
	h.version = VR_WIRE_VERSION;
	h.opcode = VR_OP_ACK;
	h.flags = VR_F_LINK_FCS;
	vr_wire_put_eth(frame, mac_b, mac_a, VR_ETHERTYPE_DEFAULT);
	vr_wire_encode_full(frame, &h, nullptr);
	vr_parsed parsed;
	CHECK(vr_wire_parse(frame, sizeof frame, VR_ETHERTYPE_DEFAULT, &parsed) == -EPROTO);
	vr_config bad = base_cfg();
	bad.integrity = 2;
	vrsim::Sim s(1);
	CHECK(s.add_node(bad) < 0);
}
