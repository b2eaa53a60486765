// quickstart: a real RDMA transfer between two "hosts". It makes two network
// namespaces joined by a veth pair, runs a server in one and a client in the
// other (two processes, each with its own vmrdma device on its end of the
// pair), RDMA-writes a buffer into the server's registered memory, reads it
// back, verifies both copies bit for bit, and removes what it made — also on
// failure or Ctrl-C. Run as root (network namespaces and raw sockets).
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <coroutine>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "examples/support/netns_pair.hpp"
#include "vmrdma/rdma.hpp"
#include "vmrdma/runtime.hpp"

using namespace std::chrono_literals;
using vmrdma::access;
using vmrdma::task;

namespace {

constexpr std::uint16_t endpoint_id = 1;
constexpr std::uint64_t tag_descriptor = 1;
constexpr std::uint64_t tag_done = 2;

struct options {
    unsigned mtu = 9000;
    std::size_t size = 16u << 20;
};

volatile sig_atomic_t interrupted = 0;
void on_signal(int) { interrupted = 1; }

// The bytes the client writes: the server can recompute them to verify.
void fill_pattern(std::span<std::byte> out) {
    std::uint64_t x = 0x9e3779b97f4a7c15ull;
    for (std::size_t i = 0; i < out.size(); ++i) {
        if (i % 8 == 0) {
            x += 0x9e3779b97f4a7c15ull;
            std::uint64_t z = x;
            z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
            z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
            x = z ^ (z >> 31);
        }
        out[i] = static_cast<std::byte>(x >> (8 * (i % 8)));
    }
}

// Compares two buffers on a thread of its own and resumes on the loop: a
// compare of gigabytes on the loop thread would leave the peer's last frames
// unacknowledged for as long as it runs.
struct equal_off_loop {
    equal_off_loop(vmrdma::event_loop& l, std::span<const std::byte> x, std::span<const std::byte> y)
        : loop(l), a(x), b(y) {}
    vmrdma::event_loop& loop;
    std::span<const std::byte> a, b;
    bool same = false;
    std::thread worker;
    bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<> h) {
        worker = std::thread([this, h] {
            same = a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size()) == 0;
            loop.post([h] { h.resume(); });
        });
    }
    bool await_resume() {
        worker.join();
        return same;
    }
};

double seconds_since(std::chrono::steady_clock::time_point t) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

std::string rate(std::size_t bytes, double seconds) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.1f ms, %.2f GiB/s", seconds * 1e3,
                  static_cast<double>(bytes) / seconds / (1u << 30));
    return buf;
}

int server(const vmrdma::examples::netns_host& host, const options& o, int ready_fd) {
    vmrdma::event_loop loop;
    auto dev = vmrdma::device::open(loop, "eth:" + host.ifname);
    auto ep = dev->open_endpoint(endpoint_id, {.weight = 1, .listen = true});
    std::vector<std::byte> memory(o.size, std::byte{0});
    auto mr = ep.register_memory(memory, access::remote_write | access::remote_read);
    std::array<std::byte, 16> control{};
    auto control_mr = ep.register_memory(control, access::local_write);
    // What the client will write, made before the client may start.
    std::vector<std::byte> expected(o.size);
    fill_pattern(expected);
    std::printf("server: %s on %s (MTU %u), %zu MiB registered for remote write and read\n",
                dev->mac().to_string().c_str(), host.ifname.c_str(), dev->mtu(), o.size >> 20);
    std::fflush(stdout);
    if (write(ready_fd, "r", 1) != 1) return 1;
    close(ready_fd);

    auto body = [&]() -> task<bool> {
        auto conn = co_await vmrdma::with_timeout(loop, 30s, [&](std::stop_token st) { return ep.accept(st); });
        std::printf("server: client connected; sending it the region descriptor\n");
        auto desc = mr.remote().to_bytes();
        std::memcpy(control.data(), desc.data(), desc.size());
        co_await conn.send(control_mr, 0, 16, tag_descriptor);
        co_await vmrdma::with_timeout(loop, 60s, [&](std::stop_token st) {
            return ep.recv(control_mr, 0, 8, tag_done, ~0ull, st);
        });
        bool same = co_await equal_off_loop{loop, expected, memory};
        std::printf("server: my registered memory %s what the client wrote\n",
                    same ? "holds exactly" : "DOES NOT hold");
        co_return same;
    };
    return loop.run(body()) ? 0 : 1;
}

