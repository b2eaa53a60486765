// The vmrdma side of a benchmark point: a server that registers memory and
// serves, and a client that drives writes, reads, sends or a write
// round-trip loop against it, over the eth: transport.
#pragma once

#include <functional>
#include <string>

#include "bench/support/child.hpp"
#include "bench/support/workload.hpp"
#include "vmrdma/rdma.hpp"
#include "vmrdma/runtime.hpp"

namespace vmrdma::bench {

// The device options a workload asks for (bundling, integrity): every
// vmrdma path of one run, the daemon's device included, opens with them.
device_options device_options_for(const workload& w);
// The loop options (busy polling): every vmrdma loop of a run, vmrdmad's too.
loop_options loop_options_for(const workload& w);

side_result vmrdma_server(const std::string& uri, const workload& w, const std::function<void()>& ready);
side_result vmrdma_client(const std::string& uri, const std::string& server_mac, const workload& w);

}  // namespace vmrdma::bench
