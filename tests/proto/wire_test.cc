// SPDX-License-Identifier: GPL-2.0 OR MIT
// Wire format: round trips and one rejection per malformed class.
#include <doctest/doctest.h>

#include <cstring>
#include <vector>

#include "bundle.h"

extern "C" {
#include "crc32c.h"
#include "wire.h"
}

namespace {

const uint8_t kDst[6] = {2, 0, 0, 0, 0, 2}, kSrc[6] = {2, 0, 0, 0, 0, 1};

vr_hdr sample(uint8_t op)
{
	vr_hdr h{};
	h.version = VR_WIRE_VERSION;
	h.opcode = op;
	h.src_ep = 0x1234;
	h.dst_ep = 0xBEEF;
	h.conn_id = 0xA1B2C3D4;
	h.psn = 0xFFFFFFFE;
	h.ack_psn = 7;
	h.msg_id = 0x00010002;
	h.rkey = 0xDEADBEEF;
	h.total_len = 100;
	h.remote_off = 0x0123456789ABCDEFull;
	h.operand_a = 0xFEDCBA9876543210ull;
	h.operand_b = 42;
	return h;
}

std::vector<uint8_t> frame(const vr_hdr &h, const std::vector<uint8_t> &pl)
{
	std::vector<uint8_t> f(VR_ETH_HLEN + VR_HDR_LEN + pl.size());
	vr_wire_put_eth(f.data(), kDst, kSrc, VR_ETHERTYPE_DEFAULT);
	vr_hdr hh = h;
	hh.payload_len = (uint16_t)pl.size();
	vr_wire_encode_full(f.data(), &hh, pl.data());
	return f;
}

int parse(const std::vector<uint8_t> &f, vr_parsed *p = nullptr)
{
	vr_parsed tmp;
	return vr_wire_parse(f.data(), (uint32_t)f.size(), VR_ETHERTYPE_DEFAULT, p ? p : &tmp);
}

// Re-seal the CRC after tampering with a header byte (so the semantic
// check, not the CRC, must catch it).
void reseal(std::vector<uint8_t> &f)
{
	uint8_t *h = f.data() + VR_ETH_HLEN;
	memset(h + VR_OFF_CRC, 0, 4);
	uint32_t st = vr_crc32c_update(VR_CRC32C_INIT, f.data(), (uint32_t)f.size());
	vr_put_be32(h + VR_OFF_CRC, vr_crc32c_final(st));
}

}  // namespace

TEST_CASE("crc32c known answer")
{
	CHECK(vr_crc32c("123456789", 9) == 0xE3069283u);
	CHECK(vr_crc32c("", 0) == 0);
}

TEST_CASE("big-endian helpers")
{
	uint8_t b[8];
	vr_put_be64(b, 0x0102030405060708ull);
	CHECK(b[0] == 1);
	CHECK(b[7] == 8);
	CHECK(vr_get_be64(b) == 0x0102030405060708ull);
	CHECK(vr_psn_lt(0xFFFFFFFFu, 0));
	CHECK(!vr_psn_lt(0, 0xFFFFFFFFu));
}

TEST_CASE("round trip of every opcode")
{
	const uint8_t ops[] = {
		VR_OP_WRITE_FIRST, VR_OP_WRITE_MIDDLE, VR_OP_WRITE_LAST, VR_OP_WRITE_ONLY,
		VR_OP_READ_REQ, VR_OP_READ_RESP_FIRST, VR_OP_READ_RESP_MIDDLE,
		VR_OP_READ_RESP_LAST, VR_OP_READ_RESP_ONLY, VR_OP_SEND_FIRST, VR_OP_SEND_MIDDLE,
		VR_OP_SEND_LAST, VR_OP_SEND_ONLY, VR_OP_ATOMIC_FADD, VR_OP_ATOMIC_CSWAP,
		VR_OP_ATOMIC_RESP, VR_OP_ACK, VR_OP_NAK, VR_OP_CONNECT_REQ, VR_OP_CONNECT_ACK,
		VR_OP_DISCONNECT};
	for (uint8_t op : ops) {
		CAPTURE(vr_opcode_name(op));
		vr_hdr h = sample(op);
		std::vector<uint8_t> pl;
		if (vr_op_is_data(op) && op != VR_OP_READ_REQ && op != VR_OP_ATOMIC_FADD &&
		    op != VR_OP_ATOMIC_CSWAP && op != VR_OP_ATOMIC_RESP) {
			pl.resize(100);
			for (size_t i = 0; i < pl.size(); i++)
				pl[i] = (uint8_t)(i * 7);
			bool rel = op >= VR_OP_READ_RESP_FIRST; // offset within message
			h.remote_off = rel ? 0 : h.remote_off;
		}
		if (op == VR_OP_ATOMIC_FADD || op == VR_OP_ATOMIC_CSWAP)
			h.total_len = 8;
		if (op == VR_OP_NAK)
			h.nak_reason = VR_NAK_RNR;
		auto f = frame(h, pl);
		vr_parsed p;
		REQUIRE(parse(f, &p) == 0);
		CHECK(memcmp(p.dst_mac, kDst, 6) == 0);
		CHECK(memcmp(p.src_mac, kSrc, 6) == 0);
		CHECK(p.h.opcode == op);
		CHECK(p.h.src_ep == h.src_ep);
		CHECK(p.h.dst_ep == h.dst_ep);
		CHECK(p.h.conn_id == h.conn_id);
		CHECK(p.h.psn == h.psn);
		CHECK(p.h.ack_psn == h.ack_psn);
		CHECK(p.h.msg_id == h.msg_id);
		CHECK(p.h.rkey == h.rkey);
		CHECK(p.h.total_len == h.total_len);
		CHECK(p.h.remote_off == h.remote_off);
		CHECK(p.h.operand_a == h.operand_a);
		CHECK(p.h.operand_b == h.operand_b);
		CHECK(p.h.nak_reason == h.nak_reason);
		CHECK(p.h.payload_len == pl.size());
		CHECK((pl.empty() || memcmp(p.payload, pl.data(), pl.size()) == 0));
	}
}

