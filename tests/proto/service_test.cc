// SPDX-License-Identifier: GPL-2.0 OR MIT
// The frontend service's rules (proto/service.h), which vmrdmad and
// backend_kmod both apply: one table of scenarios per rule, good requests
// and every refusal, run against the service directly.  The split-driver
// tests and the Xen harness prove that both backends answer through it.
#include <doctest/doctest.h>

#include <cstring>
#include <string>

extern "C" {
#include "ring.h"
#include "service.h"
#include "xen.h"
}

namespace {
const vr_svc_limits kLimits = {.endpoints = 4, .regions = 8, .registered_bytes = 1 << 20, .max_weight = 16};
}

TEST_CASE("OPEN_EP: endpoint ids and the endpoint limit")
{
	struct row {
		const char *name;
		uint64_t id;
		uint32_t held;
		int rc;
		const char *why;
	} rows[] = {
		{"first endpoint", 0, 0, 0, nullptr},
		{"last id", 15, 3, 0, nullptr},
		{"id beyond the engine's", 16, 0, -EINVAL, "endpoint id out of range"},
		{"id that wraps u16", 0x10000 + 1, 0, -EINVAL, "endpoint id out of range"},
		{"at the limit", 1, 4, -ENOSPC, "limit: endpoints per frontend"},
	};
	for (const row &r : rows) {
		CAPTURE(r.name);
		vr_svc_usage use{.endpoints = r.held};
		const char *why = nullptr;
		CHECK(vr_svc_check_open_ep(&kLimits, &use, r.id, 16, &why) == r.rc);
		if (r.why)
			CHECK(std::string(why) == r.why);
	}
}

TEST_CASE("REG: ownership, length, access bits and the region and byte limits")
{
	struct row {
		const char *name;
		bool owned;
		uint64_t len, access;
		uint32_t regions;
		uint64_t bytes;
		int rc;
		const char *why;
	} rows[] = {
		{"good", true, 4096, VR_ACCESS_ALL, 0, 0, 0, nullptr},
		{"exactly the bytes left", true, 4096, 0, 7, (1 << 20) - 4096, 0, nullptr},
		{"foreign endpoint", false, 4096, 0, 0, 0, -ENOENT, "not your endpoint"},
		{"empty", true, 0, 0, 0, 0, -EINVAL, "empty region"},
		{"unknown access bit", true, 4096, 0x100, 0, 0, -EINVAL, "unknown access bits"},
		{"at the region limit", true, 4096, 0, 8, 0, -ENOSPC, "limit: regions per frontend"},
		{"one byte too many", true, 4097, 0, 0, (1 << 20) - 4096, -ENOSPC,
		 "limit: registered bytes per frontend"},
		{"usage already beyond a lowered limit", true, 1, 0, 0, 2 << 20, -ENOSPC,
		 "limit: registered bytes per frontend"},
		{"a length that would wrap", true, ~0ull, 0, 0, 1, -ENOSPC,
		 "limit: registered bytes per frontend"},
	};
	for (const row &r : rows) {
		CAPTURE(r.name);
		vr_svc_usage use{.regions = r.regions, .registered_bytes = r.bytes};
		const char *why = nullptr;
		CHECK(vr_svc_check_reg(&kLimits, &use, r.owned, r.len, r.access, &why) == r.rc);
		if (r.why)
			CHECK(std::string(why) == r.why);
	}
}

TEST_CASE("REG of granted pages: offset, length and page count agree")
{
	struct row {
		const char *name;
		uint64_t off, len, pages;
		int rc;
	} rows[] = {
		{"one page", 0, 4096, 1, 0},
		{"straddles two pages", 4000, 200, 2, 0},
		{"the largest", 0, (uint64_t)VR_XEN_MAX_REG_PAGES * VR_XEN_PAGE_SIZE, VR_XEN_MAX_REG_PAGES, 0},
		{"offset beyond the first page", 4096, 10, 2, -EINVAL},
		{"too few pages", 4000, 200, 1, -EINVAL},
		{"too many pages", 0, 4096, 2, -EINVAL},
		{"beyond the largest", 0, (uint64_t)VR_XEN_MAX_REG_PAGES * VR_XEN_PAGE_SIZE + 1,
		 VR_XEN_MAX_REG_PAGES + 1, -EINVAL},
	};
	for (const row &r : rows) {
		CAPTURE(r.name);
		const char *why = nullptr;
		CHECK(vr_svc_check_grant_reg(r.off, r.len, r.pages, &why) == r.rc);
	}
}

TEST_CASE("what must be mapped writable")
{
	CHECK_FALSE(vr_svc_reg_writable(0));
	CHECK_FALSE(vr_svc_reg_writable(VR_ACCESS_REMOTE_READ));
	CHECK(vr_svc_reg_writable(VR_ACCESS_LOCAL_WRITE));
	CHECK(vr_svc_reg_writable(VR_ACCESS_REMOTE_WRITE));
	CHECK(vr_svc_reg_writable(VR_ACCESS_REMOTE_ATOMIC)); // atomics write the target
}

