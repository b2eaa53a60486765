#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "examples/datamover/xxh64.hpp"

using datamover::xxh64;

TEST_CASE("XXH64 matches the reference vectors") {
    CHECK(xxh64("", 0) == 0xEF46DB3751D8E999ull);
    CHECK(xxh64("a", 1) == 0xD24EC4F1A98C6E5Bull);
    CHECK(xxh64("abc", 3) == 0x44BC2CF5AD770999ull);
    std::string fox = "The quick brown fox jumps over the lazy dog";
    CHECK(xxh64(fox.data(), fox.size()) == 0x0B242D361FDA71BCull);
}

TEST_CASE("XXH64 covers every tail length and the seed") {
    std::vector<unsigned char> buf(100);
    for (std::size_t i = 0; i < buf.size(); ++i) buf[i] = static_cast<unsigned char>(i * 7 + 1);
    std::vector<std::uint64_t> seen;
    for (std::size_t n = 0; n <= buf.size(); ++n) seen.push_back(xxh64(buf.data(), n));
    for (std::size_t i = 0; i < seen.size(); ++i)
        for (std::size_t j = i + 1; j < seen.size(); ++j) CHECK(seen[i] != seen[j]);
    CHECK(xxh64(buf.data(), 40, 1) != xxh64(buf.data(), 40, 0));
}
