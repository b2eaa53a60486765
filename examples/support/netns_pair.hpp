// netns_pair: two named network namespaces joined by a veth pair, made with
// iproute2 and removed again by the destructor (also after a failure or a
// Ctrl-C caught by the caller). Used by examples and benchmarks that run a
// server and a client on "two hosts" of one machine.
#pragma once

#include <string>

namespace vmrdma::examples {

struct netns_host {
    std::string netns;   // e.g. vmrdma-qs-1234-a
    std::string ifname;  // its end of the veth pair
    std::string mac;     // fixed, locally administered
};

class netns_pair {
public:
    // Throws std::runtime_error saying which command failed and why.
    netns_pair(const std::string& prefix, unsigned mtu);
    ~netns_pair();
    netns_pair(const netns_pair&) = delete;
    netns_pair& operator=(const netns_pair&) = delete;

    const netns_host& a() const noexcept { return a_; }
    const netns_host& b() const noexcept { return b_; }

    // Moves the calling process (a forked child) into a host's namespace.
    static void enter(const netns_host& host);

private:
    netns_host a_, b_;
    bool made_a_ = false, made_b_ = false;
};

// Runs a command through the shell; throws with its output when it fails.
void run_command(const std::string& command);

}  // namespace vmrdma::examples
