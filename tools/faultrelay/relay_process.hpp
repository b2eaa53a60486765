// tools/faultrelay run as a child process, for the programs that put it
// between two interfaces: tests/faults (in the test's own namespace) and
// vmrdma-bench --relay (in the relay namespace of a netns_pair). Its stdout
// and stderr come back through a pipe.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace vmrdma::faultrelay {

class relay_process {
public:
    // Starts `binary args...` (in the named network namespace, /run/netns/NAME,
    // unless `netns` is empty) and waits until it says it is ready; throws
    // std::runtime_error with what it printed otherwise. Between fork and
    // exec the child makes only async-signal-safe calls, so the caller may
    // have other threads.
    relay_process(const std::string& binary, const std::vector<std::string>& args, const std::string& netns = "");
    ~relay_process();
    relay_process(const relay_process&) = delete;
    relay_process& operator=(const relay_process&) = delete;

    // Asks for a stats line per direction without stopping (SIGUSR1) and
    // returns them once printed.
    std::string snapshot();

    // SIGTERM; returns what it printed after "ready" (its final counters
    // last). Again after the first: the same text.
    std::string stop();

    // After stop(): whether it exited with status 0 (and so printed its final counters).
    bool exited_cleanly() const { return exited_cleanly_; }

private:
    bool read_some();
    pid_t pid_ = -1;
    int fd_ = -1;
    std::string out_;
    bool exited_cleanly_ = false;
};

}  // namespace vmrdma::faultrelay
