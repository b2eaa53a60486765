// Figures for docs/split-driver.md: the same transfers from an in-process
// eth: device and from a unix: frontend through vmrdmad, to one eth: peer
// across a veth pair. Run as root:
//   bazel run --config=release //tests/split:split_measure
#include <chrono>
#include <cstdio>
#include <cstring>
#include <vector>

#include "tests/split/split_support.hpp"
#include "vmrdma/registrable.hpp"

using namespace std::chrono_literals;
using clk = std::chrono::steady_clock;
using vmrdma::access;
using vmrdma::task;

namespace {

constexpr std::size_t big = 64u << 20;

struct figures {
    double gib_per_s;
    double fadd_us;
};

// The peer: listening endpoint 1 with a 64 MiB region, descriptor sent on accept.
split_test::peer_thread::body_fn peer_body() {
    return [](vmrdma::event_loop&, vmrdma::device& dev, std::stop_token stop) -> task<void> {
        auto ep = dev.open_endpoint(1, {.weight = 1, .listen = true});
        std::vector<std::byte> target(big), desc(16);
        auto mr = ep.register_memory(target, access::remote_write | access::remote_read | access::remote_atomic);
        auto desc_mr = ep.register_memory(desc, access::none);
        auto d = mr.remote().to_bytes();
        std::memcpy(desc.data(), d.data(), 16);
        std::vector<vmrdma::connection> conns;  // kept open: the writer uses them
        for (;;) {
            try {
                conns.push_back(co_await ep.accept(stop));
            } catch (const vmrdma::error&) {
                co_return;
            }
            co_await conns.back().send(desc_mr, 0, 16, 1);
        }
    };
}

figures measure(vmrdma::event_loop& loop, vmrdma::device& dev, const vmrdma::mac_address& peer, int rounds) {
    auto ep = dev.open_endpoint(5);
    vmrdma::registrable_buffer src(big), desc(16);
    std::memset(src.data(), 0x5a, big);
    auto src_mr = ep.register_memory(src.span(), access::local_write);
    auto desc_mr = ep.register_memory(desc.span(), access::local_write);
    figures f{};
    auto body = [&]() -> task<void> {
        auto got = ep.recv(desc_mr, 0, 16, 1);
        auto conn = co_await ep.connect(peer, 1);
        co_await std::move(got);
        auto remote = vmrdma::remote_region::from_bytes(desc.span());
        co_await conn.write(src_mr, 0, remote, 0, static_cast<std::uint32_t>(big));  // warm up
        auto t0 = clk::now();
        for (int i = 0; i < rounds; ++i) co_await conn.write(src_mr, 0, remote, 0, static_cast<std::uint32_t>(big));
        double s = std::chrono::duration<double>(clk::now() - t0).count();
        f.gib_per_s = rounds * double(big) / s / double(1u << 30);
        constexpr int n = 2000;
        t0 = clk::now();
        for (int i = 0; i < n; ++i) co_await conn.fetch_add(remote, 0, 1);
        f.fadd_us = std::chrono::duration<double, std::micro>(clk::now() - t0).count() / n;
    };
    loop.run(body());
    return f;
}

}  // namespace

int main() {
    if (auto why = vmrdma::testing::enter_private_netns(); !why.empty()) {
        std::fprintf(stderr, "%s\n", why.c_str());
        return 1;
    }
    for (unsigned mtu : {9000u, 65535u}) {
        vmrdma::testing::veth_pair veth("vmd" + std::to_string(mtu), "vmp" + std::to_string(mtu), mtu);
        split_test::peer_thread peer(veth.b, peer_body());
        figures direct{}, split{};
        {
            vmrdma::event_loop loop;
            auto dev = vmrdma::device::open(loop, "eth:" + veth.a);
            direct = measure(loop, *dev, peer.mac(), 4);
        }
        {
            split_test::daemon_thread daemon(veth.a, split_test::socket_path("measure"));
            vmrdma::event_loop loop;
            auto dev = vmrdma::device::open(loop, daemon.uri());
            split = measure(loop, *dev, peer.mac(), 4);
        }
        std::printf("MTU %5u  eth: in-process %.2f GiB/s, fetch_add %.1f us | unix: via vmrdmad %.2f GiB/s, fetch_add %.1f us\n",
                    mtu, direct.gib_per_s, direct.fadd_us, split.gib_per_s, split.fadd_us);
        std::fflush(stdout);
    }
    std::_Exit(0);  // the peer thread waits in accept; nothing to tear down
}
