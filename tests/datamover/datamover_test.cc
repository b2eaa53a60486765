// End-to-end tests of `datamover serve` / `datamover send` over a veth pair in
// the test's own network namespace: a varied tree copied bit-exact with its
// modes, resumption after killing the sender or the receiver mid-transfer, a
// full disk (a small tmpfs in the test's own mount namespace) and an
// unwritable destination giving clear errors.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/capability.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/private_net.hpp"

using namespace std::chrono_literals;
using vmrdma::testing::run;

namespace {

const char* binary = "examples/datamover/datamover";

std::string slurp(const std::string& path) {
    std::ifstream f(path);
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
}

struct net {
    vmrdma::testing::veth_pair pair{"dmv0", "dmv1", 9000};
    // (Not /sys/class/net: sysfs shows the namespace it was mounted in.)
    std::string mac0 = [] {
        FILE* p = popen("ip -br link show dmv0", "r");
        char name[64] = {}, state[64] = {}, mac[64] = {};
        if (!p || std::fscanf(p, "%63s %63s %63s", name, state, mac) != 3) throw std::runtime_error("no MAC for dmv0");
        pclose(p);
        return std::string(mac);
    }();
};

std::string scratch() {
    const char* base = std::getenv("TEST_TMPDIR");
    std::string tmpl = std::string(base ? base : "/tmp") + "/dm-XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    if (!mkdtemp(buf.data())) throw std::runtime_error("mkdtemp failed");
    return buf.data();
}

// Runs the binary with `args`; stdout and stderr go to `log`.
pid_t spawn(const std::vector<std::string>& args, const std::string& log, bool drop_dac = false) {
    pid_t pid = fork();
    if (pid != 0) return pid;
    int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    if (drop_dac) {
        // Root without these capabilities is bound by file permissions.
        for (int cap : {CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER}) prctl(PR_CAPBSET_DROP, cap, 0, 0, 0);
    }
    std::vector<char*> argv{const_cast<char*>(binary)};
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(binary, argv.data());
    _exit(127);
}

// Exit status, or -1 after killing it when it overran `limit`.
int wait_exit(pid_t pid, std::chrono::seconds limit = 120s) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    for (;;) {
        int st = 0;
        if (waitpid(pid, &st, WNOHANG) == pid) return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        if (std::chrono::steady_clock::now() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            return -1;
        }
        std::this_thread::sleep_for(5ms);
    }
}

void wait_listening(const std::string& log) {
    for (int i = 0; i < 400; ++i) {
        if (slurp(log).find("listening") != std::string::npos) return;
        std::this_thread::sleep_for(10ms);
    }
    FAIL("the receiver did not start: " << slurp(log));
}

std::uint64_t field(const std::string& log, const std::string& name) {
    auto at = log.rfind("summary:");
    REQUIRE(at != std::string::npos);
    auto p = log.find(" " + name + "=", at);
    REQUIRE(p != std::string::npos);
    return std::strtoull(log.c_str() + p + name.size() + 2, nullptr, 10);
}

void make_file(const std::string& path, std::size_t size, unsigned seed, const char* mode) {
    run("head -c " + std::to_string(size) + " /dev/urandom > '" + path + "' && chmod " + mode + " '" + path + "'");
    (void)seed;
}

// Contents, modes, sizes and mtimes of two trees, compared.
void check_same_tree(const std::string& a, const std::string& b) {
    run("diff -r '" + a + "' '" + b + "'");
    run("cd '" + a + "' && find . -printf '%P %y %m %s %T@\\n' | sort > /tmp/dm-list-a.$$ && cd '" + b +
        "' && find . -printf '%P %y %m %s %T@\\n' | sort > /tmp/dm-list-b.$$ && cmp /tmp/dm-list-a.$$ /tmp/dm-list-b.$$; "
        "rc=$?; rm -f /tmp/dm-list-a.$$ /tmp/dm-list-b.$$; exit $rc");
}

}  // namespace

TEST_CASE("a varied tree is copied bit-exact with modes and mtimes") {
    if (vmrdma::testing::skip_network_tests()) return;
    net n;
    auto dir = scratch();
    std::string src = dir + "/tree";
    run("mkdir -p '" + src + "/a/b/c' '" + src + "/empty-dir'");
    make_file(src + "/zero", 0, 1, "600");
    make_file(src + "/one", 1, 2, "644");
    make_file(src + "/a/few-kib", 5000, 3, "755");
    make_file(src + "/a/b/several-mib", (7u << 20) + 123, 4, "640");
    make_file(src + "/a/b/c/big", 64u << 20, 5, "444");
    make_file(src + "/a/b/c/exact-chunk", 1u << 20, 6, "644");
    run("ln -s a/few-kib '" + src + "/link' && chmod 750 '" + src + "/a/b' && touch -d '2001-02-03 04:05:06' '" + src +
        "/one' '" + src + "/a/b/c'");

    std::string slog = dir + "/serve.log", clog = dir + "/send.log";
    pid_t srv = spawn({"serve", "--device", "eth:dmv0", "--dest", dir + "/dst", "--once"}, slog);
    wait_listening(slog);
    pid_t cli = spawn({"send", "--device", "eth:dmv1", "--peer", n.mac0, src}, clog);
    int crc = wait_exit(cli);
    int src_rc = wait_exit(srv, 20s);
    INFO("send: " << slurp(clog) << "\nserve: " << slurp(slog));
    REQUIRE(crc == 0);
    REQUIRE(src_rc == 0);
    check_same_tree(src, dir + "/dst/tree");
    auto log = slurp(clog);
    CHECK(field(log, "files_verified") == 6);
    CHECK(field(log, "bytes_sent") == field(log, "bytes_total"));
    CHECK(field(log, "chunks_skipped") == 0);
    run("rm -rf '" + dir + "'");
}

