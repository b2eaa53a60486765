// SPDX-License-Identifier: GPL-2.0 OR MIT
// Protection domains (engine.h vr_pd_*, region.h): a region bound to a
// domain serves only the connections in it; a key that reached another
// peer of the same endpoint is refused like a forged one.
#include <doctest/doctest.h>

#include <cstring>

#include "harness.h"

using namespace vrtest;

namespace {

// B (node 1) listens on endpoint 0; A (node 0) and C (node 2) connect.
struct Three {
	vrsim::Sim s{21};
	uint32_t a_conn = 0, b_from_a = 0, c_conn = 0, b_from_c = 0;
	Three()
	{
		for (int i = 0; i < 3; i++)
			REQUIRE(s.add_node(base_cfg()) == i);
		REQUIRE(vr_ep_open(s.node(0).eng, 0, 1, false) == 0);
		REQUIRE(vr_ep_open(s.node(1).eng, 0, 1, true) == 0);
		REQUIRE(vr_ep_open(s.node(1).eng, 1, 1, true) == 0);
		REQUIRE(vr_ep_open(s.node(2).eng, 0, 1, false) == 0);
		REQUIRE(connect(s, 0, 0, 1, 0, &a_conn, &b_from_a));
		REQUIRE(connect(s, 2, 0, 1, 0, &c_conn, &b_from_c));
	}
	vr_engine *B() { return s.node(1).eng; }
	const vr_completion *wait(int node, uint64_t cookie)
	{
		s.run([&] { return find(s.node(node), cookie) != nullptr; }, s.now + 1000000000);
		return find(s.node(node), cookie);
	}
};

}  // namespace

TEST_CASE("a region bound to a domain serves only its connections; another peer with the key is refused")
{
	Three t;
	GuardedBuf target, a_src, c_src;
	target.init(4096, 1);
	a_src.init(64, 2);
	c_src.init(64, 3);
	REQUIRE(reg(t.s.node(1), 0, target, VR_ACCESS_ALL) == 0);
	REQUIRE(reg(t.s.node(0), 0, a_src, 0) == 0);
	REQUIRE(reg(t.s.node(2), 0, c_src, 0) == 0);
	uint32_t pd = 0;
	REQUIRE(vr_pd_alloc(t.B(), 0, &pd) == 0);
	CHECK(pd != 0);
	REQUIRE(vr_mr_set_pd(t.B(), 0, target.key, pd) == 0);
	REQUIRE(vr_conn_set_pd(t.B(), t.b_from_a, pd) == 0);

	// A, in the domain: its write lands.
	REQUIRE(vr_post_write(t.s.node(0).eng, t.a_conn, a_src.key, 0, target.key, 0, 64, 1) == 0);
	REQUIRE(t.wait(0, 1));
	CHECK(t.wait(0, 1)->status == 0);
	CHECK(std::memcmp(target.data(), a_src.data(), 64) == 0);
	// C, a peer of the same endpoint that has the key, is refused, its
	// connection closes, and nothing of it lands.
	REQUIRE(vr_post_write(t.s.node(2).eng, t.c_conn, c_src.key, 0, target.key, 64, 64, 2) == 0);
	REQUIRE(t.wait(2, 2));
	CHECK(t.wait(2, 2)->status == -EACCES);
	CHECK(find(t.s.node(2), 2)->nak_reason == VR_NAK_BAD_KEY);
	CHECK(std::memcmp(target.data() + 64, c_src.data(), 64) != 0);
	CHECK(vr_conn_state(t.B(), t.b_from_c) == VR_CONN_ERROR);
	// Reading and atomics are refused the same way (a new connection of C's).
	uint32_t c2 = 0, b2 = 0;
	REQUIRE(connect(t.s, 2, 0, 1, 0, &c2, &b2));
	REQUIRE(vr_post_fadd(t.s.node(2).eng, c2, target.key, 128, 1, 3) == 0);
	REQUIRE(t.wait(2, 3));
	CHECK(t.wait(2, 3)->status == -EACCES);
	CHECK(target.guards_ok(1));

	// Taken out of the domain, the region serves every connection again.
	REQUIRE(vr_mr_set_pd(t.B(), 0, target.key, 0) == 0);
	uint32_t c3 = 0, b3 = 0;
	REQUIRE(connect(t.s, 2, 0, 1, 0, &c3, &b3));
	REQUIRE(vr_post_write(t.s.node(2).eng, c3, c_src.key, 0, target.key, 64, 64, 4) == 0);
	REQUIRE(t.wait(2, 4));
	CHECK(t.wait(2, 4)->status == 0);
	CHECK(std::memcmp(target.data() + 64, c_src.data(), 64) == 0);
}

