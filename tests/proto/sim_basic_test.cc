// SPDX-License-Identifier: GPL-2.0 OR MIT
// End-to-end basics over a clean and a lossy simulated link.
#include <doctest/doctest.h>

#include "harness.h"

using namespace vrtest;

TEST_CASE("connect, write, read, send/recv, atomics on a clean link")
{
	vrsim::Sim s(1);
	int a = s.add_node(base_cfg()), b = s.add_node(base_cfg());
	REQUIRE(a == 0);
	REQUIRE(b == 1);
	REQUIRE(vr_ep_open(s.node(a).eng, 0, 1, false) == 0);
	REQUIRE(vr_ep_open(s.node(b).eng, 0, 1, true) == 0);
	uint32_t ca = 0, cb = 0;
	REQUIRE(connect(s, a, 0, b, 0, &ca, &cb));

	GuardedBuf src, dst, sink, atom;
	src.init(100000, 1);
	dst.init(100000, 2);
	sink.init(100000, 3);
	atom.init(64, 4);
	REQUIRE(reg(s.node(a), 0, src, VR_ACCESS_LOCAL_WRITE) == 0);
	REQUIRE(reg(s.node(a), 0, sink, VR_ACCESS_LOCAL_WRITE) == 0);
	REQUIRE(reg(s.node(b), 0, dst, VR_ACCESS_ALL) == 0);
	REQUIRE(reg(s.node(b), 0, atom, VR_ACCESS_REMOTE_ATOMIC) == 0);
	uint64_t w0 = 5;
	memcpy(atom.data(), &w0, 8);

	REQUIRE(vr_post_write(s.node(a).eng, ca, src.key, 10, dst.key, 20, 50000, 1) == 0);
	REQUIRE(vr_post_read(s.node(a).eng, ca, sink.key, 0, dst.key, 20, 50000, 2) == 0);
	REQUIRE(vr_post_recv(s.node(b).eng, 0, dst.key, 70000, 3000, 0xABC, ~0ull, 3) == 0);
	REQUIRE(vr_post_send(s.node(a).eng, ca, src.key, 0, 3000, 0xABC, 4) == 0);
	REQUIRE(vr_post_fadd(s.node(a).eng, ca, atom.key, 0, 10, 5) == 0);
	REQUIRE(vr_post_cswap(s.node(a).eng, ca, atom.key, 0, 15, 99, 6) == 0);
	bool ok = s.run([&] { return s.node(a).comps.size() >= 6 && s.node(b).comps.size() >= 2; },
			1000000000);
	REQUIRE(ok);
	for (uint64_t k = 1; k <= 6; k++) {
		if (k == 3)
			continue;
		const vr_completion *c = find(s.node(a), k);
		REQUIRE(c);
		CHECK(c->status == 0);
	}
	CHECK(find(s.node(a), 5)->value == 5);
	CHECK(find(s.node(a), 6)->value == 15);
	uint64_t w;
	memcpy(&w, atom.data(), 8);
	CHECK(w == 99);
	CHECK(memcmp(dst.data() + 20, src.data() + 10, 50000) == 0);
	CHECK(memcmp(sink.data(), src.data() + 10, 50000) == 0);
	const vr_completion *r = find(s.node(b), 3, VR_WC_RECV);
	REQUIRE(r);
	CHECK(r->status == 0);
	CHECK(r->bytes == 3000);
	CHECK(r->tag == 0xABC);
	CHECK(memcmp(dst.data() + 70000, src.data(), 3000) == 0);
	CHECK(src.guards_ok(1));
	CHECK(dst.guards_ok(2));
	CHECK(sink.guards_ok(3));
	CHECK(atom.guards_ok(4));
}