TEST_CASE("killing the sender or the receiver mid-transfer; the rerun sends only the rest") {
    if (vmrdma::testing::skip_network_tests()) return;
    net n;
    auto dir = scratch();
    std::string src = dir + "/data";
    run("mkdir -p '" + src + "'");
    make_file(src + "/big1", 40u << 20, 7, "644");
    make_file(src + "/big2", 24u << 20, 8, "600");
    const std::uint64_t total = 64u << 20;
    std::string slog = dir + "/serve.log", clog = dir + "/send.log";
    std::vector<std::string> serve = {"serve", "--device", "eth:dmv0", "--dest", dir + "/dst", "--idle-timeout", "5"};
    std::vector<std::string> send = {"send", "--device", "eth:dmv1", "--peer", n.mac0, src};
    auto slow = send;
    slow.insert(slow.begin() + 1, {"--limit-rate", "16M"});

    // 1. The sender dies (SIGKILL) after about a second; the receiver keeps
    // serving, and the next sender supersedes the dead one's session.
    pid_t srv = spawn(serve, slog);
    wait_listening(slog);
    pid_t cli = spawn(slow, clog);
    std::this_thread::sleep_for(1500ms);
    kill(cli, SIGKILL);
    REQUIRE(wait_exit(cli) == 128 + SIGKILL);
    cli = spawn(send, clog);
    int rc = wait_exit(cli);
    auto log = slurp(clog);
    INFO("send after the sender was killed: " << log << "\nserve: " << slurp(slog));
    REQUIRE(rc == 0);
    CHECK(field(log, "bytes_total") == total);
    CHECK(field(log, "chunks_skipped") >= 8);
    CHECK(field(log, "bytes_sent") + field(log, "bytes_skipped") == total);
    CHECK(field(log, "bytes_sent") < total - (8u << 20));
    check_same_tree(src, dir + "/dst/data");

    // 2. The receiver dies mid-transfer (to a fresh destination): the sender
    // reports the lost peer; rerunning both resumes.
    kill(srv, SIGTERM);
    wait_exit(srv, 10s);
    run("rm -rf '" + dir + "/dst'");
    srv = spawn(serve, slog);
    wait_listening(slog);
    cli = spawn(slow, clog);
    std::this_thread::sleep_for(1500ms);
    kill(srv, SIGKILL);
    REQUIRE(wait_exit(srv) == 128 + SIGKILL);
    CHECK(wait_exit(cli, 60s) == 4);
    log = slurp(clog);
    CHECK(log.find("lost the receiver") != std::string::npos);
    srv = spawn(serve, slog);
    wait_listening(slog);
    cli = spawn(send, clog);
    REQUIRE(wait_exit(cli) == 0);
    log = slurp(clog);
    INFO("send after the receiver was killed: " << log);
    CHECK(field(log, "chunks_skipped") >= 8);
    CHECK(field(log, "bytes_sent") + field(log, "bytes_skipped") == total);
    check_same_tree(src, dir + "/dst/data");
    kill(srv, SIGTERM);
    wait_exit(srv, 10s);
    run("find '" + dir + "/dst' -name '*.dm*' | wc -l | grep -qx 0");  // no leftovers
    run("rm -rf '" + dir + "'");
}

TEST_CASE("a full disk gives a clear ENOSPC error naming the file") {
    if (vmrdma::testing::skip_network_tests()) return;
    // A private mount namespace: the small tmpfs exists only for this test.
    REQUIRE(unshare(CLONE_NEWNS) == 0);
    REQUIRE(mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) == 0);
    net n;
    auto dir = scratch();
    run("mkdir -p '" + dir + "/small' '" + dir + "/src'");
    REQUIRE(mount("tmpfs", (dir + "/small").c_str(), "tmpfs", 0, "size=8m") == 0);
    make_file(dir + "/src/fits", 1u << 20, 9, "644");
    make_file(dir + "/src/toobig", 16u << 20, 10, "644");
    std::string slog = dir + "/serve.log", clog = dir + "/send.log";
    pid_t srv = spawn({"serve", "--device", "eth:dmv0", "--dest", dir + "/small/dst", "--once"}, slog);
    wait_listening(slog);
    pid_t cli = spawn({"send", "--device", "eth:dmv1", "--peer", n.mac0, dir + "/src"}, clog);
    int crc = wait_exit(cli);
    int src_rc = wait_exit(srv, 20s);
    auto log = slurp(clog), slog_text = slurp(slog);
    INFO("send: " << log << "\nserve: " << slog_text);
    CHECK(crc == 3);
    CHECK(src_rc == 3);
    CHECK(log.find("No space left on device") != std::string::npos);
    CHECK(log.find("src/toobig") != std::string::npos);
    CHECK(slog_text.find("No space left on device") != std::string::npos);
    umount((dir + "/small").c_str());
    run("rm -rf '" + dir + "'");
}

