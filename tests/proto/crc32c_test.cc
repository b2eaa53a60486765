// CRC32C: the known check value, and the run-time-chosen implementation
// (SSE4.2 where the CPU has it) against the portable tables at every length
// and alignment, streamed in pieces as the engine does.
#include <doctest/doctest.h>

#include <cstdint>
#include <random>
#include <vector>

extern "C" {
#include "crc32c.h"
}

TEST_CASE("CRC32C of \"123456789\" is the standard check value 0xE3069283") {
    const char text[] = "123456789";
    CHECK(vr_crc32c(text, 9) == 0xE3069283u);
    CHECK(vr_crc32c_final(vr_crc32c_update_portable(VR_CRC32C_INIT, text, 9)) == 0xE3069283u);
}

TEST_CASE("the fast and the portable CRC32C agree for every length, alignment and split") {
    std::mt19937 rng(11);
    std::vector<std::uint8_t> data(4096 + 16);
    for (auto& b : data) b = static_cast<std::uint8_t>(rng());
    for (std::uint32_t offset = 0; offset < 8; ++offset) {
        for (std::uint32_t len = 0; len <= 600; len += (len < 80 ? 1 : 37)) {
            const std::uint8_t* p = data.data() + offset;
            std::uint32_t split = len ? rng() % len : 0;
            std::uint32_t fast = vr_crc32c_update(VR_CRC32C_INIT, p, split);
            fast = vr_crc32c_update(fast, p + split, len - split);
            std::uint32_t slow = vr_crc32c_update_portable(VR_CRC32C_INIT, p, len);
            REQUIRE_MESSAGE(fast == slow, "offset " << offset << " length " << len << " split " << split);
        }
    }
    CHECK(vr_crc32c_update(VR_CRC32C_INIT, data.data(), 4096) ==
          vr_crc32c_update_portable(VR_CRC32C_INIT, data.data(), 4096));
}

TEST_CASE("long buffers (the interleaved path) agree with the portable CRC32C") {
    std::mt19937 rng(12);
    std::vector<std::uint8_t> data(70000 + 8);
    for (auto& b : data) b = static_cast<std::uint8_t>(rng());
    for (std::uint32_t len : {383u, 384u, 385u, 1436u, 3071u, 3072u, 3073u, 3455u, 6144u, 9000u, 9001u, 65535u, 70000u}) {
        for (std::uint32_t offset : {0u, 1u, 7u}) {
            const std::uint8_t* p = data.data() + offset;
            std::uint32_t split = rng() % len;
            std::uint32_t fast = vr_crc32c_update(VR_CRC32C_INIT, p, split);
            fast = vr_crc32c_update(fast, p + split, len - split);
            REQUIRE_MESSAGE(fast == vr_crc32c_update_portable(VR_CRC32C_INIT, p, len),
                            "length " << len << " offset " << offset << " split " << split);
        }
    }
}
