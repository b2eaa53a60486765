// The TCP baseline of a benchmark point: the same transfers over a TCP
// socket on the same veth pair. Bandwidth modes stream messages of the
// workload's size (the receiver reads each whole message into its buffer);
// lat is a ping-pong of one message each way with TCP_NODELAY.
#pragma once

#include <functional>
#include <string>

#include "bench/support/child.hpp"
#include "bench/support/workload.hpp"

namespace vmrdma::bench {

constexpr unsigned short tcp_port = 18515;  // perftest's, inside our own namespaces

side_result tcp_server(const std::string& address, const workload& w, const std::function<void()>& ready);
side_result tcp_client(const std::string& server_address, const workload& w);

}  // namespace vmrdma::bench
