// The provider's pieces that need no network (fabric/): its message header,
// its addresses, the atomic table, the staging allocator, the wait fd and
// its environment variables. Each test tries
// the edge a peer or an application could push.
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <poll.h>

#include <complex>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "fabric/address.hpp"
#include "fabric/atomics.hpp"
#include "fabric/block_pool.hpp"
#include "fabric/environment.hpp"
#include "fabric/wake_fd.hpp"
#include "fabric/wire_msg.hpp"
#include "vmrdma/error.hpp"

using namespace vmrdma::fabric;

TEST_CASE("a message round-trips with its pieces and inline data; anything malformed is refused") {
    header h{};
    h.kind = msg_kind::rts;
    h.flags = msg_tagged | msg_has_data;
    h.tag = 0x1122334455667788ull;
    h.data = 42;
    h.length = 1 << 20;
    h.id = 7;
    piece p[2] = {{0xabc, 4096, 0, 512 * 1024, 0}, {0xabc, 0, 512 * 1024, 512 * 1024, 1}};
    std::vector<std::byte> data(10, std::byte{0x5a});
    std::vector<std::byte> out(256);
    std::size_t n = encode(out, h, p, data);
    REQUIRE(n == sizeof(header) + 2 * sizeof(piece) + 10);
    auto d = decode(std::span(out).first(n));
    REQUIRE(d);
    CHECK(d->h.kind == msg_kind::rts);
    CHECK(d->h.tag == h.tag);
    CHECK(d->h.data == 42);
    CHECK(d->h.pieces == 2);
    CHECK(d->pieces[1].message_offset == 512 * 1024);
    CHECK(d->inline_data.size() == 10);
    CHECK(d->inline_data[9] == std::byte{0x5a});

    CHECK(encode(std::span(out).first(sizeof(header)), h, p, {}) == 0);  // does not fit
    CHECK_FALSE(decode(std::span(out).first(sizeof(header) - 1)));        // too short
    CHECK_FALSE(decode(std::span(out).first(sizeof(header) + 10)));       // pieces cut off
    auto bad = out;
    bad[0] = std::byte{0};  // no such kind
    CHECK_FALSE(decode(std::span(bad).first(n)));
    bad = out;
    bad[0] = std::byte{99};
    CHECK_FALSE(decode(std::span(bad).first(n)));
    bad = out;
    bad[offsetof(header, pieces)] = std::byte{3};  // more pieces than a message carries
    CHECK_FALSE(decode(bad));
    // A piece whose range wraps around would let a read land anywhere.
    piece wrap{1, ~0ull - 10, 0, 100, 0};
    n = encode(out, h, std::span(&wrap, 1), {});
    CHECK_FALSE(decode(std::span(out).first(n)));
    piece empty{1, 0, 0, 0, 0};
    n = encode(out, h, std::span(&empty, 1), {});
    CHECK_FALSE(decode(std::span(out).first(n)));
}

