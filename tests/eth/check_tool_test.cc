// vmrdma-check (examples/vmrdma_check.cc), the binary the Xen harness runs,
// on eth: across a veth pair whose ends are in two network namespaces: the
// server in the test's private namespace, the client in another one (as on
// two hosts). Its READY line feeds the clients' arguments, as in
// tests/xen/dom0_init.sh.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "tests/support/private_net.hpp"
#include "tests/support/runfile.hpp"

namespace {

std::string check_binary() { return vmrdma::testing::runfile("examples/vmrdma-check"); }

// A child that sits in a network namespace of its own until killed.
struct other_netns {
    pid_t holder = -1;
    other_netns() {
        int p[2];
        REQUIRE(pipe(p) == 0);
        holder = fork();
        REQUIRE(holder >= 0);
        if (holder == 0) {
            close(p[0]);
            char ok = unshare(CLONE_NEWNET) == 0 ? 'y' : 'n';
            if (write(p[1], &ok, 1) != 1) _exit(1);
            for (;;) pause();
        }
        close(p[1]);
        char ok = 0;
        REQUIRE(read(p[0], &ok, 1) == 1);
        close(p[0]);
        REQUIRE(ok == 'y');
    }
    ~other_netns() {
        kill(holder, SIGKILL);
        waitpid(holder, nullptr, 0);
    }
    std::string path() const { return "/proc/" + std::to_string(holder) + "/ns/net"; }
};

// Starts vmrdma-check with `args`, optionally inside the namespace at
// `netns` after bringing `ifname` up there (and giving it `address`, if
// any); its stdout (and stderr when `merge`) comes back through the
// returned descriptor.
pid_t start(const std::vector<std::string>& args, int& out_fd, const std::string& netns = {},
            const std::string& ifname = {}, bool merge = true, const std::string& address = {}) {
    int p[2];
    REQUIRE(pipe(p) == 0);
    std::string bin = check_binary();
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        close(p[0]);
        if (!netns.empty()) {
            int fd = open(netns.c_str(), O_RDONLY | O_CLOEXEC);
            if (fd < 0 || setns(fd, CLONE_NEWNET) != 0) _exit(120);
            if (std::system(("ip link set " + ifname + " up").c_str()) != 0) _exit(121);
            if (!address.empty() &&
                std::system(("ip addr replace " + address + " dev " + ifname).c_str()) != 0)
                _exit(122);
        }
        dup2(p[1], 1);
        if (merge) dup2(p[1], 2);
        close(p[1]);
        std::vector<char*> argv{bin.data()};
        std::vector<std::string> copy = args;
        for (auto& a : copy) argv.push_back(a.data());
        argv.push_back(nullptr);
        execv(bin.c_str(), argv.data());
        _exit(127);
    }
    close(p[1]);
    out_fd = p[0];
    return pid;
}

// Reads until `done(text)` or EOF or `ms` pass.
std::string read_until(int fd, int ms, bool (*done)(const std::string&)) {
    std::string text;
    for (int waited = 0; waited < ms && !done(text);) {
        pollfd pfd{fd, POLLIN, 0};
        int n = poll(&pfd, 1, 100);
        if (n == 0) {
            waited += 100;
            continue;
        }
        char buf[4096];
        ssize_t got = read(fd, buf, sizeof buf);
        if (got <= 0) break;
        text.append(buf, static_cast<std::size_t>(got));
    }
    return text;
}

bool has_ready_line(const std::string& t) { return t.find('\n') != std::string::npos; }
bool never(const std::string&) { return false; }

struct result {
    int exit_code = -1;
    std::string output;
};

