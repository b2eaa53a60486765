// SPDX-License-Identifier: GPL-2.0 OR MIT
// The bundle encoder (proto/bundle.h) that every sending host uses: what it
// writes is what the decoder reads back, frame for frame; a bundle of one is
// the plain frame; frames for another peer or beyond the room never join;
// a failed copy leaves the bundle as it was.
#include <doctest/doctest.h>

#include <cstring>
#include <vector>

extern "C" {
#include "bundle.h"
}

namespace {

constexpr uint32_t kCap = VR_ETH_HLEN + 1500;

// A frame as the engine hands it over: a header (Ethernet + vmrdma, here
// just patterned bytes behind a real Ethernet header) and one payload
// fragment in "registered memory".
struct test_frame {
	std::vector<uint8_t> hdr, payload;
	vr_frame f{};

	test_frame(uint8_t peer, uint8_t fill, uint32_t payload_len)
		: hdr(VR_ETH_HLEN + VR_HDR_LEN, fill), payload(payload_len, (uint8_t)(fill + 1))
	{
		const uint8_t dst[6] = {2, 0, 0, 0, 0, peer}, src[6] = {2, 0, 0, 0, 0, 1};
		std::memcpy(hdr.data(), dst, 6);
		std::memcpy(hdr.data() + 6, src, 6);
		vr_put_be16(hdr.data() + 12, VR_ETHERTYPE_DEFAULT);
		f.hdr = hdr.data();
		f.hdr_len = (uint32_t)hdr.size();
		f.nfrags = payload_len ? 1 : 0;
		f.frag[0] = {payload.data(), 0, payload_len};
		f.len = (uint32_t)(hdr.size() + payload_len);
	}
	std::vector<uint8_t> bytes() const
	{
		std::vector<uint8_t> b(hdr);
		b.insert(b.end(), payload.begin(), payload.end());
		return b;
	}
};

std::vector<std::vector<uint8_t>> decode(const uint8_t *frame, uint32_t len)
{
	std::vector<std::vector<uint8_t>> out;
	uint32_t pos = 0, n = 0;
	const uint8_t *inner = nullptr;
	int rc;
	while ((rc = vr_wire_bundle_next(frame, len, VR_ETHERTYPE_DEFAULT, &pos, &inner, &n)) == 1)
		out.emplace_back(inner, inner + n);
	REQUIRE(rc == 0);
	return out;
}

int failing_copy_out(void *, u64, void *, u32) { return -EFAULT; }

}  // namespace

TEST_CASE("what the encoder writes decodes to the same frames, in order")
{
	std::vector<uint8_t> buf(kCap);
	test_frame a(2, 0x10, 40), b(2, 0x20, 0), c(2, 0x30, 300);
	vr_bundle_writer w{};
	CHECK_FALSE(vr_bundle_is_open(&w));
	CHECK_FALSE(vr_bundle_joins(&w, &a.f));
	vr_bundle_open(&w, buf.data(), kCap, &a.f);
	for (test_frame *t : {&a, &b, &c}) {
		REQUIRE(vr_bundle_joins(&w, &t->f));
		REQUIRE(vr_bundle_append(&w, &t->f, &vr_ptr_mem_ops) == 0);
	}
	vr_bundle_span span{};
	REQUIRE(vr_bundle_close(&w, &span));
	CHECK(span.off == 0);
	CHECK(span.count == 3);
	CHECK(vr_wire_is_bundle(buf.data() + span.off, span.len));
	auto frames = decode(buf.data() + span.off, span.len);
	REQUIRE(frames.size() == 3);
	CHECK(frames[0] == a.bytes());
	CHECK(frames[1] == b.bytes());
	CHECK(frames[2] == c.bytes());
	CHECK_FALSE(vr_bundle_is_open(&w));
}

TEST_CASE("a bundle of one goes out as the plain frame")
{
	std::vector<uint8_t> buf(kCap);
	test_frame a(2, 0x10, 100);
	vr_bundle_writer w{};
	vr_bundle_open(&w, buf.data(), kCap, &a.f);
	REQUIRE(vr_bundle_append(&w, &a.f, &vr_ptr_mem_ops) == 0);
	vr_bundle_span span{};
	REQUIRE(vr_bundle_close(&w, &span));
	CHECK(span.count == 1);
	std::vector<uint8_t> sent(buf.data() + span.off, buf.data() + span.off + span.len);
	CHECK(sent == a.bytes());
	CHECK_FALSE(vr_wire_is_bundle(sent.data(), (uint32_t)sent.size()));
}

TEST_CASE("frames for another peer, or beyond the room, do not join")
{
	std::vector<uint8_t> buf(kCap);
	test_frame a(2, 0x10, 100), other_peer(3, 0x20, 100);
	vr_bundle_writer w{};
	vr_bundle_open(&w, buf.data(), kCap, &a.f);
	REQUIRE(vr_bundle_append(&w, &a.f, &vr_ptr_mem_ops) == 0);
	CHECK_FALSE(vr_bundle_joins(&w, &other_peer.f));
	// Fill to the brim: the last frame that fits joins, the next does not.
	uint32_t appended = 1;
	while (vr_bundle_joins(&w, &a.f)) {
		REQUIRE(vr_bundle_append(&w, &a.f, &vr_ptr_mem_ops) == 0);
		++appended;
	}
	CHECK(w.len <= kCap);
	CHECK(w.len + VR_BUNDLE_ENTRY_HLEN + a.f.len > kCap);
	vr_bundle_span span{};
	REQUIRE(vr_bundle_close(&w, &span));
	CHECK(span.count == appended);
	CHECK(decode(buf.data(), span.len).size() == appended);
}

TEST_CASE("only small frames are wanted, and two of them fit")
{
	const uint32_t limit = vr_wire_bundle_limit(kCap);
	CHECK(vr_bundle_wanted(kCap, limit));
	CHECK_FALSE(vr_bundle_wanted(kCap, limit + 1));
	CHECK(VR_ETH_HLEN + VR_BUNDLE_HLEN + 2 * (VR_BUNDLE_ENTRY_HLEN + limit) <= kCap);
	CHECK_FALSE(vr_bundle_wanted(VR_ETH_HLEN + VR_BUNDLE_HLEN, 1));
}

TEST_CASE("a failed copy leaves the bundle as it was; an empty bundle sends nothing")
{
	const vr_mem_ops failing = {nullptr, failing_copy_out, nullptr};
	std::vector<uint8_t> buf(kCap);
	test_frame a(2, 0x10, 40), b(2, 0x20, 60);
	vr_bundle_writer w{};
	vr_bundle_open(&w, buf.data(), kCap, &a.f);
	CHECK(vr_bundle_append(&w, &a.f, &failing) == -EFAULT);
	CHECK(w.count == 0);
	vr_bundle_span span{};
	CHECK_FALSE(vr_bundle_close(&w, &span));  // nothing joined: nothing to send

	vr_bundle_open(&w, buf.data(), kCap, &a.f);
	REQUIRE(vr_bundle_append(&w, &a.f, &vr_ptr_mem_ops) == 0);
	const uint32_t len = w.len;
	CHECK(vr_bundle_append(&w, &b.f, &failing) == -EFAULT);
	CHECK(w.len == len);
	REQUIRE(vr_bundle_append(&w, &b.f, &vr_ptr_mem_ops) == 0);
	REQUIRE(vr_bundle_close(&w, &span));
	auto frames = decode(buf.data(), span.len);
	REQUIRE(frames.size() == 2);
	CHECK(frames[1] == b.bytes());
}