TEST_CASE("addresses: the binary form and the text form round-trip; malformed ones are refused") {
    fabric_address a{vmrdma::mac_address::parse("02:00:00:00:00:0a"), 513};
    std::byte bin[address_size];
    encode_address(a, bin);
    auto back = decode_address(bin, address_size);
    REQUIRE(back);
    CHECK(*back == a);
    fabric_address any{a.mac, std::nullopt};
    encode_address(any, bin);
    back = decode_address(bin, address_size);
    REQUIRE(back);
    CHECK_FALSE(back->endpoint);
    CHECK_FALSE(decode_address(bin, address_size - 1));
    auto bad = std::vector<std::byte>(bin, bin + address_size);
    bad[0] = std::byte{2};  // another version
    CHECK_FALSE(decode_address(bad.data(), bad.size()));
    bad = std::vector<std::byte>(bin, bin + address_size);
    bad[15] = std::byte{1};  // reserved bytes must be zero
    CHECK_FALSE(decode_address(bad.data(), bad.size()));
    CHECK_FALSE(decode_address(nullptr, address_size));

    CHECK(format_address(a) == "fi_vmrdma://02:00:00:00:00:0a/513");
    CHECK(parse_address("fi_vmrdma://02:00:00:00:00:0a/513") == a);
    CHECK(parse_address(std::string("fi_vmrdma://02:00:00:00:00:0a/513") + '\0') == a);
    CHECK(parse_address("fi_vmrdma://02:00:00:00:00:0a") == any);
    CHECK_FALSE(parse_address("fi_vmrdma://02:00:00:00:00:0a/65536"));
    CHECK_FALSE(parse_address("fi_vmrdma://02:00:00:00:00:0a/"));
    CHECK_FALSE(parse_address("fi_vmrdma://02:00:00:00:00:0a/1x"));
    CHECK_FALSE(parse_address("fi_vmrdma://02:00:00:00:00/1"));
    CHECK_FALSE(parse_address("fi_sockets://02:00:00:00:00:0a/1"));
    CHECK(parse_service("9228") == 9228);
    CHECK_FALSE(parse_service("65536"));
    CHECK_FALSE(parse_service("-1"));
    CHECK_FALSE(parse_service(""));
    // The hash key tells every endpoint of every MAC apart.
    std::set<std::uint64_t> keys;
    for (int m = 0; m < 4; ++m)
        for (std::uint16_t ep = 0; ep < 4; ++ep) {
            vmrdma::peer_address p{vmrdma::mac_address::parse("02:00:00:00:00:0" + std::to_string(m)), ep};
            keys.insert(address_key(p));
        }
    CHECK(keys.size() == 16);
}

TEST_CASE("atomics: which operations each datatype has, as libfabric defines them") {
    CHECK(atomic_size(FI_INT8) == 1);
    CHECK(atomic_size(FI_DOUBLE_COMPLEX) == 16);
    CHECK(atomic_size(FI_UINT128) == 16);
    CHECK(atomic_size(FI_VOID) == 0);
    CHECK(atomic_valid(atomic_kind::base, FI_SUM, FI_INT32));
    CHECK(atomic_valid(atomic_kind::base, FI_SUM, FI_FLOAT_COMPLEX));
    CHECK_FALSE(atomic_valid(atomic_kind::base, FI_BOR, FI_DOUBLE));    // bitwise: integers only
    CHECK_FALSE(atomic_valid(atomic_kind::base, FI_MIN, FI_DOUBLE_COMPLEX));  // no order on complex
    CHECK_FALSE(atomic_valid(atomic_kind::base, FI_ATOMIC_READ, FI_INT64));  // a read fetches
    CHECK(atomic_valid(atomic_kind::fetch, FI_ATOMIC_READ, FI_INT64));
    CHECK_FALSE(atomic_valid(atomic_kind::base, FI_CSWAP, FI_INT64));   // compare ops need a compare
    CHECK(atomic_valid(atomic_kind::compare, FI_CSWAP, FI_DOUBLE_COMPLEX));
    CHECK_FALSE(atomic_valid(atomic_kind::compare, FI_CSWAP_LT, FI_FLOAT_COMPLEX));
    CHECK_FALSE(atomic_valid(atomic_kind::compare, FI_MSWAP, FI_FLOAT));
    CHECK_FALSE(atomic_valid(atomic_kind::compare, FI_SUM, FI_INT64));
    CHECK_FALSE(atomic_valid(atomic_kind::base, FI_SUM, FI_VOID));
    CHECK_FALSE(atomic_valid(atomic_kind::base, FI_ATOMIC_OP_LAST, FI_INT8));
}

