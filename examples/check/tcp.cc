#include "examples/check/tcp.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "examples/check/options.hpp"
#include "examples/check/pattern.hpp"
#include "examples/support/tcp_stream.hpp"

namespace vmrdma::check {

namespace {

using examples::no_delay;
using examples::recv_all;
using examples::send_all;

constexpr std::uint64_t max_length = 64ull << 20;

std::uint16_t parse_port(const options& opt) {
    auto p = parse_number(opt.get("port", "7471"), 65535, "--port must be 1..65535");
    if (p == 0) throw usage_error("--port must be 1..65535, got 0");
    return static_cast<std::uint16_t>(p);
}

[[noreturn]] void fail_errno(const std::string& what) {
    throw std::runtime_error(what + ": " + std::strerror(errno));
}

// One client of tcp-serve: its length, then its rounds, until it leaves.
void echo_client(int fd) {
    try {
        std::byte header[8];
        if (!recv_all(fd, header, sizeof header)) {
            ::close(fd);
            return;
        }
        std::uint64_t length = 0;
        for (auto b : header) length = length << 8 | std::to_integer<std::uint64_t>(b);
        if (length == 0 || length > max_length) throw std::runtime_error("length " + std::to_string(length));
        std::vector<std::byte> buf(length);
        std::uint64_t rounds = 0;
        while (recv_all(fd, buf.data(), buf.size())) {
            send_all(fd, buf.data(), buf.size());
            ++rounds;
        }
        std::fprintf(stderr, "vmrdma-check: tcp client left after %" PRIu64 " rounds of %" PRIu64 " bytes\n", rounds,
                     length);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "vmrdma-check: tcp client dropped: %s\n", e.what());
    }
    ::close(fd);
}

volatile sig_atomic_t stopping = 0;
void on_stop(int) { stopping = 1; }

}  // namespace

int tcp_serve(int argc, char** argv) {
    options opt(argc, argv, 2, {"port"}, {});
    auto port = parse_port(opt);
    // SIGTERM/SIGINT interrupt accept (no SA_RESTART) and end the server.
    struct sigaction sa {};
    sa.sa_handler = on_stop;
    sigaction(SIGTERM, &sa, nullptr);
    sigaction(SIGINT, &sa, nullptr);

    int lfd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (lfd < 0) fail_errno("socket");
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_ANY);
    if (::bind(lfd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) fail_errno("bind port " + std::to_string(port));
    if (::listen(lfd, 16) != 0) fail_errno("listen");
    std::printf("READY port=%u\n", port);
    std::fflush(stdout);
    while (!stopping) {
        int fd = ::accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR) continue;
            fail_errno("accept");
        }
        no_delay(fd);
        std::thread(echo_client, fd).detach();  // ends with its client (or with the process)
    }
    std::fprintf(stderr, "vmrdma-check: tcp-serve stopping\n");
    ::close(lfd);
    return 0;
}

int tcp_client(int argc, char** argv) {
    options opt(argc, argv, 2, {"host", "port", "length", "rounds", "measure"}, {});
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(parse_port(opt));
    if (inet_pton(AF_INET, opt.required("host").c_str(), &a.sin_addr) != 1)
        throw usage_error("--host must be an IPv4 address, got '" + opt.get("host") + "'");
    const std::size_t length =
        parse_bytes(opt.required("length"), max_length, "--length must be 1 byte .. 64M (e.g. 64K)");
    if (opt.has("rounds") == opt.has("measure")) throw usage_error("give --rounds or --measure, one of them");
    std::uint64_t rounds = 0;
    unsigned seconds = 0;
    if (opt.has("rounds")) {
        rounds = parse_number(opt.get("rounds"), 1'000'000'000, "--rounds must be 1 or more");
        if (rounds == 0) throw usage_error("--rounds must be 1 or more");
    } else {
        seconds = parse_seconds(opt.get("measure"), "--measure");
    }

    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) fail_errno("socket");
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
        fail_errno("connect to " + opt.get("host") + " port " + std::to_string(ntohs(a.sin_port)));
    no_delay(fd);
    std::byte header[8];
    for (int i = 0; i < 8; ++i) header[i] = static_cast<std::byte>(std::uint64_t(length) >> (56 - 8 * i));
    send_all(fd, header, sizeof header);

    std::vector<std::byte> out(length), in(length);
    using clock = std::chrono::steady_clock;
    const auto start = clock::now();
    const auto end = start + std::chrono::seconds(seconds);
    std::uint64_t done = 0;
    for (std::uint64_t r = 1; seconds ? clock::now() < end : r <= rounds; ++r) {
        fill(out.data(), length, r);
        fill(in.data(), length, r + 0x5555);
        send_all(fd, out.data(), length);
        if (!recv_all(fd, in.data(), length)) throw std::runtime_error("the server closed after " + std::to_string(done) + " rounds");
        if (std::memcmp(out.data(), in.data(), length) != 0) {
            std::printf("vmrdma-check: FAIL: round %" PRIu64 ": the bytes came back different\n", r);
            ::close(fd);
            return 1;
        }
        done = r;
    }
    double s = std::chrono::duration<double>(clock::now() - start).count();
    ::close(fd);
    std::printf("vmrdma-check: OK: %" PRIu64 " rounds of %zu bytes sent, echoed and verified in %.1f s (%.1f rounds/s)\n",
                done, length, s, s > 0 ? double(done) / s : 0.0);
    return 0;
}

}  // namespace vmrdma::check
