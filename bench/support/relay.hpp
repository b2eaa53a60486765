// vmrdma-bench --relay: tools/faultrelay forwarding between the two hosts'
// namespaces (netns_pair relayed), so that vmrdma and TCP run through the
// same lossy, delayed or rate-limited link (docs/faultrelay.md).
#pragma once

#include <string>
#include <sys/types.h>

namespace vmrdma::bench {

class relay_process {
public:
    // Starts `binary options... relay_a relay_b` in namespace `netns` and
    // waits until it says it is ready; throws with its output otherwise.
    relay_process(const std::string& binary, const std::string& options, const std::string& netns,
                  const std::string& iface_a, const std::string& iface_b);
    ~relay_process();
    relay_process(const relay_process&) = delete;
    relay_process& operator=(const relay_process&) = delete;

    // SIGTERM; returns what it printed after "ready" (its final counters).
    std::string stop();

private:
    bool read_some();
    pid_t pid_ = -1;
    int fd_ = -1;
    std::string out_;
};

// The faultrelay binary: `given` if not empty, else next to this program in
// Bazel's runfiles or output tree; throws saying where it looked.
std::string find_relay(const std::string& given, const char* argv0);

}  // namespace vmrdma::bench
