// Transfers through a lossy link: two veth pairs (a<->ra, rb<->b) in the
// test's private network namespace, the fault-injecting relay
// (tools/faultrelay) forwarding ra<->rb, and a vmrdma device on a and on b.
// A mix of RDMA writes, reads, tagged sends and atomics (1 B .. 1 MiB, both
// directions) must complete bit-exact and exactly once with loss,
// reordering, duplication and bit corruption on, at MTU 1500 and 9000.
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "tests/support/private_net.hpp"
#include "tests/support/runfile.hpp"
#include "tools/faultrelay/relay_process.hpp"
#include "vmrdma/rdma.hpp"
#include "vmrdma/runtime.hpp"

using namespace std::chrono_literals;
using vmrdma::access;
using vmrdma::connection;
using vmrdma::device;
using vmrdma::event_loop;
using vmrdma::task;

namespace {

using vmrdma::faultrelay::relay_process;

// Counters from the relay's "faultrelay: final DIR key=value ..." lines,
// summed over both directions.
std::map<std::string, std::uint64_t> final_counters(const std::string& output) {
    std::map<std::string, std::uint64_t> sum;
    std::istringstream in(output);
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind("faultrelay: final ", 0) != 0) continue;
        std::istringstream words(line);
        std::string w;
        while (words >> w) {
            auto eq = w.find('=');
            if (eq == std::string::npos) continue;
            sum[w.substr(0, eq)] += std::strtoull(w.c_str() + eq + 1, nullptr, 10);
        }
    }
    return sum;
}

void fill_random(std::span<std::byte> out, std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    for (auto& b : out) b = static_cast<std::byte>(rng());
}

struct fault_case {
    const char* name;
    double loss, reorder, dup, corrupt;
};

constexpr std::size_t guard = 64;
constexpr std::byte guard_byte{0x5a};
const std::vector<std::size_t> one_sided_sizes = {1,    2,    7,     63,    64,    1000,          1457,
                                                  1500, 4096, 8953,  9000,  65536, (128 << 10) + 5, 1 << 20};
const std::vector<std::size_t> send_sizes = {1, 100, 1500, 9000, 65536, 1 << 20};
const std::vector<std::size_t> reverse_sizes = {1, 4096, 300000};

// Lays out `sizes` back to back with `guard` bytes before, between and after.
std::vector<std::size_t> layout(const std::vector<std::size_t>& sizes, std::size_t& total) {
    std::vector<std::size_t> offsets;
    std::size_t at = guard;
    for (auto s : sizes) {
        offsets.push_back(at);
        at += s + guard;
    }
    total = at;
    return offsets;
}

struct result {
    double seconds = 0;
    vmrdma::counters a, b;
    std::map<std::string, std::uint64_t> relay;
};