result run_client(const std::vector<std::string>& args, const std::string& netns, const std::string& ifname,
                  const std::string& address = {}) {
    int fd = -1;
    pid_t pid = start(args, fd, netns, ifname, true, address);
    result r;
    r.output = read_until(fd, 60'000, never);
    close(fd);
    int status = 0;
    waitpid(pid, &status, 0);
    r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    MESSAGE("client exit " << r.exit_code << ":\n" << r.output);
    return r;
}

// Signals a background vmrdma-check and returns how it ended.
int stop_child(pid_t pid, int sig) {
    kill(pid, sig);
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

}  // namespace

TEST_CASE("vmrdma-check: serve on one host, client on another: OK, a bad key FAILs, SIGTERM exits 0") {
    if (vmrdma::testing::skip_network_tests()) return;
    alarm(150);
    vmrdma::testing::veth_pair veth("vck-a", "vck-b", 1500);
    other_netns host_b;
    vmrdma::testing::run("ip link set vck-b netns " + std::to_string(host_b.holder));

    int serve_out = -1;
    pid_t server = start({"serve", "--device", "eth:vck-a", "--ep", "3", "--size", "256K", "--name", "check-srv"},
                         serve_out, {}, {}, false);
    std::string ready = read_until(serve_out, 10'000, has_ready_line);
    MESSAGE("server: " << ready);
    REQUIRE(ready.rfind("READY ", 0) == 0);
    std::map<std::string, std::string> field;
    std::istringstream words(ready.substr(6));
    for (std::string w; words >> w;)
        if (auto eq = w.find('='); eq != std::string::npos) field[w.substr(0, eq)] = w.substr(eq + 1);
    CHECK(field["ep"] == "3");
    CHECK(field["size"] == "262144");
    CHECK(field["mac"].size() == 17);
    CHECK(field["rkey"].rfind("0x", 0) == 0);

    auto client_args = [&](const std::string& rkey, const std::string& rounds) {
        return std::vector<std::string>{"client", "--device", "eth:vck-b",   "--peer", field["mac"], "--peer-ep",
                                        field["ep"], "--rkey", rkey, "--size", field["size"], "--rounds", rounds};
    };
    const std::string ok3 =
        "vmrdma-check: OK: 3 rounds of 262136 bytes written, read back and verified; fetch_add ok";
    auto r = run_client(client_args(field["rkey"], "3"), host_b.path(), "vck-b");
    CHECK(r.exit_code == 0);
    CHECK(r.output.find(ok3) != std::string::npos);
    CHECK(r.output.find("vmrdma-check: round 3/3:") != std::string::npos);
    // Every round's atomics and its tagged message there and back.
    CHECK(r.output.find("fetch_add returned 2, compare_swap and a 4096-byte tagged message ok") !=
          std::string::npos);

    // The server accepts again; the counter word goes on from 3.
    r = run_client(client_args(field["rkey"], "2"), host_b.path(), "vck-b");
    CHECK(r.exit_code == 0);
    CHECK(r.output.find("vmrdma-check: OK: 2 rounds") != std::string::npos);
    CHECK(r.output.find("fetch_add returned 3") != std::string::npos);

    // By name: the server is found on the link and hands its region over in
    // the accept; the counter goes on from 5.
    r = run_client({"client", "--device", "eth:vck-b", "--name", "check-srv", "--rounds", "1"}, host_b.path(),
                   "vck-b");
    CHECK(r.exit_code == 0);
    CHECK(r.output.find("'check-srv' is " + field["mac"] + " endpoint 3") != std::string::npos);
    CHECK(r.output.find("vmrdma-check: OK: 1 rounds of 262136 bytes") != std::string::npos);
    r = run_client({"client", "--device", "eth:vck-b", "--name", "check-srv", "--size", "1M"}, host_b.path(),
                   "vck-b");
    CHECK(r.exit_code == 2);

    // A key the server never gave: the first write is refused.
    auto bad = std::to_string(std::strtoul(field["rkey"].c_str(), nullptr, 16) + 1000);
    r = run_client(client_args(bad, "1"), host_b.path(), "vck-b");
    CHECK(r.exit_code == 1);
    CHECK(r.output.find("vmrdma-check: FAIL: after 0 rounds:") != std::string::npos);

    // Bad arguments: exit 2 and the reason.
    r = run_client({"client", "--device", "eth:vck-b"}, host_b.path(), "vck-b");
    CHECK(r.exit_code == 2);
    CHECK(r.output.find("--peer is required") != std::string::npos);

    CHECK(stop_child(server, SIGTERM) == 0);
    close(serve_out);
    alarm(0);
}

bool has_flood_line(const std::string& t) { return t.find("vmrdma-check: flood: ") != std::string::npos; }
// --forever's second progress line (a second or so into the transfer).
bool has_round_line(const std::string& t) {
    auto first = t.find("vmrdma-check: round ");
    return first != std::string::npos && t.find("vmrdma-check: round ", first + 1) != std::string::npos;
}
bool has_fail_line(const std::string& t) { return t.find("vmrdma-check: FAIL") != std::string::npos; }


TEST_CASE("vmrdma-check: rounds/s over RDMA and over TCP, a flood, and peer_gone when the server leaves") {
    if (vmrdma::testing::skip_network_tests()) return;
    alarm(150);
    vmrdma::testing::veth_pair veth("vck-c", "vck-d", 1500);
    other_netns host_b;
    vmrdma::testing::run("ip link set vck-d netns " + std::to_string(host_b.holder));
    vmrdma::testing::run("ip addr add 10.77.0.1/24 dev vck-c");

    int serve_out = -1;
    pid_t server = start({"serve", "--device", "eth:vck-c", "--size", "256K", "--name", "check-srv2"}, serve_out,
                         {}, {}, false);
    REQUIRE(read_until(serve_out, 10'000, has_ready_line).rfind("READY ", 0) == 0);
    const std::vector<std::string> by_name{"client", "--device", "eth:vck-d", "--name", "check-srv2"};
    auto with = [&](std::vector<std::string> more) {
        auto args = by_name;
        args.insert(args.end(), more.begin(), more.end());
        return args;
    };

    auto r = run_client(with({"--measure", "1", "--length", "64K"}), host_b.path(), "vck-d");
    CHECK(r.exit_code == 0);
    CHECK(r.output.find(" rounds of 65536 bytes written, read back and verified in ") != std::string::npos);
    // eth: counts the endpoint's frames: the line says how many went again.
    CHECK(r.output.find(" rounds/s; ") != std::string::npos);
    CHECK(r.output.find(" frames sent, ") != std::string::npos);

    // Options that do not go together, or out of range.
    CHECK(run_client(with({"--length", "64K"}), host_b.path(), "vck-d").exit_code == 2);
    CHECK(run_client(with({"--measure", "1", "--depth", "4"}), host_b.path(), "vck-d").exit_code == 2);
    CHECK(run_client(with({"--measure", "1", "--forever"}), host_b.path(), "vck-d").exit_code == 2);
    CHECK(run_client(with({"--measure", "1", "--length", "256K"}), host_b.path(), "vck-d").exit_code == 2);

    // A flood runs until it is stopped and says how fast it goes.
    int flood_out = -1;
    pid_t flood = start(with({"--flood", "--length", "16K", "--depth", "8"}), flood_out, host_b.path(), "vck-d");
    auto text = read_until(flood_out, 20'000, has_flood_line);
    MESSAGE("flood: " << text);
    CHECK(has_flood_line(text));
    CHECK(stop_child(flood, SIGKILL) == 128 + SIGKILL);
    close(flood_out);

    // TCP: the same rounds through a socket.
    int tcp_out = -1;
    pid_t tcp_server = start({"tcp-serve", "--port", "7599"}, tcp_out, {}, {}, false);
    CHECK(read_until(tcp_out, 10'000, has_ready_line) == "READY port=7599\n");
    r = run_client({"tcp-client", "--host", "10.77.0.1", "--port", "7599", "--length", "64K", "--rounds", "5"},
                   host_b.path(), "vck-d", "10.77.0.2/24");
    CHECK(r.exit_code == 0);
    CHECK(r.output.find("vmrdma-check: OK: 5 rounds of 65536 bytes sent, echoed and verified in ") !=
          std::string::npos);
    r = run_client({"tcp-client", "--host", "10.77.0.1", "--port", "7599", "--length", "1M", "--measure", "1"},
                   host_b.path(), "vck-d", "10.77.0.2/24");
    CHECK(r.exit_code == 0);
    CHECK(r.output.find(" rounds of 1048576 bytes sent, echoed and verified in ") != std::string::npos);
    CHECK(run_client({"tcp-client", "--host", "10.77.0.1", "--port", "7599", "--length", "1M"}, host_b.path(),
                     "vck-d", "10.77.0.2/24")
              .exit_code == 2);
    CHECK(stop_child(tcp_server, SIGTERM) == 0);
    close(tcp_out);

    // The server goes away in the middle of an endless transfer: the client
    // fails and names the error.
    int forever_out = -1;
    pid_t forever = start(with({"--forever"}), forever_out, host_b.path(), "vck-d");
    text = read_until(forever_out, 20'000, has_round_line);
    REQUIRE(has_round_line(text));
    CHECK(stop_child(server, SIGTERM) == 0);
    close(serve_out);
    text += read_until(forever_out, 30'000, has_fail_line);
    MESSAGE("client after the server left: " << text);
    CHECK(text.find("vmrdma-check: FAIL: after ") != std::string::npos);
    CHECK(text.find(" [peer_gone]") != std::string::npos);
    CHECK(stop_child(forever, SIGKILL) == 1);  // it had exited already
    close(forever_out);
    alarm(0);
}

bool has_receive_failed(const std::string& t) {
    return t.find("vmrdma-check: receive failed: ") != std::string::npos;
}

TEST_CASE("vmrdma-check: serve goes on after its only client's connection fails") {
    if (vmrdma::testing::skip_network_tests()) return;
    alarm(120);
    vmrdma::testing::veth_pair veth("vck-e", "vck-f", 1500);
    other_netns host_b;
    vmrdma::testing::run("ip link set vck-f netns " + std::to_string(host_b.holder));

    int serve_out = -1;
    pid_t server = start({"serve", "--device", "eth:vck-e", "--size", "256K", "--name", "check-srv3"}, serve_out);
    REQUIRE(read_until(serve_out, 10'000, has_ready_line).rfind("READY ", 0) == 0);
    const std::vector<std::string> by_name{"client", "--device", "eth:vck-f", "--name", "check-srv3"};

    // The client dies mid-transfer; its connection fails at the server once
    // the peer timeout passes, and with it the endpoint's posted receive.
    // Until serve closes that connection no receive can be posted: serve
    // once retried at once, forever, and served nobody again.
    int forever_out = -1;
    auto args = by_name;
    args.push_back("--forever");
    pid_t forever = start(args, forever_out, host_b.path(), "vck-f");
    REQUIRE(has_round_line(read_until(forever_out, 20'000, has_round_line)));
    CHECK(stop_child(forever, SIGKILL) == 128 + SIGKILL);
    close(forever_out);
    auto text = read_until(serve_out, 60'000, has_receive_failed);
    MESSAGE("server after its client died: " << text);
    REQUIRE(has_receive_failed(text));

    args = by_name;
    args.insert(args.end(), {"--rounds", "1"});
    auto r = run_client(args, host_b.path(), "vck-f");
    CHECK(r.exit_code == 0);
    CHECK(r.output.find("vmrdma-check: OK: 1 rounds of 262136 bytes") != std::string::npos);

    CHECK(stop_child(server, SIGTERM) == 0);
    close(serve_out);
    alarm(0);
}
