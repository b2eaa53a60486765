// pingpong: the smallest latency example. A client sends a small tagged
// message, the server answers with one of the same size, N times; the client
// prints the round-trip latency (min, median, p99, max).
//
//   pingpong                       both sides, in two network namespaces it makes (root)
//   pingpong --server eth:IF       serve on IF
//   pingpong --client eth:IF MAC   ping the server whose device has MAC
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "examples/support/netns_pair.hpp"
#include "vmrdma/rdma.hpp"
#include "vmrdma/runtime.hpp"

using vmrdma::task;

namespace {

int iterations = 10000;
std::uint32_t size = 64;

int serve(const std::string& uri) {
    vmrdma::event_loop loop;
    auto dev = vmrdma::device::open(loop, uri);
    auto ep = dev->open_endpoint(1, {.weight = 1, .listen = true});
    std::vector<std::byte> buf(size);
    auto mr = ep.register_memory(buf, vmrdma::access::local_write);
    std::printf("server: %s listening on endpoint 1\n", dev->mac().to_string().c_str());
    std::fflush(stdout);
    auto body = [&]() -> task<void> {
        auto conn = co_await ep.accept();
        for (int i = 0; i < iterations; ++i) {
            co_await ep.recv(mr, 0, size, 1);
            co_await conn.send(mr, 0, size, 2);
        }
    };
    loop.run(body());
    return 0;
}

int ping(const std::string& uri, const std::string& server_mac) {
    vmrdma::event_loop loop;
    auto dev = vmrdma::device::open(loop, uri);
    auto ep = dev->open_endpoint(1);
    std::vector<std::byte> buf(size);
    auto mr = ep.register_memory(buf, vmrdma::access::local_write);
    std::vector<double> us;
    auto body = [&]() -> task<void> {
        auto conn = co_await ep.connect(vmrdma::mac_address::parse(server_mac), 1);
        for (int i = 0; i < iterations; ++i) {
            auto t0 = std::chrono::steady_clock::now();
            auto answer = ep.recv(mr, 0, size, 2);  // posted when awaited, below
            co_await conn.send(mr, 0, size, 1);
            co_await std::move(answer);
            us.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
        }
    };
    loop.run(body());
    std::sort(us.begin(), us.end());
    std::printf("%u-byte send/recv round trip over %d iterations: min %.1f us, median %.1f us, "
                "p99 %.1f us, max %.1f us\n",
                size, iterations, us.front(), us[us.size() / 2], us[us.size() * 99 / 100], us.back());
    return 0;
}

int self_hosted() {
    vmrdma::examples::netns_pair net("vmrdma-pp", 1500);
    std::fflush(stdout);
    pid_t srv = fork();
    if (srv == 0) {
        vmrdma::examples::netns_pair::enter(net.a());
        int rc = serve("eth:" + net.a().ifname);
        std::fflush(stdout);
        _exit(rc);
    }
    usleep(100000);  // let the server open its endpoint
    pid_t cli = fork();
    if (cli == 0) {
        vmrdma::examples::netns_pair::enter(net.b());
        int rc = ping("eth:" + net.b().ifname, net.a().mac);
        std::fflush(stdout);
        _exit(rc);
    }
    int s1 = 0, s2 = 0;
    waitpid(cli, &s1, 0);
    if (s1 != 0) kill(srv, SIGKILL);
    waitpid(srv, &s2, 0);
    return (s1 == 0 && s2 == 0) ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
    std::vector<std::string> args(argv + 1, argv + argc);
    if (const char* n = std::getenv("PINGPONG_ITERATIONS")) iterations = std::max(1, std::atoi(n));
    try {
        if (args.empty()) return self_hosted();
        if (args[0] == "--server" && args.size() == 2) return serve(args[1]);
        if (args[0] == "--client" && args.size() == 3) return ping(args[1], args[2]);
        std::printf("usage: pingpong [--server eth:IF | --client eth:IF SERVER_MAC]\n"
                    "Measures small-message round-trip latency (PINGPONG_ITERATIONS, default 10000).\n"
                    "With no arguments (as root) it runs both sides in two namespaces it makes.\n");
        return args[0] == "--help" || args[0] == "-h" ? 0 : 2;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "pingpong: %s\n", e.what());
        return 1;
    }
}