int client(const vmrdma::examples::netns_host& host, const std::string& server_mac, const options& o) {
    vmrdma::event_loop loop;
    auto dev = vmrdma::device::open(loop, "eth:" + host.ifname);
    auto ep = dev->open_endpoint(endpoint_id);
    std::vector<std::byte> source(o.size), readback(o.size, std::byte{0});
    fill_pattern(source);
    auto source_mr = ep.register_memory(source, access::none);
    auto readback_mr = ep.register_memory(readback, access::local_write);
    std::array<std::byte, 16> control{};
    auto control_mr = ep.register_memory(control, access::local_write);

    auto body = [&]() -> task<bool> {
        auto descriptor = ep.recv(control_mr, 0, 16, tag_descriptor);
        auto conn = co_await ep.connect(vmrdma::mac_address::parse(server_mac), endpoint_id);
        std::printf("client: %s connected to server %s\n", dev->mac().to_string().c_str(),
                    server_mac.c_str());
        co_await std::move(descriptor);
        auto remote = vmrdma::remote_region::from_bytes(control);
        std::printf("client: server region: rkey 0x%016llx, %llu bytes\n", static_cast<unsigned long long>(remote.rkey),
                    static_cast<unsigned long long>(remote.length));

        auto t0 = std::chrono::steady_clock::now();
        co_await conn.write(source_mr, 0, remote, 0, static_cast<std::uint32_t>(o.size));
        std::printf("client: RDMA-wrote %zu MiB into the server's memory (%s)\n", o.size >> 20,
                    rate(o.size, seconds_since(t0)).c_str());
        t0 = std::chrono::steady_clock::now();
        co_await conn.read(readback_mr, 0, remote, 0, static_cast<std::uint32_t>(o.size));
        std::printf("client: RDMA-read it back (%s)\n", rate(o.size, seconds_since(t0)).c_str());
        bool same = co_await equal_off_loop{loop, readback, source};
        std::printf("client: the copy read back %s the original, bit for bit\n",
                    same ? "matches" : "DOES NOT match");
        co_await conn.send(control_mr, 0, 8, tag_done);
        auto s = dev->stats();
        std::printf("client: %llu frames out, %llu in, %llu retransmitted\n",
                    static_cast<unsigned long long>(s.tx_frames),
                    static_cast<unsigned long long>(s.rx_frames),
                    static_cast<unsigned long long>(s.retransmits));
        co_return same;
    };
    return loop.run(body()) ? 0 : 1;
}


// Waits for a child; false if it failed, was killed, or we were interrupted.
bool wait_child(pid_t pid, const char* name, std::chrono::seconds limit) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    for (;;) {
        int status = 0;
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) {
            if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return true;
            std::fprintf(stderr, "%s failed (%s %d)\n", name,
                         WIFEXITED(status) ? "exit status" : "signal",
                         WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
            return false;
        }
        if (interrupted || std::chrono::steady_clock::now() > deadline) {
            std::fprintf(stderr, "%s: %s; stopping it\n", name,
                         interrupted ? "interrupted" : "did not finish in time");
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            return false;
        }
        usleep(10000);
    }
}

void usage(const char* argv0) {
    std::printf(
        "usage: %s [--mtu N] [--size BYTES]\n"
        "Makes two network namespaces joined by a veth pair, runs a vmrdma server in\n"
        "one and a client in the other, RDMA-writes a buffer, reads it back, verifies\n"
        "it, and removes everything it made. Needs root.\n"
        "  --mtu N        veth MTU, 1500..65535 (default 9000)\n"
        "  --size BYTES   bytes to transfer, suffixes K/M allowed (default 16M)\n",
        argv0);
}


}  // namespace

int main(int argc, char** argv) {
    setvbuf(stdout, nullptr, _IOLBF, 0);  // server and client lines interleave in order
    options o;
    try {
        for (int i = 1; i < argc; ++i) {
            std::string a = argv[i];
            if (a == "-h" || a == "--help") {
                usage(argv[0]);
                return 0;
            }
            if (i + 1 >= argc) throw std::runtime_error(a + " needs a value (try --help)");
            if (a == "--mtu") {
                o.mtu = static_cast<unsigned>(std::strtoul(argv[++i], nullptr, 10));
                if (o.mtu < 1500 || o.mtu > 65535) throw std::runtime_error("--mtu must be 1500..65535");
            } else if (a == "--size") {
                o.size = vmrdma::examples::parse_size(argv[++i], 0xffffffffull, "--size must be 1 byte .. 4 GiB-1");
            } else {
                throw std::runtime_error("unknown option " + a + " (try --help)");
            }
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "quickstart: %s\n", e.what());
        return 2;
    }
    if (geteuid() != 0) {
        std::fprintf(stderr, "quickstart: needs root (it creates network namespaces and opens raw sockets)\n");
        return 1;
    }
    struct sigaction sa {};
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);

    bool ok = false;
    try {
        std::printf("vmrdma quickstart: two network namespaces joined by a veth pair (MTU %u)\n", o.mtu);
        vmrdma::examples::netns_pair net("vmrdma-qs", o.mtu);
        std::printf("made %s (%s) and %s (%s)\n", net.a().netns.c_str(), net.a().ifname.c_str(),
                    net.b().netns.c_str(), net.b().ifname.c_str());
        int ready[2];
        if (pipe2(ready, O_CLOEXEC) != 0) throw std::runtime_error("pipe failed");
        pid_t srv = vmrdma::examples::spawn_in(net.a(), [&] {
            close(ready[0]);
            return server(net.a(), o, ready[1]);
        });
        close(ready[1]);
        char c;
        bool server_up = read(ready[0], &c, 1) == 1;
        close(ready[0]);
        if (!server_up) {
            wait_child(srv, "server", 1s);
        } else {
            pid_t cli = vmrdma::examples::spawn_in(net.b(), [&] { return client(net.b(), net.a().mac, o); });
            bool client_ok = wait_child(cli, "client", 120s);
            bool server_ok = wait_child(srv, "server", client_ok ? 10s : 0s);
            ok = client_ok && server_ok;
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "quickstart: %s\n", e.what());
    }
    std::printf("removed the namespaces and the veth pair\n");
    if (interrupted)
        std::printf("quickstart: interrupted; nothing it made is left behind\n");
    else
        std::printf(ok ? "quickstart: SUCCESS, the RDMA transfer was verified on both sides\n"
                       : "quickstart: FAILED (see above)\n");
    return ok ? 0 : interrupted ? 130 : 1;
}
