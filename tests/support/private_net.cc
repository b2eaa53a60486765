#include "private_net.hpp"

#include <sched.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

namespace vmrdma::testing {

void run(const std::string& command) {
    std::string full = command + " 2>&1";
    FILE* p = popen(full.c_str(), "r");
    if (!p) throw std::runtime_error("cannot run: " + command);
    std::string out;
    char buf[256];
    while (std::fgets(buf, sizeof buf, p)) out += buf;
    int rc = pclose(p);
    if (rc != 0) throw std::runtime_error("command failed: " + command + "\n" + out);
}

std::string enter_private_netns() {
    static std::string result = [] {
        if (unshare(CLONE_NEWNET) != 0)
            return std::string("unshare(CLONE_NEWNET) failed: ") + std::strerror(errno) +
                   " (network tests need root, or CAP_SYS_ADMIN and CAP_NET_RAW)";
        try {
            run("ip link set lo up");
        } catch (const std::exception& e) {
            return std::string("iproute2's `ip` does not work here: ") + e.what();
        }
        return std::string();
    }();
    return result;
}

bool skip_network_tests() {
    std::string why = enter_private_netns();
    if (why.empty()) return false;
    const char* skip = std::getenv("VMRDMA_SKIP_NET_TESTS");
    if (skip && std::strcmp(skip, "1") == 0) {
        std::fprintf(stderr, "SKIPPED network test: %s\n", why.c_str());
        return true;
    }
    throw std::runtime_error(why + " — set VMRDMA_SKIP_NET_TESTS=1 to skip these tests instead");
}

veth_pair::veth_pair(const std::string& a_, const std::string& b_, unsigned mtu) : a(a_), b(b_) {
    run("ip link add " + a + " mtu " + std::to_string(mtu) + " type veth peer name " + b + " mtu " +
        std::to_string(mtu));
    run("ip link set " + a + " up");
    run("ip link set " + b + " up");
}

veth_pair::~veth_pair() {
    try {
        run("ip link del " + a);
    } catch (...) {
    }
}

}  // namespace vmrdma::testing
