// What makes vmrdma-bench's paths comparable, measured and said in its
// output: what each path keeps in flight and where it counts a message.
#pragma once

#include <string>

#include "bench/support/workload.hpp"

namespace vmrdma::bench {

// TCP's in-flight budget: the kernel's autotuning limits of the socket
// buffers (net.ipv4.tcp_wmem / tcp_rmem: min, default, max bytes) in the
// namespace the TCP client runs in. 0 where they could not be read.
struct tcp_buffers {
    long wmem_default = 0, wmem_max = 0;
    long rmem_default = 0, rmem_max = 0;
};

tcp_buffers tcp_budget(const std::string& netns);

// One paragraph for the table's foot and stderr.
std::string fairness_statement(const workload& w, const tcp_buffers& b);

}  // namespace vmrdma::bench
