// The driver-domain side of a `--transport unix` benchmark point: vmrdmad's
// daemon in a process of its own (as in a real deployment), owning the
// eth: device and serving the client process as a frontend. It runs until
// `stop_fd` becomes readable (or hangs up), and reports its own CPU time.
#pragma once

#include <functional>
#include <string>

#include "bench/support/child.hpp"
#include "vmrdma/rdma.hpp"

namespace vmrdma::bench {

// `engine` configures the daemon's own device (the bench passes the same
// options the in-process eth: path runs with: integrity, bundling); its loop
// polls for the longer of loop_opts.busy_poll and poll_us (vmrdmad --poll-us).
side_result daemon_side(const std::string& device_uri, const std::string& socket_path, int stop_fd,
                        const device_options& engine, const loop_options& loop_opts, unsigned poll_us,
                        const std::function<void()>& ready);

// vmrdmad's --poll-us when none is given.
unsigned default_daemon_poll_us();

}  // namespace vmrdma::bench