TEST_CASE("every truncation is rejected without reading past the end")
{
	vr_hdr h = sample(VR_OP_WRITE_ONLY);
	std::vector<uint8_t> pl(100, 0x5A);
	auto f = frame(h, pl);
	for (size_t n = 0; n < f.size(); n++) {
		// exact-size heap copy so ASan flags any overread
		std::vector<uint8_t> t(f.begin(), f.begin() + (long)n);
		int rc = parse(t);
		CAPTURE(n);
		if (n < VR_ETH_HLEN + VR_HDR_LEN)
			CHECK(rc == -ENODATA);
		else
			CHECK(rc == -EMSGSIZE);
	}
	std::vector<uint8_t> longer = f;
	longer.push_back(0);
	CHECK(parse(longer) == -EMSGSIZE);
	vr_parsed p;
	CHECK(vr_wire_parse(nullptr, 0, VR_ETHERTYPE_DEFAULT, &p) == -ENODATA);
}

TEST_CASE("each malformed class maps to its own error and class")
{
	vr_hdr h = sample(VR_OP_SEND_ONLY);
	h.remote_off = 0;
	std::vector<uint8_t> pl(100, 1);
	auto good = frame(h, pl);
	REQUIRE(parse(good) == 0);

	SUBCASE("ethertype") {
		auto f = good;
		f[12] = 0x08;
		f[13] = 0x00;
		CHECK(parse(f) == -EPFNOSUPPORT);
		vr_parsed p;
		CHECK(vr_wire_parse(good.data(), (uint32_t)good.size(), 0x1234, &p) == -EPFNOSUPPORT);
	}
	SUBCASE("version") {
		auto f = good;
		f[VR_ETH_HLEN + VR_OFF_VERSION] = VR_WIRE_VERSION + 1;
		reseal(f);
		CHECK(parse(f) == -EPROTONOSUPPORT);
	}
	SUBCASE("opcode") {
		auto f = good;
		f[VR_ETH_HLEN + VR_OFF_OPCODE] = 0x7F;
		reseal(f);
		CHECK(parse(f) == -EOPNOTSUPP);
	}
	SUBCASE("checksum: any single bit flip anywhere, MACs included") {
		for (size_t i = 0; i < good.size(); i++) {
			auto f = good;
			f[i] ^= 0x10;
			int rc = parse(f);
			CAPTURE(i);
			// EtherType, version and length are checked before the CRC
			if (i == 12 || i == 13)
				CHECK(rc == -EPFNOSUPPORT);
			else if (i == VR_ETH_HLEN + VR_OFF_VERSION)
				CHECK(rc == -EPROTONOSUPPORT);
			else if (i == VR_ETH_HLEN + VR_OFF_PAYLOAD_LEN ||
				 i == VR_ETH_HLEN + VR_OFF_PAYLOAD_LEN + 1)
				CHECK(rc == -EMSGSIZE);
			else
				CHECK(rc == -EBADMSG);
		}
	}
	SUBCASE("fields: unknown flag, reserved, bad NAK reason") {
		auto f = good;
		f[VR_ETH_HLEN + VR_OFF_FLAGS] = 0x80;
		reseal(f);
		CHECK(parse(f) == -EPROTO);
		f = good;
		f[VR_ETH_HLEN + VR_OFF_RESERVED] = 1;
		reseal(f);
		CHECK(parse(f) == -EPROTO);
		vr_hdr n = sample(VR_OP_NAK);
		n.nak_reason = VR_NAK_MAX;
		CHECK(parse(frame(n, {})) == -EPROTO);
		n.nak_reason = VR_NAK_NONE;
		CHECK(parse(frame(n, {})) == -EPROTO);
		vr_hdr a = sample(VR_OP_ACK);
		a.flags = VR_F_ABORT;
		CHECK(parse(frame(a, {})) == -EPROTO);
	}
	SUBCASE("length semantics") {
		vr_hdr x = h;
		x.total_len = 50; // ONLY with payload != total
		CHECK(parse(frame(x, pl)) == -EMSGSIZE);
		x = h;
		x.opcode = VR_OP_SEND_MIDDLE;
		x.total_len = 150;
		x.remote_off = 60; // 60 + 100 > 150
		CHECK(parse(frame(x, pl)) == -EMSGSIZE);
		x.remote_off = 0xFFFFFFFFFFFFFFF0ull; // wrap attempt
		CHECK(parse(frame(x, pl)) == -EMSGSIZE);
		vr_hdr w = sample(VR_OP_WRITE_MIDDLE);
		w.total_len = 1000;
		w.remote_off = 0xFFFFFFFFFFFFFFC0ull; // off + len wraps
		CHECK(parse(frame(w, pl)) == -EMSGSIZE);
		vr_hdr at = sample(VR_OP_ATOMIC_FADD);
		at.total_len = 4;
		CHECK(parse(frame(at, {})) == -EMSGSIZE);
		vr_hdr ack = sample(VR_OP_ACK);
		CHECK(parse(frame(ack, pl)) == -EMSGSIZE);
		vr_hdr ab = sample(VR_OP_WRITE_ONLY);
		ab.flags = VR_F_ABORT;
		CHECK(parse(frame(ab, pl)) == -EMSGSIZE);
		ab.total_len = 100;
		CHECK(parse(frame(ab, {})) == 0);
	}
	CHECK(vr_wire_err_class(-ENODATA) == VR_WERR_TRUNCATED);
	CHECK(vr_wire_err_class(-EPFNOSUPPORT) == VR_WERR_ETHERTYPE);
	CHECK(vr_wire_err_class(-EPROTONOSUPPORT) == VR_WERR_VERSION);
	CHECK(vr_wire_err_class(-EOPNOTSUPP) == VR_WERR_OPCODE);
	CHECK(vr_wire_err_class(-EMSGSIZE) == VR_WERR_LENGTH);
	CHECK(vr_wire_err_class(-EBADMSG) == VR_WERR_CHECKSUM);
	CHECK(vr_wire_err_class(-EPROTO) == VR_WERR_FIELD);
	CHECK(vr_wire_err_class(-EINVAL) == VR_WERR_MAX);
}

