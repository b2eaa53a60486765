// private_net: moves the test process into a network namespace of its own
// (unshare(CLONE_NEWNET)) and creates veth pairs there. Everything vanishes
// with the process, so nothing leaks even when a test crashes. Without the
// privilege (CAP_SYS_ADMIN, CAP_NET_RAW) the tests fail with the reason,
// unless VMRDMA_SKIP_NET_TESTS=1 asks to skip them, which they then say.
#pragma once

#include <string>

namespace vmrdma::testing {

// Returns an empty string when the process now has a private network
// namespace with `ip` usable, or the reason it has not.
std::string enter_private_netns();

// True (after printing why) when network tests should be skipped.
bool skip_network_tests();

struct veth_pair {
    std::string a, b;
    // Creates a<->b with the given MTU, both up. Throws std::runtime_error.
    veth_pair(const std::string& a, const std::string& b, unsigned mtu);
    ~veth_pair();
    veth_pair(const veth_pair&) = delete;
    veth_pair& operator=(const veth_pair&) = delete;
};

// Runs a shell command; throws std::runtime_error with its output on failure.
void run(const std::string& command);

}  // namespace vmrdma::testing
