// opcode_tour: puts every vmrdma opcode on the wire at least once, between two
// devices on the two ends of an existing veth pair (MTU 1500), so that a
// capture of the pair shows the whole protocol. Used by dissector_test.sh,
// which creates the namespace and the pair and captures on it.
//
//   opcode_tour IF_A IF_B
//
// Order: CONNECT_REQ/CONNECT_ACK; WRITE_ONLY (1 B) and WRITE_FIRST/MIDDLE/LAST
// (10 KB); eight 8-byte writes posted together, which the eth: device sends
// as one BUNDLE of WRITE_ONLY frames (the tour fails if a sent no bundle);
// READ_REQ with READ_RESP_ONLY and READ_RESP_FIRST/MIDDLE/LAST;
// SEND_ONLY and SEND_FIRST/MIDDLE/LAST; ATOMIC_FADD, ATOMIC_CSWAP,
// ATOMIC_RESP; ACKs throughout; DISCONNECT on close; then, on a second
// connection (it goes to error), a write with a forged rkey that the peer
// answers with NAK BAD_KEY. Every transfer is verified; exits 0 on success.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <exception>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "vmrdma/rdma.hpp"
#include "vmrdma/runtime.hpp"

using namespace std::chrono_literals;
using vmrdma::access;
using vmrdma::connection;
using vmrdma::errc;
using vmrdma::error;
using vmrdma::task;

