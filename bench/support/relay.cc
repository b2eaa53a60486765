#include "bench/support/relay.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <sstream>
#include <stdexcept>
#include <vector>

#include "examples/support/netns_pair.hpp"

namespace vmrdma::bench {

relay_process::relay_process(const std::string& binary, const std::string& options, const std::string& netns,
                             const std::string& iface_a, const std::string& iface_b) {
    std::vector<std::string> args{binary};
    std::istringstream words(options);
    for (std::string w; words >> w;) args.push_back(w);
    args.push_back(iface_a);
    args.push_back(iface_b);
    int out[2];
    if (pipe2(out, O_CLOEXEC) != 0) throw std::runtime_error("pipe failed");
    std::fflush(stdout);
    std::fflush(stderr);
    pid_ = fork();
    if (pid_ < 0) throw std::runtime_error("fork failed");
    if (pid_ == 0) {
        dup2(out[1], STDOUT_FILENO);
        dup2(out[1], STDERR_FILENO);
        try {
            examples::netns_pair::enter(examples::netns_host{netns, "", ""});
        } catch (const std::exception& e) {
            std::fprintf(stderr, "%s\n", e.what());
            _exit(127);
        }
        std::vector<char*> argv;
        for (auto& a : args) argv.push_back(a.data());
        argv.push_back(nullptr);
        execv(binary.c_str(), argv.data());
        std::fprintf(stderr, "cannot run %s: %s\n", binary.c_str(), std::strerror(errno));
        _exit(127);
    }
    close(out[1]);
    fd_ = out[0];
    while (out_.find("faultrelay: ready") == std::string::npos) {
        if (!read_some()) {
            std::string why = out_;
            stop();
            throw std::runtime_error("the fault relay exited before it was ready:\n" + why);
        }
    }
    out_.clear();
}

relay_process::~relay_process() {
    if (pid_ > 0) stop();
}

bool relay_process::read_some() {
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, 10000) <= 0) return false;  // 10 s without a word: give up
    char buf[4096];
    ssize_t n = read(fd_, buf, sizeof buf);
    if (n <= 0) return false;
    out_.append(buf, static_cast<std::size_t>(n));
    return true;
}

std::string relay_process::stop() {
    if (pid_ <= 0) return out_;
    kill(pid_, SIGTERM);
    while (read_some()) {
    }
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
    close(fd_);
    fd_ = -1;
    return out_;
}

std::string find_relay(const std::string& given, const char* argv0) {
    if (!given.empty()) {
        if (access(given.c_str(), X_OK) != 0) throw std::runtime_error("--relay-bin " + given + " is not executable");
        return given;
    }
    std::string self = argv0;
    std::string dir = self.substr(0, self.rfind('/') + 1);  // "" when run from PATH
    std::vector<std::string> tries = {self + ".runfiles/vmrdma/tools/faultrelay/faultrelay",
                                      dir + "../tools/faultrelay/faultrelay"};
    if (const char* r = std::getenv("RUNFILES_DIR")) tries.insert(tries.begin(), std::string(r) + "/vmrdma/tools/faultrelay/faultrelay");
    for (auto& t : tries)
        if (access(t.c_str(), X_OK) == 0) return t;
    std::string where;
    for (auto& t : tries) where += "\n  " + t;
    throw std::runtime_error("cannot find tools/faultrelay (build it: bazel build //tools/faultrelay, or give "
                             "--relay-bin); looked at:" + where);
}

}  // namespace vmrdma::bench