TEST_CASE("an unwritable destination is refused with a clear error") {
    if (vmrdma::testing::skip_network_tests()) return;
    auto dir = scratch();
    run("mkdir -p '" + dir + "/ro' && chmod 555 '" + dir + "/ro'");
    std::string slog = dir + "/serve.log";
    pid_t srv = spawn({"serve", "--device", "eth:lo", "--dest", dir + "/ro", "--once"}, slog, true);
    CHECK(wait_exit(srv, 20s) == 3);
    auto text = slurp(slog);
    INFO(text);
    CHECK(text.find("not writable: Permission denied") != std::string::npos);
    run("rm -rf '" + dir + "'");
}

TEST_CASE("an unreachable receiver is reported as such") {
    if (vmrdma::testing::skip_network_tests()) return;
    net n;
    auto dir = scratch();
    make_file(dir + "/f", 1000, 11, "644");
    std::string clog = dir + "/send.log";
    pid_t cli = spawn({"send", "--device", "eth:dmv1", "--peer", n.mac0, "--connect-timeout", "3", dir + "/f"}, clog);
    CHECK(wait_exit(cli, 30s) == 4);
    auto text = slurp(clog);
    INFO(text);
    CHECK(text.find("cannot reach a datamover receiver") != std::string::npos);
    run("rm -rf '" + dir + "'");
}

TEST_CASE("--connect-timeout (fractions allowed) is how long the sender waits for a receiver to listen") {
    if (vmrdma::testing::skip_network_tests()) return;
    net n;
    auto dir = scratch();
    make_file(dir + "/f", 3u << 20, 12, "644");
    std::string slog = dir + "/serve.log", clog = dir + "/send.log";
    // No receiver for 2.5 s: longer than one connect's own retries.
    auto t0 = std::chrono::steady_clock::now();
    pid_t cli = spawn({"send", "--device", "eth:dmv1", "--peer", n.mac0, "--connect-timeout", "10.5", dir + "/f"}, clog);
    std::this_thread::sleep_for(2500ms);
    pid_t srv = spawn({"serve", "--device", "eth:dmv0", "--dest", dir + "/dst", "--once"}, slog);
    int rc = wait_exit(cli, 60s);
    INFO(slurp(clog) << "\nserve: " << slurp(slog));
    CHECK(rc == 0);
    CHECK(std::chrono::steady_clock::now() - t0 >= 2500ms);
    CHECK(wait_exit(srv, 20s) == 0);
    run("cmp '" + dir + "/f' '" + dir + "/dst/f'");
    // With nobody listening it gives up when the time is up, not before.
    t0 = std::chrono::steady_clock::now();
    cli = spawn({"send", "--device", "eth:dmv1", "--peer", n.mac0, "--connect-timeout", "2.5", dir + "/f"}, clog);
    CHECK(wait_exit(cli, 30s) == 4);
    CHECK(std::chrono::steady_clock::now() - t0 >= 2400ms);
    CHECK(slurp(clog).find("no listener") != std::string::npos);
    run("rm -rf '" + dir + "'");
}

TEST_CASE("SIGINT stops the sender with a message and exit 130; the rerun sends only the rest") {
    if (vmrdma::testing::skip_network_tests()) return;
    net n;
    auto dir = scratch();
    std::string src = dir + "/data";
    run("mkdir -p '" + src + "'");
    make_file(src + "/big", 48u << 20, 13, "644");
    std::string slog = dir + "/serve.log", clog = dir + "/send.log";
    pid_t srv = spawn({"serve", "--device", "eth:dmv0", "--dest", dir + "/dst", "--idle-timeout", "5"}, slog);
    wait_listening(slog);
    pid_t cli = spawn({"send", "--limit-rate", "16M", "--device", "eth:dmv1", "--peer", n.mac0, src}, clog);
    std::this_thread::sleep_for(1500ms);
    kill(cli, SIGINT);
    int rc = wait_exit(cli, 30s);
    auto log = slurp(clog);
    INFO(log);
    CHECK(rc == 130);
    CHECK(log.find("Interrupt") != std::string::npos);
    CHECK(log.find("rerun the same command") != std::string::npos);
    cli = spawn({"send", "--device", "eth:dmv1", "--peer", n.mac0, src}, clog);
    REQUIRE(wait_exit(cli) == 0);
    log = slurp(clog);
    INFO("rerun: " << log);
    CHECK(field(log, "chunks_skipped") >= 8);
    check_same_tree(src, dir + "/dst/data");
    kill(srv, SIGTERM);
    wait_exit(srv, 10s);
    run("rm -rf '" + dir + "'");
}
