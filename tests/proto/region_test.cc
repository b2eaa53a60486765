// SPDX-License-Identifier: GPL-2.0 OR MIT
// Region table: forged keys, bounds, overflow, access, deregistration.
#include <doctest/doctest.h>

#include <cstring>
#include <vector>

extern "C" {
#include "region.h"
}

namespace {

uint32_t counter_rand(void *ctx)
{
	uint64_t *s = static_cast<uint64_t *>(ctx);
	*s = *s * 6364136223846793005ull + 1442695040888963407ull;
	return (uint32_t)(*s >> 32);
}

struct Table {
	std::vector<vr_region> slots;
	vr_region_table t{};
	uint64_t seed = 1;
	explicit Table(uint32_t cap) : slots(cap)
	{
		REQUIRE(vr_region_table_init(&t, slots.data(), cap, counter_rand, &seed) == 0);
	}
};

}  // namespace

TEST_CASE("register / check / deregister basics")
{
	Table tb(8);
	uint8_t mem[256];
	uint64_t key = 0;
	REQUIRE(vr_region_reg(&tb.t, mem, sizeof(mem), VR_ACCESS_REMOTE_WRITE, 3, &key) == 0);
	CHECK(key != 0);
	const vr_region *r = nullptr;
	CHECK(vr_region_check(&tb.t, key, 3, VR_ACCESS_REMOTE_WRITE, 0, 256, &r) == 0);
	CHECK(r->mem == mem);
	CHECK(vr_region_reg(&tb.t, nullptr, 1, 0, 0, &key) == -EINVAL);
	CHECK(vr_region_reg(&tb.t, mem, 0, 0, 0, &key) == -EINVAL);
	CHECK(vr_region_reg(&tb.t, mem, 1, 0x100, 0, &key) == -EINVAL);
	std::vector<vr_region> none(1);
	vr_region_table bad{};
	CHECK(vr_region_table_init(&bad, none.data(), 0, nullptr, nullptr) == -EINVAL);
}

TEST_CASE("bounds: off-by-one and overflow-safe")
{
	Table tb(4);
	uint8_t mem[100];
	uint64_t k;
	REQUIRE(vr_region_reg(&tb.t, mem, 100, VR_ACCESS_REMOTE_READ, 0, &k) == 0);
	const uint32_t A = VR_ACCESS_REMOTE_READ;
	CHECK(vr_region_check(&tb.t, k, 0, A, 0, 100, nullptr) == 0);
	CHECK(vr_region_check(&tb.t, k, 0, A, 99, 1, nullptr) == 0);
	CHECK(vr_region_check(&tb.t, k, 0, A, 100, 0, nullptr) == 0);
	CHECK(vr_region_check(&tb.t, k, 0, A, 0, 101, nullptr) == -ERANGE);
	CHECK(vr_region_check(&tb.t, k, 0, A, 100, 1, nullptr) == -ERANGE);
	CHECK(vr_region_check(&tb.t, k, 0, A, 101, 0, nullptr) == -ERANGE);
	CHECK(vr_region_check(&tb.t, k, 0, A, 1, 100, nullptr) == -ERANGE);
	CHECK(vr_region_check(&tb.t, k, 0, A, ~0ull, 2, nullptr) == -ERANGE);
	CHECK(vr_region_check(&tb.t, k, 0, A, 2, ~0ull, nullptr) == -ERANGE);
	CHECK(vr_region_check(&tb.t, k, 0, A, ~0ull - 50, 60, nullptr) == -ERANGE);
	CHECK(vr_region_check(&tb.t, k, 0, A, 50, ~0ull - 40, nullptr) == -ERANGE);
}

TEST_CASE("access rights are all required")
{
	Table tb(4);
	uint8_t mem[64];
	uint64_t k;
	REQUIRE(vr_region_reg(&tb.t, mem, 64, VR_ACCESS_REMOTE_READ | VR_ACCESS_LOCAL_WRITE, 1,
			      &k) == 0);
	CHECK(vr_region_check(&tb.t, k, 1, VR_ACCESS_REMOTE_WRITE, 0, 8, nullptr) == -EPERM);
	CHECK(vr_region_check(&tb.t, k, 1, VR_ACCESS_REMOTE_ATOMIC, 0, 8, nullptr) == -EPERM);
	CHECK(vr_region_check(&tb.t, k, 1, VR_ACCESS_REMOTE_READ | VR_ACCESS_REMOTE_WRITE, 0, 8,
			      nullptr) == -EPERM);
	CHECK(vr_region_check(&tb.t, k, 1, VR_ACCESS_REMOTE_READ | VR_ACCESS_LOCAL_WRITE, 0, 8,
			      nullptr) == 0);
}