TEST_CASE("atomics: each operation applied element by element, previous values returned") {
    std::int32_t t[3] = {5, -7, 100}, in[3] = {3, 3, 3}, prev[3] = {};
    atomic_apply(FI_SUM, FI_INT32, t, in, nullptr, prev, 3);
    CHECK(t[0] == 8);
    CHECK(t[1] == -4);
    CHECK(prev[2] == 100);
    atomic_apply(FI_MIN, FI_INT32, t, in, nullptr, nullptr, 3);
    CHECK(t[0] == 3);
    CHECK(t[1] == -4);
    std::uint8_t u = 250, add = 10;
    atomic_apply(FI_SUM, FI_UINT8, &u, &add, nullptr, nullptr, 1);
    CHECK(u == 4);  // wraps as the type does
    std::uint64_t w = 0xF0F0, mask = 0x00FF, val = 0x1234;
    atomic_apply(FI_MSWAP, FI_UINT64, &w, &val, &mask, nullptr, 1);
    CHECK(w == 0xF034);
    std::int64_t c = 10, cmp = 10, swap = 99, old = 0;
    atomic_apply(FI_CSWAP, FI_INT64, &c, &swap, &cmp, &old, 1);
    CHECK(c == 99);
    CHECK(old == 10);
    cmp = 10;
    atomic_apply(FI_CSWAP, FI_INT64, &c, &swap, &cmp, &old, 1);  // no longer equal: unchanged
    CHECK(c == 99);
    cmp = 50;
    std::int64_t small = 1;
    atomic_apply(FI_CSWAP_LT, FI_INT64, &c, &small, &cmp, nullptr, 1);  // 50 < 99: swapped
    CHECK(c == 1);
    atomic_apply(FI_CSWAP_GE, FI_INT64, &c, &swap, &cmp, nullptr, 1);  // 50 >= 1: swapped
    CHECK(c == 99);
    double d = 1.5, dd = 2.0;
    atomic_apply(FI_PROD, FI_DOUBLE, &d, &dd, nullptr, nullptr, 1);
    CHECK(d == 3.0);
    std::complex<double> z{1, 2}, zz{3, -1};
    atomic_apply(FI_SUM, FI_DOUBLE_COMPLEX, &z, &zz, nullptr, nullptr, 1);
    CHECK(z == std::complex<double>(4, 1));
    std::int16_t r = 77, got = 0;
    atomic_apply(FI_ATOMIC_READ, FI_INT16, &r, nullptr, nullptr, &got, 1);
    CHECK(got == 77);
    CHECK(r == 77);
    std::int32_t l = 0, one = 5;
    atomic_apply(FI_LOR, FI_INT32, &l, &one, nullptr, nullptr, 1);
    CHECK(l == 1);
    // Unaligned buffers are fine (the payload sits anywhere in a slot).
    alignas(8) unsigned char raw[9] = {};
    std::int64_t v = 41, inc = 1;
    std::memcpy(raw + 1, &v, 8);
    atomic_apply(FI_SUM, FI_INT64, raw + 1, &inc, nullptr, nullptr, 1);
    std::memcpy(&v, raw + 1, 8);
    CHECK(v == 42);
}

TEST_CASE("block_pool: first fit, shrinking to what is free, nothing handed out twice") {
    block_pool pool(8, 1024);
    auto a = pool.take(3000, false);  // three blocks
    REQUIRE(a);
    CHECK(a->first == 0);
    CHECK(a->second == 3000);
    auto b = pool.take(1024, false);
    REQUIRE(b);
    CHECK(b->first == 3072);
    auto c = pool.take(4096, false);  // blocks 4..7
    REQUIRE(c);
    CHECK_FALSE(pool.take(1, false));  // full
    CHECK_FALSE(pool.any_free());
    pool.give(a->first, a->second);
    CHECK_FALSE(pool.take(4 * 1024, false));  // only three free in a row
    auto shrunk = pool.take(4 * 1024, true);  // takes the three
    REQUIRE(shrunk);
    CHECK(shrunk->first == 0);
    CHECK(shrunk->second == 3 * 1024);
    pool.give(b->first, b->second);
    pool.give(c->first, c->second);
    auto d = pool.take(5 * 1024, false);  // blocks 3..7 again, in one run
    REQUIRE(d);
    CHECK(d->first == 3 * 1024);
}

namespace {
bool readable(const wake_fd& w) {
    pollfd p{w.fd(), POLLIN, 0};
    return ::poll(&p, 1, 0) == 1;
}
}  // namespace

