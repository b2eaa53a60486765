// Runs a function in a forked child and returns what it said: for tests
// that must give up a privilege (a capability, root) without giving it up
// for the rest of the test process.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <optional>
#include <string>

namespace vmrdma::testing {

// Runs `fn` (returning std::string) in a child process; its result, or
// nullopt when the child could not report (it died, or exited non-zero:
// `fn` may _exit(N) when a step before its work fails).
template <typename Fn>
std::optional<std::string> in_child(Fn fn) {
    int pipefd[2];
    if (pipe(pipefd) != 0) return std::nullopt;
    const pid_t child = fork();
    if (child < 0) return std::nullopt;
    if (child == 0) {
        close(pipefd[0]);
        const std::string result = fn();
        const bool written = write(pipefd[1], result.data(), result.size()) == static_cast<ssize_t>(result.size());
        _exit(written ? 0 : 4);
    }
    close(pipefd[1]);
    std::string result;
    char buf[512];
    for (ssize_t n; (n = read(pipefd[0], buf, sizeof buf)) > 0;) result.append(buf, static_cast<std::size_t>(n));
    close(pipefd[0]);
    int status = 0;
    if (waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status) != 0) return std::nullopt;
    return result;
}

}  // namespace vmrdma::testing
