// Hostile frames on the real path: while a legitimate transfer runs, an
// injector captures the client's frames on the wire and sends the server
// replays, corrupted, truncated, wrong-version, forged-key, out-of-bounds and
// wrong-endpoint variants. The server must stay up, count what it dropped,
// and the transfer must end bit for bit.
#include <doctest/doctest.h>
#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

#include "tests/support/private_net.hpp"
#include "vmrdma/rdma.hpp"
#include "vmrdma/runtime.hpp"

extern "C" {
#include "proto/wire.h"
}

using vmrdma::access;
using vmrdma::task;

namespace {

class injector {
public:
    explicit injector(const std::string& ifname) {
        fd_ = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(VR_ETHERTYPE_DEFAULT));
        REQUIRE(fd_ >= 0);
        sockaddr_ll addr{};
        addr.sll_family = AF_PACKET;
        addr.sll_protocol = htons(VR_ETHERTYPE_DEFAULT);
        addr.sll_ifindex = static_cast<int>(if_nametoindex(ifname.c_str()));
        REQUIRE(bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
        thread_ = std::thread([this] { run(); });
    }
    ~injector() {
        stop_ = true;
        thread_.join();
        close(fd_);
    }
    std::uint64_t injected() const { return injected_; }

private:
    void send_frame(const std::vector<std::uint8_t>& f) {
        if (::send(fd_, f.data(), f.size(), 0) == static_cast<ssize_t>(f.size())) ++injected_;
    }

    // Re-encodes a captured frame after `change` edited its header, with a
    // valid CRC, so it passes the parser and reaches the engine's checks.
    void send_modified(const vr_parsed& p, const std::vector<std::uint8_t>& frame,
                       void (*change)(vr_hdr&)) {
        vr_hdr h = p.h;
        change(h);
        std::vector<std::uint8_t> out(VR_ETH_HLEN + VR_HDR_LEN + h.payload_len);
        std::memcpy(out.data(), frame.data(), VR_ETH_HLEN);
        vr_wire_encode_full(out.data(), &h, p.payload);
        send_frame(out);
    }

    void run() {
        std::mt19937 rng(1);
        std::vector<std::uint8_t> frame(70000);
        while (!stop_) {
            pollfd pfd{fd_, POLLIN, 0};
            if (poll(&pfd, 1, 10) <= 0) continue;
            ssize_t n = recv(fd_, frame.data(), frame.size(), 0);
            if (n <= 0) continue;
            std::vector<std::uint8_t> f(frame.begin(), frame.begin() + n);
            vr_parsed p{};
            if (vr_wire_parse(f.data(), static_cast<std::uint32_t>(f.size()), VR_ETHERTYPE_DEFAULT, &p) != 0)
                continue;
            if (!vr_op_is_data(p.h.opcode) || ++seen_ % 7 != 0) continue;  // spare most frames
            send_frame(f);  // replay (a duplicate)
            auto corrupt = f;
            corrupt[corrupt.size() - 1] ^= 0x40;  // a flipped bit in payload or header
            send_frame(corrupt);
            auto truncated = f;
            truncated.resize(VR_ETH_HLEN + 1 + rng() % (f.size() - VR_ETH_HLEN - 1));
            send_frame(truncated);
            auto version = f;
            version[VR_ETH_HLEN] = 0x7f;
            send_frame(version);
            send_modified(p, f, [](vr_hdr& h) { h.rkey ^= 0x00ff0000u; });           // forged key
            send_modified(p, f, [](vr_hdr& h) { h.remote_off = ~0ull - 100; });      // out of bounds
            send_modified(p, f, [](vr_hdr& h) { h.dst_ep = static_cast<std::uint16_t>(h.dst_ep + 40); });
            send_modified(p, f, [](vr_hdr& h) { h.conn_id ^= 0x1234; });            // no such connection
        }
    }

    int fd_ = -1;
    std::thread thread_;
    std::atomic<bool> stop_{false};
    std::atomic<std::uint64_t> injected_{0};
    std::uint64_t seen_ = 0;
};

}  // namespace

TEST_CASE("a transfer under a stream of hostile frames ends bit for bit; the peer counts the drops") {
    if (vmrdma::testing::skip_network_tests()) return;
    vmrdma::event_loop loop;
    vmrdma::testing::veth_pair veth("vrhost-a", "vrhost-b", 9000);
    auto a = vmrdma::device::open(loop, "eth:" + veth.a);
    auto b = vmrdma::device::open(loop, "eth:" + veth.b);
    auto ea = a->open_endpoint(1);
    auto eb = b->open_endpoint(1, {.weight = 1, .listen = true});
    constexpr std::size_t size = 16u << 20;
    std::vector<std::byte> src(size), dst(size + 64, std::byte{0x11}), back(size);
    std::mt19937 rng(5);
    for (auto& x : src) x = static_cast<std::byte>(rng());
    auto src_mr = ea.register_memory(src, access::none);
    auto back_mr = ea.register_memory(back, access::local_write);
    auto dst_mr = eb.register_memory(std::span(dst).subspan(32, size),
                                     access::remote_write | access::remote_read);
    std::uint64_t injected = 0;
    auto body = [&]() -> task<void> {
        auto [client, server] = co_await vmrdma::when_all(ea.connect(b->mac(), 1), eb.accept());
        injector attacker(veth.a);  // on the client's side of the wire, aimed at the server
        for (int round = 0; round < 4; ++round) {
            co_await client.write(src_mr, 0, dst_mr.remote(), 0, size);
            co_await client.read(back_mr, 0, dst_mr.remote(), 0, size);
        }
        injected = attacker.injected();
    };
    loop.run(body());
    CHECK(injected > 100);
    CHECK(std::memcmp(dst.data() + 32, src.data(), size) == 0);
    CHECK(back == src);
    for (int i = 0; i < 32; ++i) {
        CHECK(dst[i] == std::byte{0x11});
        CHECK(dst[32 + size + i] == std::byte{0x11});
    }
    auto s = b->stats();
    MESSAGE("injected " << injected << " frames; the server dropped " << s.rx_dropped
                        << " and suppressed " << s.duplicates << " duplicates");
    CHECK(s.rx_dropped + s.duplicates >= injected / 2);
}