TEST_CASE("the weight policy: 0 is 1, capped at the frontend's maximum, the administrator overrides")
{
	struct row {
		uint64_t asked;
		uint32_t max, admin, want;
	} rows[] = {
		{0, 16, 0, 1},    {1, 16, 0, 1},      {16, 16, 0, 16},       {17, 16, 0, 16},
		{~0ull, 16, 0, 16}, {3, 16, 200, 200}, {3, 16, 5000, VR_WEIGHT_MAX},
		{5000, 5000, 0, VR_WEIGHT_MAX}, {3, 0, 0, 1},
	};
	for (const row &r : rows) {
		CAPTURE(r.asked);
		CAPTURE(r.max);
		CAPTURE(r.admin);
		CHECK(vr_svc_ep_weight(r.asked, r.max, r.admin) == r.want);
	}
	CHECK(vr_svc_clamp_weight(0) == 1);
	CHECK(vr_svc_clamp_weight(VR_WEIGHT_MAX + 1) == VR_WEIGHT_MAX);
}

TEST_CASE("every ring opcode that the engine answers has its completion kind")
{
	CHECK(vr_svc_wc_of_ring_op(VR_RING_WRITE) == VR_WC_WRITE);
	CHECK(vr_svc_wc_of_ring_op(VR_RING_READ) == VR_WC_READ);
	CHECK(vr_svc_wc_of_ring_op(VR_RING_SEND) == VR_WC_SEND);
	CHECK(vr_svc_wc_of_ring_op(VR_RING_RECV) == VR_WC_RECV);
	CHECK(vr_svc_wc_of_ring_op(VR_RING_FADD) == VR_WC_FADD);
	CHECK(vr_svc_wc_of_ring_op(VR_RING_CSWAP) == VR_WC_CSWAP);
	CHECK(vr_svc_wc_of_ring_op(VR_RING_CONNECT) == VR_WC_CONNECT);
	CHECK(vr_svc_wc_of_ring_op(VR_RING_ACCEPT) == VR_WC_CONNECT);
	for (uint32_t op : {0u, (uint32_t)VR_RING_DISCONNECT, (uint32_t)VR_RING_OPEN_EP,
			    (uint32_t)VR_RING_CLOSE_EP, (uint32_t)VR_RING_REG, (uint32_t)VR_RING_DEREG,
			    (uint32_t)VR_RING_OP_MAX})
		CHECK(vr_svc_wc_of_ring_op(op) == 0);
}

TEST_CASE("shares of a pool: a limit per principal and a reserve for the others")
{
	// A pool of 8, limit 4, reserve 2.
	CHECK(vr_svc_share_allows(0, 0, 8, 4, 2));
	CHECK(vr_svc_share_allows(3, 3, 8, 4, 2));
	CHECK(!vr_svc_share_allows(4, 4, 8, 4, 2));  // its limit
	CHECK(vr_svc_share_allows(1, 5, 8, 4, 2));   // leaves 2
	CHECK(!vr_svc_share_allows(2, 6, 8, 4, 2));  // would leave 1, and it holds its reserve
	CHECK(vr_svc_share_allows(0, 6, 8, 4, 2));   // a newcomer takes the reserve
	CHECK(vr_svc_share_allows(1, 7, 8, 4, 2));
	CHECK(!vr_svc_share_allows(0, 8, 8, 4, 2));  // nothing left
	CHECK(vr_svc_share_allows(0, 0, 1, 1, 0));
}

TEST_CASE("admission by weight: bytes in flight shared by weight, one operation always goes")
{
	for (uint32_t op : {(uint32_t)VR_RING_WRITE, (uint32_t)VR_RING_READ, (uint32_t)VR_RING_SEND})
		CHECK(vr_svc_is_bulk(op));
	for (uint32_t op : {(uint32_t)VR_RING_FADD, (uint32_t)VR_RING_CSWAP, (uint32_t)VR_RING_RECV,
			    (uint32_t)VR_RING_CONNECT, (uint32_t)VR_RING_OPEN_EP})
		CHECK(!vr_svc_is_bulk(op));
	const uint64_t budget = 4 << 20;
	// Alone (active = its own weight): the whole budget.
	CHECK(vr_svc_admissible(budget, (3u << 20), 1u << 20, 1, 1));
	CHECK(!vr_svc_admissible(budget, (3u << 20) + 1, 1u << 20, 1, 1));
	// Weights 1 and 3 active: 1 MiB and 3 MiB.
	CHECK(vr_svc_admissible(budget, 512u << 10, 512u << 10, 1, 4));
	CHECK(!vr_svc_admissible(budget, 512u << 10, (512u << 10) + 1, 1, 4));
	CHECK(vr_svc_admissible(budget, 2u << 20, 1u << 20, 3, 4));
	CHECK(!vr_svc_admissible(budget, 2u << 20, (1u << 20) + 1, 3, 4));
	// Nothing in flight: one operation goes, however big.
	CHECK(vr_svc_admissible(budget, 0, 64u << 20, 1, 1000));
	// Budget 0: no admission.
	CHECK(vr_svc_admissible(0, 1ull << 40, 1ull << 40, 1, 1000));
	// The largest weights and budgets do not overflow: 64 endpoints of
	// weight 1024 each, a budget of 4 GiB.
	CHECK(vr_svc_admissible(4ull << 30, 1, (4ull << 30) - 1, 65536, 65536));
	CHECK(!vr_svc_admissible(4ull << 30, 1, 4ull << 30, 65536, 65536));
}
