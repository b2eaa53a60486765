#include "tools/faultrelay/relay_process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace vmrdma::faultrelay {

namespace {

// In the child between fork and exec: `what`, errno's description, exit.
// write() and strerrordesc_np() (a table lookup, no locale) are safe there.
[[noreturn]] void child_fails(const std::string& what) {
    const char* why = strerrordesc_np(errno);
    (void)!write(STDERR_FILENO, what.data(), what.size());
    (void)!write(STDERR_FILENO, ": ", 2);
    (void)!write(STDERR_FILENO, why, std::strlen(why));
    (void)!write(STDERR_FILENO, "\n", 1);
    _exit(127);
}

}  // namespace

relay_process::relay_process(const std::string& binary, const std::vector<std::string>& args,
                             const std::string& netns) {
    std::vector<std::string> words{binary};
    words.insert(words.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& w : words) argv.push_back(w.data());
    argv.push_back(nullptr);
    int ns = -1;
    if (!netns.empty()) {
        const std::string path = "/run/netns/" + netns;
        ns = open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (ns < 0) throw std::runtime_error("cannot open " + path + ": " + std::strerror(errno));
    }
    const std::string cannot_enter = "setns(" + netns + ")", cannot_run = "cannot run " + binary;
    int out[2];
    if (pipe2(out, O_CLOEXEC) != 0) {
        if (ns >= 0) close(ns);
        throw std::runtime_error(std::string("pipe failed: ") + std::strerror(errno));
    }
    pid_ = fork();
    if (pid_ == 0) {  // only async-signal-safe calls until exec
        dup2(out[1], STDOUT_FILENO);
        dup2(out[1], STDERR_FILENO);
        if (ns >= 0 && setns(ns, CLONE_NEWNET) != 0) child_fails(cannot_enter);
        execv(argv[0], argv.data());
        child_fails(cannot_run);
    }
    const int fork_errno = errno;
    if (ns >= 0) close(ns);
    close(out[1]);
    if (pid_ < 0) {
        close(out[0]);
        throw std::runtime_error(std::string("fork failed: ") + std::strerror(fork_errno));
    }
    fd_ = out[0];
    const std::string ready = "faultrelay: ready";
    std::size_t at;
    while ((at = out_.find(ready)) == std::string::npos || out_.find('\n', at) == std::string::npos) {
        if (!read_some()) {
            std::string why = out_;
            stop();
            throw std::runtime_error("the fault relay exited before it was ready:\n" + why);
        }
    }
    out_.erase(0, out_.find('\n', at) + 1);
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

std::string relay_process::snapshot() {
    const std::size_t from = out_.size();
    kill(pid_, SIGUSR1);
    auto lines = [&] { return std::count(out_.begin() + std::ptrdiff_t(from), out_.end(), '\n'); };
    while (lines() < 2 && read_some()) {
    }
    return out_.substr(from);
}

std::string relay_process::stop() {
    if (pid_ <= 0) return out_;
    kill(pid_, SIGTERM);
    while (read_some()) {
    }
    int status = 0;
    waitpid(pid_, &status, 0);
    exited_cleanly_ = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    pid_ = -1;
    close(fd_);
    fd_ = -1;
    return out_;
}

}  // namespace vmrdma::faultrelay
