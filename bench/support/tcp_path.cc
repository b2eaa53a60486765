#include "bench/support/tcp_path.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "examples/support/tcp_stream.hpp"

namespace vmrdma::bench {

namespace {

using clock_type = std::chrono::steady_clock;
using examples::no_delay;
using examples::recv_all;
using examples::send_all;

[[noreturn]] void fail(const char* what) { throw std::runtime_error(std::string(what) + ": " + std::strerror(errno)); }

sockaddr_in address_of(const std::string& ip) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(tcp_port);
    if (inet_pton(AF_INET, ip.c_str(), &a.sin_addr) != 1) throw std::runtime_error("bad address " + ip);
    return a;
}

double elapsed(clock_type::time_point t0) {
    return std::chrono::duration<double>(clock_type::now() - t0).count();
}

}  // namespace

side_result tcp_server(const std::string& address, const workload& w, const std::function<void()>& ready) {
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (ls < 0) fail("socket");
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    auto a = address_of(address);
    if (bind(ls, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) fail("bind");
    if (listen(ls, 1) != 0) fail("listen");
    ready();
    int fd = accept(ls, nullptr, nullptr);
    if (fd < 0) fail("accept");
    close(ls);
    no_delay(fd);
    std::vector<std::byte> buf(w.size);
    side_result r;
    double cpu0 = cpu_now();
    auto t0 = clock_type::now();
    if (w.kind == mode::read) {
        // The server is the data source: stream until the client hangs up.
        std::fill(buf.begin(), buf.end(), std::byte{0x5a});
        while (true) {
            ssize_t k = ::send(fd, buf.data(), buf.size(), MSG_NOSIGNAL);
            if (k <= 0) break;
            r.bytes += static_cast<double>(k);
        }
    } else {
        while (recv_all(fd, buf.data(), buf.size(), w.busy_poll_us)) {
            r.bytes += static_cast<double>(w.size);
            r.messages += 1;
            if (w.kind == mode::lat) send_all(fd, buf.data(), buf.size());
        }
    }
    r.seconds = elapsed(t0);
    r.cpu_seconds = cpu_now() - cpu0;
    close(fd);
    r.ok = true;
    return r;
}

side_result tcp_client(const std::string& server_address, const workload& w) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) fail("socket");
    auto a = address_of(server_address);
    if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) fail("connect");
    no_delay(fd);
    std::vector<std::byte> buf(w.size, std::byte{0xa5});
    std::vector<double> latencies;
    side_result r;
    double cpu0 = cpu_now();
    auto t0 = clock_type::now();
    std::uint64_t done = 0;
    auto more = [&] { return w.iterations ? done < w.iterations : elapsed(t0) < w.seconds; };
    while (more()) {
        if (w.kind == mode::lat) {
            auto s = clock_type::now();
            send_all(fd, buf.data(), buf.size());
            if (!recv_all(fd, buf.data(), buf.size(), w.busy_poll_us)) throw std::runtime_error("TCP server hung up");
            latencies.push_back(std::chrono::duration<double, std::micro>(clock_type::now() - s).count());
        } else if (w.kind == mode::read) {
            if (!recv_all(fd, buf.data(), buf.size(), w.busy_poll_us)) throw std::runtime_error("TCP server hung up");
        } else {
            send_all(fd, buf.data(), buf.size());
        }
        ++done;
    }
    r.seconds = elapsed(t0);
    r.cpu_seconds = cpu_now() - cpu0;
    r.messages = static_cast<double>(done);
    r.bytes = static_cast<double>(done) * static_cast<double>(w.size);
    summarize_latencies(latencies, r);
    shutdown(fd, SHUT_RDWR);
    close(fd);
    r.ok = true;
    return r;
}

}  // namespace vmrdma::bench