namespace {

constexpr std::uint32_t big = 10 * 1024;  // 8 frames at MTU 1500 (1436 bytes each)
constexpr std::uint32_t small_writes = 8;  // posted in one turn: one BUNDLE
constexpr std::uint32_t small = 8;         // bytes each: 86-byte frames, well below half the MTU

std::vector<std::byte> pattern(std::size_t n, unsigned seed) {
    std::vector<std::byte> v(n);
    std::mt19937 rng(seed);
    for (auto& b : v) b = static_cast<std::byte>(rng());
    return v;
}

void require(bool ok, const char* what) {
    if (!ok) throw std::runtime_error(std::string("opcode_tour: check failed: ") + what);
}

void step(const char* text) {
    std::printf("opcode_tour: %s\n", text);
    std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
    const bool link = argc == 4 && std::string(argv[3]) == "--integrity-link";
    const bool auth = argc == 4 && std::string(argv[3]) == "--auth";
    if (argc != 3 && !link && !auth) {
        std::fprintf(stderr, "usage: %s IF_A IF_B [--integrity-link | --auth]\n", argv[0]);
        return 2;
    }
    try {
        vmrdma::event_loop loop;
        // --integrity-link: both ends agree that payloads rest on the link's
        // FCS, so the data frames carry the LINK_FCS flag and a header-only CRC.
        vmrdma::device_options options;
        if (link) options.integrity = vmrdma::device_options::integrity_mode::link;
        // --auth: both ends share a key, so every frame of a connection
        // carries the AUTH flag and an auth block.
        if (auth) options.auth_key.emplace().fill(std::byte{0x42});
        auto a = vmrdma::device::open(loop, std::string("eth:") + argv[1], options);
        auto b = vmrdma::device::open(loop, std::string("eth:") + argv[2], options);
        if (a->mtu() != 1500 || b->mtu() != 1500)
            std::fprintf(stderr, "opcode_tour: warning: MTU is %u/%u, not 1500\n", a->mtu(), b->mtu());
        auto ea = a->open_endpoint(1);
        auto eb = b->open_endpoint(1, {.weight = 1, .listen = true});

        auto src = pattern(big, 1);
        std::vector<std::byte> target(big, std::byte{0});    // on b: written, then read
        std::vector<std::byte> back(big, std::byte{0});      // on a: read into
        std::vector<std::byte> inbox(2 * big, std::byte{0}); // on b: receives
        alignas(8) std::uint64_t word = 100;                 // on b: atomics

        auto src_mr = ea.register_memory(src, access::none);
        auto back_mr = ea.register_memory(back, access::local_write);
        auto target_mr = eb.register_memory(target, access::remote_write | access::remote_read);
        auto inbox_mr = eb.register_memory(inbox, access::local_write);
        auto word_mr = eb.register_memory(std::as_writable_bytes(std::span(&word, 1)), access::remote_atomic);

        auto body = [&]() -> task<void> {
            {
                step("find the server by name (RESOLVE, ANNOUNCE)");
                co_await eb.set_accept_data(target_mr.remote().to_bytes());
                co_await eb.announce("opcode-tour");
                auto peer = co_await ea.resolve("opcode-tour");
                require(peer.mac == b->mac() && peer.endpoint == 1, "resolve finds endpoint 1 of b");
                step("connect with private data (CONNECT_REQ, CONNECT_ACK with payloads)");
                static constexpr std::string_view hello = "opcode tour";
                auto [client, server] = co_await vmrdma::when_all(
                    ea.connect(peer, {.private_data = std::as_bytes(std::span(hello.data(), hello.size()))}),
                    eb.accept());
                require(server.peer_data().size() == hello.size(), "the accept got the private data");
                auto remote = vmrdma::remote_region::from_bytes(client.peer_data());
                require(remote.rkey == target_mr.key(), "the connect got the region in the accept data");

                step("write 1 B (WRITE_ONLY) and 10 KB (WRITE_FIRST/MIDDLE/LAST), ACKs");
                co_await client.write(src_mr, 0, remote, 0, 1);
                require(target[0] == src[0], "1-byte write arrived");
                co_await client.write(src_mr, 0, remote, 0, big);
                require(target == src, "10 KB write arrived");

                step("8 writes of 8 B posted together (BUNDLE of WRITE_ONLY)");
                {
                    // Clear what they rewrite, so that each must arrive (and
                    // target equals src again for the reads below).
                    std::fill_n(target.begin(), small_writes * small, std::byte{0});
                    const auto bundles_before = a->stats().bundles_sent;
                    std::vector<task<void>> writes;
                    for (std::uint32_t i = 0; i < small_writes; ++i)
                        writes.push_back(client.write(src_mr, i * small, remote, i * small, small));
                    co_await vmrdma::when_all(std::move(writes));  // all posted before any is sent
                    require(target == src, "8 small writes arrived");
                    require(a->stats().bundles_sent > bundles_before,
                            "a sent no BUNDLE for 8 small writes posted together "
                            "(is device_options::bundle_small_frames off?)");
                    require(b->stats().bundles_received > 0, "b received a BUNDLE");
                }

                step("read 1 B (READ_REQ, READ_RESP_ONLY) and 10 KB (READ_RESP_FIRST/MIDDLE/LAST)");
                co_await client.read(back_mr, 0, remote, 0, 1);
                require(back[0] == src[0], "1-byte read returned");
                co_await client.read(back_mr, 0, remote, 0, big);
                require(back == src, "10 KB read returned");

                step("send 1 B (SEND_ONLY) and 10 KB (SEND_FIRST/MIDDLE/LAST)");
                auto [r1, r2, u1, u2] = co_await vmrdma::when_all(
                    eb.recv(inbox_mr, 0, 1, 7), eb.recv(inbox_mr, big, big, 8),
                    client.send(src_mr, 0, 1, 7), client.send(src_mr, 0, big, 8));
                (void)u1;
                (void)u2;
                require(r1.tag == 7 && r1.length == 1, "1-byte send received");
                require(r2.tag == 8 && r2.length == big, "10 KB send received");
                require(inbox[0] == src[0], "1-byte send data");
                require(std::memcmp(inbox.data() + big, src.data(), big) == 0, "10 KB send data");

                step("fetch_add (ATOMIC_FADD), compare_swap (ATOMIC_CSWAP), ATOMIC_RESP");
                auto wr = word_mr.remote();
                require(co_await client.fetch_add(wr, 0, 5) == 100, "fetch_add returns 100");
                require(co_await client.compare_swap(wr, 0, 105, 7) == 105, "compare_swap returns 105");
                require(word == 7, "compare_swap swapped");

                step("close (DISCONNECT)");
                client.close();
                co_await loop.sleep_for(100ms);  // let the DISCONNECT go out and arrive
            }
            {
                step("forged rkey on a second connection (NAK BAD_KEY)");
                auto [client, server] = co_await vmrdma::when_all(ea.connect(b->mac(), 1), eb.accept());
                auto r = target_mr.remote();
                vmrdma::remote_region forged{r.rkey ^ 0x5a5a0000u, r.length};
                bool refused = false;
                try {
                    co_await client.write(src_mr, 0, forged, 0, 16);
                } catch (const error& e) {
                    refused = e.code() == errc::bad_key;
                    if (!refused) std::fprintf(stderr, "opcode_tour: unexpected error: %s\n", e.what());
                }
                require(refused, "forged rkey refused with bad_key");
                server.close();  // the server side is still connected: DISCONNECT again
                client.close();
                co_await loop.sleep_for(100ms);
            }
        };
        loop.run(body());
        auto sa = a->stats(), sb = b->stats();
        std::printf("opcode_tour: done: a sent %llu frames (%llu bundles), b sent %llu frames "
                    "(%llu bundles), b sent %llu NAKs\n",
                    static_cast<unsigned long long>(sa.tx_frames),
                    static_cast<unsigned long long>(sa.bundles_sent),
                    static_cast<unsigned long long>(sb.tx_frames),
                    static_cast<unsigned long long>(sb.bundles_sent),
                    static_cast<unsigned long long>(sb.naks_sent));
        require(sb.naks_sent >= 1, "b sent a NAK");
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "opcode_tour: FAILED: %s\n", e.what());
        return 1;
    }
}
