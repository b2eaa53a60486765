// netns_pair: two named network namespaces joined by a veth pair, made with
// iproute2 and removed again by the destructor (also after a failure or a
// Ctrl-C caught by the caller). Used by examples and benchmarks that run a
// server and a client on "two hosts" of one machine.
#pragma once

#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <exception>
#include <stdexcept>
#include <string>

namespace vmrdma::examples {

struct netns_host {
    std::string netns;   // e.g. vmrdma-qs-1234-a
    std::string ifname;  // its end of the veth pair
    std::string mac;     // fixed, locally administered
};

class netns_pair {
public:
    // Throws std::runtime_error saying which command failed and why. With
    // `relayed`, a and b are not joined directly: each has a veth pair to a
    // third namespace (relay(), interfaces relay_a and relay_b), where a
    // program such as tools/faultrelay forwards between them.
    netns_pair(const std::string& prefix, unsigned mtu, bool relayed = false);
    ~netns_pair();
    netns_pair(const netns_pair&) = delete;
    netns_pair& operator=(const netns_pair&) = delete;

    const netns_host& a() const noexcept { return a_; }
    const netns_host& b() const noexcept { return b_; }
    const std::string& relay() const noexcept { return relay_; }  // empty unless relayed
    static constexpr const char* relay_a = "vmrdma-ra";
    static constexpr const char* relay_b = "vmrdma-rb";

    // Moves the calling process (a forked child) into a host's namespace.
    static void enter(const netns_host& host);

private:
    netns_host a_, b_;
    std::string relay_;
    bool made_a_ = false, made_b_ = false, made_r_ = false;
};

// Runs a command through the shell; throws with its output when it fails.
void run_command(const std::string& command);

// Runs fn() in a forked child inside `host`'s namespace and returns the
// child's pid; the child exits with fn's return value (1 if it threw, after
// printing why). The child takes the default SIGINT/SIGTERM handling back.
template <typename Fn>
pid_t spawn_in(const netns_host& host, Fn fn) {
    std::fflush(stdout);
    std::fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) throw std::runtime_error("fork failed");
    if (pid > 0) return pid;
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    int rc = 1;
    try {
        netns_pair::enter(host);
        rc = fn();
    } catch (const std::exception& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
    }
    std::fflush(stdout);
    std::fflush(stderr);
    _exit(rc);
}

// "65536", "64K", "16M": a byte count between 1 and max; throws
// std::runtime_error naming `what` otherwise.
std::size_t parse_size(const std::string& text, unsigned long long max, const std::string& what);

}  // namespace vmrdma::examples