result run_case(const fault_case& fc, unsigned mtu, std::uint64_t seed) {
    using vmrdma::testing::veth_pair;
    veth_pair left("fa", "fra", mtu), right("frb", "fb", mtu);
    auto pct = [](double p) { return std::to_string(p); };
    relay_process relay(vmrdma::testing::runfile("tools/faultrelay/faultrelay"),
                        {"--loss", pct(fc.loss), "--reorder", pct(fc.reorder), "--dup", pct(fc.dup), "--corrupt",
                         pct(fc.corrupt), "--seed", std::to_string(seed), "fra", "frb"});

    event_loop loop;
    vmrdma::device_options opts;
    opts.rto_ns = 5'000'000;  // 5 ms: recover quickly
    opts.retry_limit = 30;    // RTO backs off to 16 × 5 ms: ~2 s of silence before giving up
    opts.peer_timeout_ns = 2'000'000'000;
    auto da = device::open(loop, "eth:fa", opts);
    auto db = device::open(loop, "eth:fb", opts);
    auto ea = da->open_endpoint(1);
    auto eb = db->open_endpoint(1, {.weight = 1, .listen = true});

    // a -> b writes land in b_dst; a reads b_src into a_back; sends from a_src
    // land in b_recv; b writes a_dst; atomics on words on both sides.
    std::size_t one_total = 0, send_total = 0, rev_total = 0;
    auto one_off = layout(one_sided_sizes, one_total);
    auto send_off = layout(send_sizes, send_total);
    auto rev_off = layout(reverse_sizes, rev_total);
    std::vector<std::byte> a_src(one_total), b_src(one_total), a_send(send_total), b_rev(rev_total);
    fill_random(a_src, seed * 4 + 1);
    fill_random(b_src, seed * 4 + 2);
    fill_random(a_send, seed * 4 + 3);
    fill_random(b_rev, seed * 4 + 4);
    std::vector<std::byte> b_dst(one_total, guard_byte), a_back(one_total, guard_byte),
        b_recv(send_total, guard_byte), a_dst(rev_total, guard_byte);
    std::vector<std::uint64_t> b_words(4, 0), a_words(4, 0);
    b_words[0] = 1000;
    b_words[1] = 7;
    b_words[2] = 0xfffffffffffffff0ull;  // fetch_add wraps
    a_words[0] = 42;

    auto a_src_mr = ea.register_memory(a_src, access::none);
    auto a_send_mr = ea.register_memory(a_send, access::none);
    auto a_back_mr = ea.register_memory(a_back, access::local_write);
    auto a_dst_mr = ea.register_memory(a_dst, access::remote_write);
    auto a_words_mr = ea.register_memory(std::as_writable_bytes(std::span(a_words)), access::remote_atomic);
    auto b_src_mr = eb.register_memory(b_src, access::remote_read);
    auto b_rev_mr = eb.register_memory(b_rev, access::none);
    auto b_dst_mr = eb.register_memory(b_dst, access::remote_write);
    auto b_recv_mr = eb.register_memory(b_recv, access::local_write);
    auto b_words_mr = eb.register_memory(std::as_writable_bytes(std::span(b_words)), access::remote_atomic);

    constexpr int concurrent_adds = 64, sequential_adds = 32, reverse_adds = 32, swaps = 8;
    std::vector<std::uint64_t> concurrent_prev;
    bool done = false;
    auto t0 = std::chrono::steady_clock::now(), t1 = t0;
    vmrdma::counters at_end_a, at_end_b;

    auto workload = [&]() -> task<void> {
        auto [client, server] = co_await vmrdma::when_all(ea.connect(db->mac(), 1), eb.accept());
        {  // a -> b writes and a <- b reads, all in flight at once
            std::vector<task<void>> ops;
            for (std::size_t i = 0; i < one_sided_sizes.size(); ++i) {
                auto len = static_cast<std::uint32_t>(one_sided_sizes[i]);
                ops.push_back(client.write(a_src_mr, one_off[i], b_dst_mr.remote(), one_off[i], len));
                ops.push_back(client.read(a_back_mr, one_off[i], b_src_mr.remote(), one_off[i], len));
            }
            co_await vmrdma::when_all(std::move(ops));
        }
        {  // tagged sends a -> b (receives posted in reverse order: matching is by tag),
           // with b -> a writes at the same time
            std::vector<task<vmrdma::recv_result>> recvs;
            for (std::size_t i = send_sizes.size(); i-- > 0;)
                recvs.push_back(eb.recv(b_recv_mr, send_off[i], static_cast<std::uint32_t>(send_sizes[i]), 100 + i));
            std::vector<task<void>> ops;
            for (std::size_t i = 0; i < send_sizes.size(); ++i)
                ops.push_back(client.send(a_send_mr, send_off[i], static_cast<std::uint32_t>(send_sizes[i]), 100 + i));
            for (std::size_t i = 0; i < reverse_sizes.size(); ++i)
                ops.push_back(server.write(b_rev_mr, rev_off[i], a_dst_mr.remote(), rev_off[i],
                                           static_cast<std::uint32_t>(reverse_sizes[i])));
            auto [got, sent] = co_await vmrdma::when_all(vmrdma::when_all(std::move(recvs)),
                                                         vmrdma::when_all(std::move(ops)));
            (void)sent;
            for (std::size_t k = 0; k < got.size(); ++k) {
                std::size_t i = send_sizes.size() - 1 - k;
                CHECK(got[k].tag == 100 + i);
                CHECK(got[k].length == send_sizes[i]);
            }
        }
        {  // atomics: concurrent and sequential fetch_adds both ways, and compare_swaps
            std::vector<task<std::uint64_t>> adds;
            for (int i = 0; i < concurrent_adds; ++i)
                adds.push_back(client.fetch_add(b_words_mr.remote(), 0, std::uint64_t(i + 1)));
            for (int i = 0; i < reverse_adds; ++i)
                adds.push_back(server.fetch_add(a_words_mr.remote(), 0, 3));
            concurrent_prev = co_await vmrdma::when_all(std::move(adds));
            std::uint64_t expect = 0xfffffffffffffff0ull;
            for (int i = 0; i < sequential_adds; ++i) {
                CHECK(co_await client.fetch_add(b_words_mr.remote(), 16, 1) == expect);
                ++expect;
            }
            for (int i = 0; i < swaps; ++i) {
                CHECK(co_await client.compare_swap(b_words_mr.remote(), 8, 7 + i, 8 + i) == 7 + std::uint64_t(i));
                CHECK(co_await client.compare_swap(b_words_mr.remote(), 8, 0, 99) == 8 + std::uint64_t(i));  // fails
            }
        }
        co_await client.fence();
        t1 = std::chrono::steady_clock::now();
        // Counters before the connections close (closing both ends at once
        // may leave one DISCONNECT arriving for a connection already freed,
        // which counts as a dropped frame).
        at_end_a = da->stats();
        at_end_b = db->stats();
        done = true;
    };

    // Prints progress every 5 s; gives up (with both devices' and the relay's
    // counters, for diagnosis) if the case takes more than 60 s.
    auto watchdog = [&]() -> task<void> {
        int ticks = 0;
        while (!done) {
            co_await loop.sleep_for(100ms);
            if (done) break;
            if (++ticks % 50 != 0) continue;
            auto sa = da->stats(), sb = db->stats();
            std::fprintf(stderr,
                         "[%s mtu %u, %d s] a: tx %llu rx %llu retx %llu timeouts %llu dups %llu dropped %llu "
                         "naks %llu/%llu | b: tx %llu rx %llu retx %llu timeouts %llu dups %llu dropped %llu "
                         "naks %llu/%llu\n%s",
                         fc.name, mtu, ticks / 10, (unsigned long long)sa.tx_frames, (unsigned long long)sa.rx_frames,
                         (unsigned long long)sa.retransmits, (unsigned long long)sa.timeouts,
                         (unsigned long long)sa.duplicates, (unsigned long long)sa.rx_dropped,
                         (unsigned long long)sa.naks_sent, (unsigned long long)sa.naks_received,
                         (unsigned long long)sb.tx_frames, (unsigned long long)sb.rx_frames,
                         (unsigned long long)sb.retransmits, (unsigned long long)sb.timeouts,
                         (unsigned long long)sb.duplicates, (unsigned long long)sb.rx_dropped,
                         (unsigned long long)sb.naks_sent, (unsigned long long)sb.naks_received,
                         relay.snapshot().c_str());
            if (ticks >= 600) {
                std::fprintf(stderr, "STUCK: %s at MTU %u did not finish in 60 s\n%s", fc.name, mtu,
                             relay.stop().c_str());
                std::fflush(stderr);
                std::_Exit(3);
            }
        }
    };

    loop.run([&]() -> task<void> { co_await vmrdma::when_all(workload(), watchdog()); }());

    result r;
    r.seconds = std::chrono::duration<double>(t1 - t0).count();
    r.a = at_end_a;
    r.b = at_end_b;

    // Destination memory, bit for bit, guards included.
    std::vector<std::byte> expect_dst(one_total, guard_byte), expect_back(one_total, guard_byte);
    for (std::size_t i = 0; i < one_sided_sizes.size(); ++i) {
        std::memcpy(expect_dst.data() + one_off[i], a_src.data() + one_off[i], one_sided_sizes[i]);
        std::memcpy(expect_back.data() + one_off[i], b_src.data() + one_off[i], one_sided_sizes[i]);
    }
    CHECK(b_dst == expect_dst);
    CHECK(a_back == expect_back);
    std::vector<std::byte> expect_recv(send_total, guard_byte), expect_rev(rev_total, guard_byte);
    for (std::size_t i = 0; i < send_sizes.size(); ++i)
        std::memcpy(expect_recv.data() + send_off[i], a_send.data() + send_off[i], send_sizes[i]);
    for (std::size_t i = 0; i < reverse_sizes.size(); ++i)
        std::memcpy(expect_rev.data() + rev_off[i], b_rev.data() + rev_off[i], reverse_sizes[i]);
    CHECK(b_recv == expect_recv);
    CHECK(a_dst == expect_rev);

    // Atomics: final values, and the concurrent fetch_adds form one chain
    // 1000 -> ... -> final (each applied exactly once).
    std::uint64_t sum = 0;
    for (int i = 0; i < concurrent_adds; ++i) sum += std::uint64_t(i + 1);
    CHECK(b_words[0] == 1000 + sum);
    CHECK(b_words[1] == 7 + swaps);
    CHECK(b_words[2] == 0xfffffffffffffff0ull + sequential_adds);
    CHECK(b_words[3] == 0);
    CHECK(a_words[0] == 42 + 3 * std::uint64_t(reverse_adds));
    REQUIRE(concurrent_prev.size() == std::size_t(concurrent_adds + reverse_adds));
    std::map<std::uint64_t, std::uint64_t> step;  // previous value -> add
    for (int i = 0; i < concurrent_adds; ++i) CHECK(step.emplace(concurrent_prev[std::size_t(i)], i + 1).second);
    std::uint64_t at = 1000;
    for (int i = 0; i < concurrent_adds && step.count(at); ++i) at += step[at];
    CHECK(at == 1000 + sum);
    std::vector<std::uint64_t> rev_prev(concurrent_prev.begin() + concurrent_adds, concurrent_prev.end());
    std::sort(rev_prev.begin(), rev_prev.end());
    for (int i = 0; i < reverse_adds; ++i) CHECK(rev_prev[std::size_t(i)] == 42 + 3 * std::uint64_t(i));

    std::string out = relay.stop();
    CHECK_MESSAGE(relay.exited_cleanly(), "the relay did not exit cleanly:\n" << out);
    r.relay = final_counters(out);
    return r;
}

