#include "netns_pair.hpp"

#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

namespace vmrdma::examples {

void run_command(const std::string& command) {
    std::string full = command + " 2>&1";
    FILE* p = popen(full.c_str(), "r");
    if (!p) throw std::runtime_error("cannot run `" + command + "`");
    std::string out;
    char buf[256];
    while (std::fgets(buf, sizeof buf, p)) out += buf;
    if (pclose(p) != 0) throw std::runtime_error("`" + command + "` failed: " + out);
}

netns_pair::netns_pair(const std::string& prefix, unsigned mtu, bool relayed) {
    std::string tag = prefix + "-" + std::to_string(getpid());
    a_ = {tag + "-a", "vmrdma-a", "02:76:6d:72:00:0a"};
    b_ = {tag + "-b", "vmrdma-b", "02:76:6d:72:00:0b"};
    try {
        run_command("ip netns add " + a_.netns);
        made_a_ = true;
        run_command("ip netns add " + b_.netns);
        made_b_ = true;
        std::string m = " mtu " + std::to_string(mtu);
        if (relayed) {
            relay_ = tag + "-r";
            run_command("ip netns add " + relay_);
            made_r_ = true;
            run_command("ip link add " + a_.ifname + " netns " + a_.netns + m + " address " + a_.mac +
                        " type veth peer name " + relay_a + " netns " + relay_ + m);
            run_command("ip link add " + b_.ifname + " netns " + b_.netns + m + " address " + b_.mac +
                        " type veth peer name " + relay_b + " netns " + relay_ + m);
            for (const char* r : {relay_a, relay_b})
                run_command("ip -n " + relay_ + " link set " + r + " up");
        } else {
            run_command("ip link add " + a_.ifname + " netns " + a_.netns + m + " address " + a_.mac +
                        " type veth peer name " + b_.ifname + " netns " + b_.netns + m + " address " +
                        b_.mac);
        }
        for (const auto* h : {&a_, &b_}) {
            run_command("ip -n " + h->netns + " link set lo up");
            run_command("ip -n " + h->netns + " link set " + h->ifname + " up");
        }
    } catch (...) {
        this->~netns_pair();
        throw;
    }
}

netns_pair::~netns_pair() {
    // Deleting a namespace also deletes the veth end inside it, and with it
    // the pair.
    if (made_a_) {
        made_a_ = false;
        try {
            run_command("ip netns del " + a_.netns);
        } catch (...) {
        }
    }
    if (made_b_) {
        made_b_ = false;
        try {
            run_command("ip netns del " + b_.netns);
        } catch (...) {
        }
    }
    if (made_r_) {
        made_r_ = false;
        try {
            run_command("ip netns del " + relay_);
        } catch (...) {
        }
    }
}

std::size_t parse_size(const std::string& text, unsigned long long max, const std::string& what) {
    char* end = nullptr;
    unsigned long long v = std::strtoull(text.c_str(), &end, 10);
    std::string suffix = end ? end : "";
    if (suffix == "K" || suffix == "k") v <<= 10;
    else if (suffix == "M" || suffix == "m") v <<= 20;
    else if (!suffix.empty()) v = 0;
    if (v == 0 || v > max) throw std::runtime_error(what + ", got " + text);
    return static_cast<std::size_t>(v);
}

void netns_pair::enter(const netns_host& host) {
    std::string path = "/run/netns/" + host.netns;
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw std::runtime_error("cannot open " + path + ": " + std::strerror(errno));
    int rc = setns(fd, CLONE_NEWNET);
    int err = errno;
    close(fd);
    if (rc != 0) throw std::runtime_error("setns(" + host.netns + "): " + std::strerror(err));
}

}  // namespace vmrdma::examples
