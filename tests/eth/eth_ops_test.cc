// Every RDMA operation over a real veth pair, through raw sockets and the
// io_uring loop: two devices in one process, each on one end of the pair,
// inside the test's own network namespace.
#include <doctest/doctest.h>

#include <cstring>
#include <numeric>
#include <random>
#include <vector>

#include "tests/support/private_net.hpp"
#include "vmrdma/rdma.hpp"
#include "vmrdma/runtime.hpp"

using namespace std::chrono_literals;
using vmrdma::access;
using vmrdma::connection;
using vmrdma::device;
using vmrdma::errc;
using vmrdma::error;
using vmrdma::event_loop;
using vmrdma::task;

namespace {

std::vector<std::byte> pattern(std::size_t n, unsigned seed) {
    std::vector<std::byte> v(n);
    std::mt19937 rng(seed);
    for (auto& b : v) b = static_cast<std::byte>(rng());
    return v;
}

struct pair_of_devices {
    event_loop loop;
    vmrdma::testing::veth_pair veth;
    std::unique_ptr<device> a, b;
    explicit pair_of_devices(unsigned mtu)
        : veth("vra" + std::to_string(mtu), "vrb" + std::to_string(mtu), mtu),
          a(device::open(loop, "eth:" + veth.a)),
          b(device::open(loop, "eth:" + veth.b)) {}
};

// Connects endpoint 1 on a to endpoint 1 (listening) on b.
task<std::pair<connection, connection>> connect_pair(vmrdma::endpoint& ea, vmrdma::endpoint& eb,
                                                     const vmrdma::mac_address& b_mac) {
    auto [client, server] = co_await vmrdma::when_all(ea.connect(b_mac, 1), eb.accept());
    co_return std::pair{std::move(client), std::move(server)};
}

void one_sided_round_trip(unsigned mtu, std::size_t size) {
    pair_of_devices net(mtu);
    CHECK(net.a->mtu() == mtu);
    auto ea = net.a->open_endpoint(1);
    auto eb = net.b->open_endpoint(1, {.weight = 1, .listen = true});
    auto src = pattern(size, static_cast<unsigned>(size));
    std::vector<std::byte> dst(size + 64, std::byte{0x5a});  // 32 guard bytes each side
    std::vector<std::byte> back(size, std::byte{0});
    auto src_mr = ea.register_memory(src, access::none);
    auto back_mr = ea.register_memory(back, access::local_write);
    auto dst_mr = eb.register_memory(std::span(dst).subspan(32, size),
                                     access::remote_write | access::remote_read);
    auto body = [&]() -> task<void> {
        auto [client, server] = co_await connect_pair(ea, eb, net.b->mac());
        co_await client.write(src_mr, 0, dst_mr.remote(), 0, static_cast<std::uint32_t>(size));
        co_await client.read(back_mr, 0, dst_mr.remote(), 0, static_cast<std::uint32_t>(size));
    };
    net.loop.run(body());
    CHECK(std::memcmp(dst.data() + 32, src.data(), size) == 0);
    CHECK(back == src);
    for (std::size_t i = 0; i < 32; ++i) {
        CHECK(dst[i] == std::byte{0x5a});
        CHECK(dst[32 + size + i] == std::byte{0x5a});
    }
}

}  // namespace

TEST_CASE("write then read back, bit for bit, at MTU 1500, 9000 and 65535") {
    if (vmrdma::testing::skip_network_tests()) return;
    for (unsigned mtu : {1500u, 9000u, 65535u}) {
        for (std::size_t size : {std::size_t{1}, std::size_t{4096}, std::size_t{1} << 20}) {
            CAPTURE(mtu);
            CAPTURE(size);
            one_sided_round_trip(mtu, size);
        }
    }
}
