#include "examples/support/tcp_stream.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <stdexcept>
#include <string>

namespace vmrdma::examples {

namespace {

[[noreturn]] void fail(const char* what) { throw std::runtime_error(std::string(what) + ": " + std::strerror(errno)); }

ssize_t receive_some(int fd, std::byte* p, std::size_t n, unsigned busy_poll_us) {
    if (busy_poll_us) {
        auto deadline = std::chrono::steady_clock::now() + std::chrono::microseconds(busy_poll_us);
        do {
            ssize_t k = ::recv(fd, p, n, MSG_DONTWAIT);
            if (k >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) return k;
        } while (std::chrono::steady_clock::now() < deadline);
    }
    return ::recv(fd, p, n, 0);
}

}  // namespace

void send_all(int fd, const std::byte* p, std::size_t n) {
    while (n > 0) {
        ssize_t k = ::send(fd, p, n, MSG_NOSIGNAL);
        if (k < 0) {
            if (errno == EINTR) continue;
            fail("send");
        }
        p += k;
        n -= static_cast<std::size_t>(k);
    }
}

bool recv_all(int fd, std::byte* p, std::size_t n, unsigned busy_poll_us) {
    std::size_t got = 0;
    while (got < n) {
        ssize_t k = receive_some(fd, p + got, n - got, busy_poll_us);
        if (k < 0) {
            if (errno == EINTR) continue;
            fail("recv");
        }
        if (k == 0) {
            if (got == 0) return false;
            throw std::runtime_error("the TCP peer closed in the middle of a message");
        }
        got += static_cast<std::size_t>(k);
    }
    return true;
}

void no_delay(int fd) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

}  // namespace vmrdma::examples
