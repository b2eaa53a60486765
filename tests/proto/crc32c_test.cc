// CRC32C: the known check value, and every implementation this CPU can run
// (the crc32 instruction with table joins, and with carry-less-multiply
// joins) against the portable tables at every length and alignment, streamed
// in pieces as the engine does.
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

TEST_CASE("every implementation this CPU runs agrees with the portable one, streamed in pieces") {
    std::mt19937 rng(13);
    std::vector<std::uint8_t> data(3 * 4096 * 3 + 64);
    for (auto& b : data) b = static_cast<std::uint8_t>(rng());
    int ran = 0;
    for (auto impl : {VR_CRC32C_PORTABLE, VR_CRC32C_HW_TABLES, VR_CRC32C_HW_PCLMUL, VR_CRC32C_HW_VPCLMUL}) {
        std::uint32_t probe = 0;
        if (!vr_crc32c_update_with(impl, VR_CRC32C_INIT, data.data(), 1, &probe)) {
            MESSAGE("implementation " << impl << " cannot run on this CPU");
            continue;
        }
        ++ran;
        // Around every boundary: the 8-byte steps, the three-part minimum
        // (192), the fixed parts (384, 3072), the part cap (3 x 4096) and
        // beyond it, and a 9000-byte frame; for the folding one the 256-byte
        // minimum and steps, the 64- and 16-byte steps after them (to 600).
        std::vector<std::uint32_t> lengths;
        for (std::uint32_t len = 0; len <= 600; ++len) lengths.push_back(len);
        for (std::uint32_t base : {1436u, 3072u, 9000u, 12288u, 24576u, 36800u})
            for (std::uint32_t d = 0; d < 17; ++d) lengths.push_back(base - 8 + d);
        for (std::uint32_t len : lengths)
            for (std::uint32_t offset : {0u, 3u}) {
                const std::uint8_t* p = data.data() + offset;
                std::uint32_t split = len ? rng() % len : 0, got = 0;
                REQUIRE(vr_crc32c_update_with(impl, VR_CRC32C_INIT, p, split, &got));
                REQUIRE(vr_crc32c_update_with(impl, got, p + split, len - split, &got));
                REQUIRE_MESSAGE(got == vr_crc32c_update_portable(VR_CRC32C_INIT, p, len),
                                "implementation " << impl << " length " << len << " offset " << offset
                                                  << " split " << split);
            }
    }
    CHECK(ran >= 1);
}