TEST_CASE("a connection outside a region's domain cannot use it locally either")
{
	Three t;
	GuardedBuf mine, peer;
	mine.init(256, 1);
	peer.init(256, 2);
	REQUIRE(reg(t.s.node(1), 0, mine, VR_ACCESS_LOCAL_WRITE) == 0);
	REQUIRE(reg(t.s.node(0), 0, peer, VR_ACCESS_ALL) == 0);
	uint32_t pd = 0;
	REQUIRE(vr_pd_alloc(t.B(), 0, &pd) == 0);
	REQUIRE(vr_mr_set_pd(t.B(), 0, mine.key, pd) == 0);
	// B's connection to A is not in the domain: posting from the region fails.
	CHECK(vr_post_write(t.B(), t.b_from_a, mine.key, 0, peer.key, 0, 16, 1) == -EACCES);
	REQUIRE(vr_conn_set_pd(t.B(), t.b_from_a, pd) == 0);
	CHECK(vr_post_write(t.B(), t.b_from_a, mine.key, 0, peer.key, 0, 16, 2) == 0);
	// Receives are the endpoint's: posting into the region is the host's own business.
	CHECK(vr_post_recv(t.B(), 0, mine.key, 0, 64, 0, 0, 3) == 0);
}

TEST_CASE("domains: ownership, limits, and freeing")
{
	Three t;
	GuardedBuf r;
	r.init(64, 1);
	REQUIRE(reg(t.s.node(1), 0, r, VR_ACCESS_ALL) == 0);
	uint32_t pd = 0, other = 0, x = 0;
	REQUIRE(vr_pd_alloc(t.B(), 0, &pd) == 0);
	REQUIRE(vr_pd_alloc(t.B(), 1, &other) == 0);
	CHECK(vr_pd_alloc(t.B(), 3, &x) == -ENOENT);          // no such endpoint
	CHECK(vr_pd_alloc(t.B(), 0, nullptr) == -EINVAL);
	CHECK(vr_conn_set_pd(t.B(), t.b_from_a, other) == -EINVAL); // another endpoint's domain
	CHECK(vr_mr_set_pd(t.B(), 0, r.key, other) == -EINVAL);
	CHECK(vr_mr_set_pd(t.B(), 1, r.key, other) == -ENOENT); // not endpoint 1's region
	CHECK(vr_conn_set_pd(t.B(), t.b_from_a, 999) == -ENOENT);
	CHECK(vr_pd_free(t.B(), 1, pd) == -ENOENT);             // not endpoint 1's domain
	REQUIRE(vr_mr_set_pd(t.B(), 0, r.key, pd) == 0);
	REQUIRE(vr_conn_set_pd(t.B(), t.b_from_a, pd) == 0);
	CHECK(vr_pd_free(t.B(), 0, pd) == -EBUSY);               // a region is still bound
	REQUIRE(vr_mr_set_pd(t.B(), 0, r.key, 0) == 0);
	CHECK(vr_pd_free(t.B(), 0, pd) == 0);
	CHECK(vr_conn_set_pd(t.B(), t.b_from_a, pd) == -ENOENT); // gone
	// At most VR_PDS_PER_EP per endpoint.
	for (int i = 0; i < VR_PDS_PER_EP - 1; i++)
		REQUIRE(vr_pd_alloc(t.B(), 1, &x) == 0);
	CHECK(vr_pd_alloc(t.B(), 1, &x) == -ENOSPC);
	REQUIRE(vr_pd_alloc(t.B(), 0, &x) == 0); // endpoint 0's own are untouched
	// Closing the endpoint frees its domains.
	REQUIRE(vr_ep_close(t.B(), 1) == 0);
	CHECK(vr_pd_free(t.B(), 1, other) == -ENOENT);
}