TEST_CASE("forged keys: random, wrong generation, wrong owner, deregistered")
{
	Table tb(16);
	uint8_t mem[64];
	uint64_t k;
	REQUIRE(vr_region_reg(&tb.t, mem, 64, VR_ACCESS_ALL, 2, &k) == 0);
	CHECK(vr_region_check(&tb.t, k, 5, 0, 0, 1, nullptr) == -EACCES); // owner
	CHECK(vr_region_check(&tb.t, 0, 2, 0, 0, 1, nullptr) == -EACCES);
	// every single-bit variation of a valid key is refused
	for (int b = 0; b < 64; b++)
		CHECK(vr_region_check(&tb.t, k ^ (1ull << b), 2, 0, 0, 1, nullptr) == -EACCES);
	// random guesses that know the slot (its index is not secret)
	uint64_t s = 99;
	int hits = 0;
	for (int i = 0; i < 100000; i++) {
		uint64_t g = (uint64_t)counter_rand(&s) << 32 | counter_rand(&s);
		g = (g & ~(uint64_t)(VR_REGIONS_MAX - 1)) | (k & (VR_REGIONS_MAX - 1));
		if (g != k && vr_region_check(&tb.t, g, 2, 0, 0, 1, nullptr) == 0)
			hits++;
	}
	CHECK(hits == 0);
	// deregistered, then slot reused: old key stays dead
	REQUIRE(vr_region_dereg(&tb.t, k) == 0);
	CHECK(vr_region_check(&tb.t, k, 2, 0, 0, 1, nullptr) == -EACCES);
	CHECK(vr_region_dereg(&tb.t, k) == -ENOENT);
	std::vector<uint64_t> keys;
	for (int round = 0; round < 300; round++) {
		uint64_t nk;
		REQUIRE(vr_region_reg(&tb.t, mem, 64, VR_ACCESS_ALL, 2, &nk) == 0);
		CHECK(nk != k);
		CHECK(vr_region_check(&tb.t, k, 2, 0, 0, 1, nullptr) == -EACCES);
		for (uint64_t old : keys)
			if (old == nk)
				FAIL("key reused");
		if (keys.size() < 64)
			keys.push_back(nk);
		REQUIRE(vr_region_dereg(&tb.t, nk) == 0);
	}
}

TEST_CASE("freed slots are reused FIFO and table exhaustion is -ENOSPC")
{
	Table tb(3);
	uint8_t mem[8];
	uint64_t k[3], x;
	for (auto &kk : k)
		REQUIRE(vr_region_reg(&tb.t, mem, 8, 0, 0, &kk) == 0);
	CHECK(vr_region_reg(&tb.t, mem, 8, 0, 0, &x) == -ENOSPC);
	REQUIRE(vr_region_dereg(&tb.t, k[1]) == 0);
	REQUIRE(vr_region_dereg(&tb.t, k[0]) == 0);
	REQUIRE(vr_region_reg(&tb.t, mem, 8, 0, 0, &x) == 0);
	CHECK((x & (VR_REGIONS_MAX - 1)) == (k[1] & (VR_REGIONS_MAX - 1))); // oldest freed slot first
	CHECK(x != k[1]);
}

TEST_CASE("a slot's keys differ in all 48 random bits; the table is at most 2^16 slots")
{
	Table tb(1);
	uint8_t mem[8];
	uint64_t first = 0, changed = 0, k = 0;
	for (int round = 0; round < 1000; round++) {
		REQUIRE(vr_region_reg(&tb.t, mem, 8, 0, 0, &k) == 0);
		CHECK((k & (VR_REGIONS_MAX - 1)) == 0);
		if (!round)
			first = k;
		changed |= k ^ first;
		REQUIRE(vr_region_dereg(&tb.t, k) == 0);
	}
	CHECK(changed == ~(uint64_t)(VR_REGIONS_MAX - 1));
	std::vector<vr_region> big(VR_REGIONS_MAX + 1);
	vr_region_table t{};
	uint64_t seed = 1;
	CHECK(vr_region_table_init(&t, big.data(), VR_REGIONS_MAX + 1, counter_rand, &seed) == -EINVAL);
	CHECK(vr_region_table_init(&t, big.data(), VR_REGIONS_MAX, counter_rand, &seed) == 0);
}

namespace {
uint32_t stuck_rand(void *) { return 0; }
}  // namespace

TEST_CASE("a host whose random is stuck still gets a nonzero key that differs from the slot's last")
{
	std::vector<vr_region> slots(1);
	vr_region_table t{};
	REQUIRE(vr_region_table_init(&t, slots.data(), 1, stuck_rand, nullptr) == 0);
	uint8_t mem[8];
	uint64_t a = 0, b = 0;
	REQUIRE(vr_region_reg(&t, mem, 8, 0, 0, &a) == 0);
	CHECK(a != 0);
	REQUIRE(vr_region_dereg(&t, a) == 0);
	REQUIRE(vr_region_reg(&t, mem, 8, 0, 0, &b) == 0);
	CHECK(b != a);
	CHECK(vr_region_check(&t, a, 0, 0, 0, 1, nullptr) == -EACCES);
}
