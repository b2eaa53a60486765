// scatter: one sender RDMA-writes a slice of its buffer into each of N
// peers, all at once, with the least code the API allows.
//
//   scatter peer URI SLICE_BYTES     prints its MAC, receives one slice, checks it
//   scatter send URI MAC...          writes slice i of a pattern to peer i
//
// Each peer registers a region for remote writes and hands its descriptor
// over in the accept; the sender says which slice it sends in its connect's
// private data, writes every slice in parallel and closes, which tells each
// peer it is done. Slice i is filled with the byte i + 1.
#include <vmrdma/rdma.hpp>
#include <vmrdma/runtime.hpp>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using vmrdma::access;

namespace {

vmrdma::task<int> peer(vmrdma::device& dev, std::size_t slice) {
    auto ep = dev.open_endpoint(1);
    std::vector<std::byte> memory(slice);
    auto mr = ep.register_memory(memory, access::remote_write);
    co_await ep.set_accept_data(mr.remote().to_bytes());  // "write here", in the accept
    co_await ep.listen();                                  // only now: every sender gets it
    auto conn = co_await ep.accept();
    co_await conn.closed();  // the sender closes once its write is done
    int index = conn.peer_data().empty() ? -1 : std::to_integer<int>(conn.peer_data()[0]);
    auto expect = static_cast<std::byte>(index + 1);
    bool ok = std::all_of(memory.begin(), memory.end(), [&](std::byte b) { return b == expect; });
    std::printf("peer: slice %d of %zu bytes %s\n", index, slice, ok ? "intact" : "CORRUPT");
    co_return ok ? 0 : 1;
}

vmrdma::task<void> send_slice(vmrdma::endpoint& ep, const vmrdma::region& data, vmrdma::mac_address to,
                              std::uint8_t i, std::size_t slice) {
    auto conn = co_await ep.connect({to, 1}, {.private_data = std::as_bytes(std::span(&i, 1)),
                                              .wait_for_listener = 10s});
    co_await conn.write(data, i * slice, vmrdma::remote_region::from_bytes(conn.peer_data()), 0,
                        static_cast<std::uint32_t>(slice));
}   // the connection closes here: the peer's closed() completes

vmrdma::task<void> scatter(vmrdma::device& dev, const std::vector<vmrdma::mac_address>& peers) {
    constexpr std::size_t slice = 1 << 20;
    std::vector<std::byte> data(slice * peers.size());
    for (std::size_t i = 0; i < peers.size(); ++i)
        std::fill_n(data.begin() + static_cast<std::ptrdiff_t>(i * slice), slice, static_cast<std::byte>(i + 1));
    auto ep = dev.open_endpoint(1);
    auto mr = ep.register_memory(data, access::none);
    auto t0 = std::chrono::steady_clock::now();
    vmrdma::async_scope scope;
    for (std::size_t i = 0; i < peers.size(); ++i)
        scope.spawn(send_slice(ep, mr, peers[i], static_cast<std::uint8_t>(i), slice));
    co_await scope.join();
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("send: %zu slices of %zu bytes to %zu peers in %.3f s\n", peers.size(), slice, peers.size(), s);
}

}  // namespace

int main(int argc, char** argv) {
    std::string role = argc >= 3 ? argv[1] : "";
    // The device's default table has 64 connections: up to 64 peers.
    if (!(role == "peer" && argc == 4) && !(role == "send" && argc >= 4 && argc <= 3 + 64)) {
        std::fprintf(stderr, "usage: %s peer URI SLICE_BYTES | send URI MAC...\n", argv[0]);
        return 2;
    }
    try {
        vmrdma::event_loop loop;
        auto dev = vmrdma::device::open(loop, argv[2]);
        if (role == "peer") {
            std::printf("peer: %s\n", dev->mac().to_string().c_str());
            std::fflush(stdout);
            return loop.run(peer(*dev, std::strtoull(argv[3], nullptr, 10)));
        }
        std::vector<vmrdma::mac_address> peers;
        for (int i = 3; i < argc; ++i) peers.push_back(vmrdma::mac_address::parse(argv[i]));
        loop.run(scatter(*dev, peers));
        return 0;
    } catch (const vmrdma::error& e) {
        std::fprintf(stderr, "scatter %s: %s\n", role.c_str(), e.what());
        return 1;
    }
}