TEST_CASE("wake_fd: readable exactly while set once somebody may sleep on it, and never before") {
    wake_fd w;
    w.set();
    CHECK_FALSE(readable(w));  // nobody waits: no system call, nothing to read
    w.arm();                   // a sleeper arrives while it is set
    CHECK(readable(w));
    w.clear();
    CHECK_FALSE(readable(w));
    w.set();
    CHECK(readable(w));
    w.set();  // a level, not a count: one clear() empties it
    w.clear();
    CHECK_FALSE(readable(w));
    w.disarm();
    w.set();
    CHECK_FALSE(readable(w));
    w.clear();

    SUBCASE("two sleepers: armed until both have gone") {
        w.arm();
        w.arm();
        w.disarm();
        w.set();
        CHECK(readable(w));
        w.clear();
        w.disarm();
        w.set();
        CHECK_FALSE(readable(w));
    }
    SUBCASE("handed out (FI_GETWAIT): armed for good") {
        w.expose();
        w.set();
        CHECK(readable(w));
        w.disarm();  // a sleeper leaving changes nothing
        CHECK(readable(w));
        w.clear();
        CHECK_FALSE(readable(w));
    }
    SUBCASE("always armed (an EQ's)") {
        wake_fd eq(true);
        eq.set();
        CHECK(readable(eq));
    }
}

TEST_CASE("environment: known values are taken, anything else is refused with the variable's name") {
    std::map<std::string, std::string> vars;
    auto lookup = [&](const char* name) -> const char* {
        auto it = vars.find(name);
        return it == vars.end() ? nullptr : it->second.c_str();
    };
    auto env = read_provider_environment(lookup);
    CHECK(env.receive_in_turns);
    CHECK_FALSE(env.ack_delay_us);
    CHECK_FALSE(env.link_integrity);
    CHECK_FALSE(env.stats);

    vars = {{"VMRDMA_FI_RECEIVE_IN_TURNS", "0"}, {"VMRDMA_FI_ACK_DELAY_US", "0"},
            {"VMRDMA_FI_INTEGRITY", "link"}, {"VMRDMA_FI_STATS", "1"}};
    env = read_provider_environment(lookup);
    CHECK_FALSE(env.receive_in_turns);
    CHECK(env.ack_delay_us == 0u);
    CHECK(env.link_integrity);
    CHECK(env.stats);
    vars = {{"VMRDMA_FI_INTEGRITY", "end-to-end"}, {"VMRDMA_FI_ACK_DELAY_US", "1000000"},
            {"VMRDMA_FI_STATS", ""}};  // empty: unset
    env = read_provider_environment(lookup);
    CHECK_FALSE(env.link_integrity);
    CHECK(env.ack_delay_us == 1000000u);
    CHECK_FALSE(env.stats);

    const std::pair<const char*, const char*> refused[] = {
        {"VMRDMA_FI_INTEGRITY", "Link"},       {"VMRDMA_FI_INTEGRITY", "none"},
        {"VMRDMA_FI_RECEIVE_IN_TURNS", "no"},  {"VMRDMA_FI_RECEIVE_IN_TURNS", "2"},
        {"VMRDMA_FI_STATS", "yes"},            {"VMRDMA_FI_ACK_DELAY_US", "10us"},
        {"VMRDMA_FI_ACK_DELAY_US", "-1"},      {"VMRDMA_FI_ACK_DELAY_US", "1000001"},
        {"VMRDMA_FI_ACK_DELAY_US", "99999999999999999999999"},
    };
    for (auto [name, value] : refused) {
        vars = {{name, value}};
        CAPTURE(name);
        CAPTURE(value);
        try {
            read_provider_environment(lookup);
            FAIL("accepted");
        } catch (const vmrdma::error& e) {
            CHECK(e.code() == vmrdma::errc::invalid_argument);
            const std::string what = e.what();
            CHECK(what.find(name) != std::string::npos);
            CHECK(what.find(std::string("'") + value + "'") != std::string::npos);
        }
    }
}