void report(const fault_case& fc, unsigned mtu, const result& r) {
    auto& c = r.relay;
    auto get = [&](const char* k) { return c.count(k) ? (unsigned long long)c.at(k) : 0ull; };
    std::printf(
        "RESULT %-16s mtu %5u: %6.3f s | relay forwarded %llu dropped %llu duplicated %llu reordered %llu "
        "corrupted %llu queue_full %llu | a: tx %llu retx %llu timeouts %llu dups %llu rx_dropped %llu | "
        "b: tx %llu retx %llu timeouts %llu dups %llu rx_dropped %llu\n",
        fc.name, mtu, r.seconds, get("forwarded"), get("dropped"), get("duplicated"), get("reordered"),
        get("corrupted"), get("queue_full"), (unsigned long long)r.a.tx_frames,
        (unsigned long long)r.a.retransmits, (unsigned long long)r.a.timeouts, (unsigned long long)r.a.duplicates,
        (unsigned long long)r.a.rx_dropped, (unsigned long long)r.b.tx_frames,
        (unsigned long long)r.b.retransmits, (unsigned long long)r.b.timeouts, (unsigned long long)r.b.duplicates,
        (unsigned long long)r.b.rx_dropped);
    std::fflush(stdout);
}

void lossy_case(const fault_case& fc) {
    for (unsigned mtu : {1500u, 9000u}) {
        std::string name = fc.name;
        CAPTURE(mtu);
        CAPTURE(name);
        auto r = run_case(fc, mtu, mtu + std::uint64_t(fc.loss * 100));
        report(fc, mtu, r);
        // The relay really did inject every kind of fault...
        CHECK(r.relay["dropped"] > 0);
        CHECK(r.relay["duplicated"] > 0);
        CHECK(r.relay["reordered"] > 0);
        CHECK(r.relay["corrupted"] > 0);
        CHECK(r.relay["queue_full"] == 0);
        CHECK(r.relay["tx_errors"] == 0);
        // ... the engine recovered by retransmitting, saw the duplicates, and
        // dropped the corrupted frames (CRC32C) at the receiver.
        CHECK(r.a.retransmits + r.b.retransmits > 0);
        CHECK(r.a.duplicates + r.b.duplicates > 0);
        CHECK(r.b.rx_dropped > 0);
    }
}

}  // namespace

TEST_CASE("baseline: the same mix through the relay with no faults") {
    if (vmrdma::testing::skip_network_tests()) return;
    fault_case none{"no-faults", 0, 0, 0, 0};
    for (unsigned mtu : {1500u, 9000u}) {
        CAPTURE(mtu);
        auto r = run_case(none, mtu, mtu);
        report(none, mtu, r);
        CHECK(r.relay["forwarded"] == r.relay["received"]);
        CHECK(r.relay["dropped"] + r.relay["duplicated"] + r.relay["reordered"] + r.relay["corrupted"] == 0);
        CHECK(r.a.rx_dropped + r.b.rx_dropped == 0);
    }
}

TEST_CASE("bit-exact through 1% loss, 1% reorder, 1% duplication, 1% corruption") {
    if (vmrdma::testing::skip_network_tests()) return;
    lossy_case({"1%-all", 1, 1, 1, 1});
}

TEST_CASE("bit-exact through 5% loss, 2% reorder, 2% duplication, 2% corruption") {
    if (vmrdma::testing::skip_network_tests()) return;
    lossy_case({"5%-loss-2%-rest", 5, 2, 2, 2});
}