TEST_CASE("bundles: iteration yields each frame; every truncation is refused before any frame")
{
	std::vector<std::vector<uint8_t>> frames = {frame(sample(VR_OP_WRITE_ONLY), {1, 2, 3}),
						    frame(sample(VR_OP_ACK), {}),
						    frame(sample(VR_OP_SEND_ONLY), std::vector<uint8_t>(300, 9))};
	uint8_t head[VR_ETH_HLEN + VR_BUNDLE_HLEN];
	CHECK(vr_wire_bundle_init(head, frames[0].data()) == sizeof(head));
	std::vector<uint8_t> b = vrtest::bundle_of(frames);
	REQUIRE(vr_wire_is_bundle(b.data(), (uint32_t)b.size()));
	// A bundle is not a frame: the lone-frame parser refuses it.
	CHECK(parse(b) < 0);

	uint32_t pos = 0, len = 0;
	const uint8_t *inner = nullptr;
	for (const auto &f : frames) {
		REQUIRE(vr_wire_bundle_next(b.data(), (uint32_t)b.size(), VR_ETHERTYPE_DEFAULT, &pos, &inner, &len) == 1);
		REQUIRE(len == f.size());
		CHECK(memcmp(inner, f.data(), len) == 0);
	}
	CHECK(vr_wire_bundle_next(b.data(), (uint32_t)b.size(), VR_ETHERTYPE_DEFAULT, &pos, &inner, &len) == 0);

	// Exact-size copies, so ASan sees any read past the end.
	for (size_t cut = 0; cut < b.size(); cut++) {
		std::vector<uint8_t> t(b.begin(), b.begin() + (long)cut);
		pos = 0;
		int rc = vr_wire_bundle_next(t.data(), (uint32_t)t.size(), VR_ETHERTYPE_DEFAULT, &pos, &inner, &len);
		CHECK_MESSAGE(rc < 0, "cut at ", cut);
	}
	pos = 0;
	CHECK(vr_wire_bundle_next(b.data(), (uint32_t)b.size(), 0x1234, &pos, &inner, &len) == -EPFNOSUPPORT);
	b[VR_ETH_HLEN + VR_OFF_VERSION] = VR_WIRE_VERSION + 1;
	pos = 0;
	CHECK(vr_wire_bundle_next(b.data(), (uint32_t)b.size(), VR_ETHERTYPE_DEFAULT, &pos, &inner, &len) == -EPROTONOSUPPORT);
}
