// tcp_stream: whole messages over a connected TCP socket, for the TCP
// baselines that run beside vmrdma (vmrdma-check tcp-serve/tcp-client,
// vmrdma-bench's tcp path). Errors throw std::runtime_error naming the call
// and errno's text.
#pragma once

#include <cstddef>

namespace vmrdma::examples {

// Sends all n bytes.
void send_all(int fd, const std::byte* p, std::size_t n);

// Receives exactly n bytes; false at a clean end of stream before the first
// one (an end after it throws). busy_poll_us > 0: spins on non-blocking
// receives that long before each blocking one (the busy polling vmrdma's
// loop can do).
bool recv_all(int fd, std::byte* p, std::size_t n, unsigned busy_poll_us = 0);

// TCP_NODELAY: each message leaves at once (request/response rounds).
void no_delay(int fd);

}  // namespace vmrdma::examples
