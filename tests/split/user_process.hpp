// tests/split/uid_user run as a process of its own, for the split tests that
// need another (unprivileged) user of vmrdmad. A fresh process, not a fork
// that goes on running: the test has other threads (the daemon's, the
// peer's), and a forked child inherited a lock one of them held (the ASan
// allocator's) and hung. Between fork and exec the child makes only
// async-signal-safe calls.
#pragma once

#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "tests/support/runfile.hpp"

namespace split_test {

// uid_user as `uid` with these arguments (a subcommand and its own). It
// writes one result line, then holds what it took until the object goes
// (its stdin closes) or kill() ends it.
struct user_process {
    pid_t pid = -1;
    int result = -1;   // read end: the user's stdout
    int release = -1;  // write end: the user's stdin; closing it lets the user go
    std::string line;  // the first line it wrote, without the newline

    user_process(uid_t uid, std::vector<std::string> args) {
        args.insert(args.begin(), {vmrdma::testing::runfile("tests/split/uid_user"), std::to_string(uid)});
        std::vector<char*> argv;
        for (auto& a : args) argv.push_back(a.data());
        argv.push_back(nullptr);
        int res[2], rel[2];
        REQUIRE(pipe2(res, O_CLOEXEC) == 0);
        REQUIRE(pipe2(rel, O_CLOEXEC) == 0);
        pid = fork();
        REQUIRE(pid >= 0);
        if (pid == 0) {  // only async-signal-safe calls until exec
            dup2(rel[0], 0);
            dup2(res[1], 1);
            execv(argv[0], argv.data());
            _exit(127);
        }
        ::close(res[1]);
        ::close(rel[0]);
        result = res[0];
        release = rel[1];
        char buf[512];
        ssize_t n;
        while ((n = ::read(result, buf, sizeof buf)) > 0) {
            line.append(buf, static_cast<std::size_t>(n));
            if (line.find('\n') != std::string::npos) break;
        }
        line = line.substr(0, line.find('\n'));
    }
    ~user_process() {
        if (pid <= 0) return;
        const int st = wait();
        // Released, it exits (1 after an error line); a signal means it
        // crashed or a sanitizer aborted it.
        CHECK_MESSAGE(!WIFSIGNALED(st), "uid_user died of signal " << WTERMSIG(st));
    }
    user_process(const user_process&) = delete;
    user_process& operator=(const user_process&) = delete;

    // Sends `sig` and returns the wait status; the pipes are closed too.
    int kill(int sig) {
        ::kill(pid, sig);
        return wait();
    }

private:
    int wait() {
        ::close(release);
        ::close(result);
        int st = 0;
        waitpid(pid, &st, 0);
        pid = -1;
        return st;
    }
};

}  // namespace split_test
