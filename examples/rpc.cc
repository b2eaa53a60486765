// rpc: request/response over vmrdma with the least code the API allows.
// Requests and replies are small messages from ordinary memory (no
// registration), matched by tag; many calls are in flight at once.
//
//   rpc server URI              serves "add" calls until the client says bye
//   rpc client URI MAC [CALLS]  makes CALLS calls (default 1000), 16 at a time
//
// A call is two 64-bit numbers; the reply is their sum. The tag carries the
// call's number, so replies find their callers in any order.
#include <vmrdma/rdma.hpp>
#include <vmrdma/runtime.hpp>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

using namespace std::chrono_literals;

namespace {

constexpr std::uint64_t request_tag = 1ull << 63;          // | call number; a reply's tag is the number
constexpr std::uint64_t bye_tag = request_tag | 1ull << 62;  // a request too: the same receive takes it

struct request {
    std::uint64_t a, b;
};

vmrdma::task<void> serve(vmrdma::device& dev) {
    auto ep = dev.open_endpoint(1, {.listen = true});
    auto conn = co_await ep.accept();
    for (;;) {
        std::array<std::byte, sizeof(request)> in{};
        auto got = co_await ep.recv(in, request_tag, /*mask=*/request_tag);  // any call, or bye
        if (got.tag == bye_tag) break;
        request r;
        std::memcpy(&r, in.data(), sizeof r);
        std::uint64_t sum = r.a + r.b;
        co_await conn.send(std::as_bytes(std::span(&sum, 1)), got.tag & ~request_tag);  // to its caller
    }
    std::printf("server: done\n");
}

vmrdma::task<std::uint64_t> call(vmrdma::endpoint& ep, vmrdma::connection& conn, std::uint64_t id,
                                 request r) {
    std::array<std::byte, 8> out{};
    auto reply = ep.recv(out, id);  // lazy: posted when awaited, below
    co_await vmrdma::when_all(conn.send(std::as_bytes(std::span(&r, 1)), request_tag | id), std::move(reply));
    std::uint64_t sum;
    std::memcpy(&sum, out.data(), 8);
    co_return sum;
}

vmrdma::task<int> client(vmrdma::device& dev, vmrdma::mac_address server, std::uint64_t calls) {
    auto ep = dev.open_endpoint(1);
    auto conn = co_await ep.connect(server, 1, 10s);
    std::uint64_t wrong = 0, next = 0;
    auto t0 = std::chrono::steady_clock::now();
    vmrdma::async_scope scope;
    for (int lane = 0; lane < 16; ++lane)
        scope.spawn([&]() -> vmrdma::task<void> {
            while (next < calls) {
                std::uint64_t id = next++;
                if (co_await call(ep, conn, id, {id, 2 * id}) != 3 * id) ++wrong;
            }
        });
    co_await scope.join();
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    co_await conn.send(std::as_bytes(std::span("bye", 3)), bye_tag);
    std::printf("client: %llu calls in %.3f s (%.0f calls/s), %llu wrong\n",
                static_cast<unsigned long long>(calls), s, static_cast<double>(calls) / s,
                static_cast<unsigned long long>(wrong));
    co_return wrong == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
    std::string role = argc >= 3 ? argv[1] : "";
    if (!(role == "server" && argc == 3) && !(role == "client" && (argc == 4 || argc == 5))) {
        std::fprintf(stderr, "usage: %s server URI | client URI SERVER_MAC [CALLS]\n", argv[0]);
        return 2;
    }
    try {
        vmrdma::event_loop loop;
        auto dev = vmrdma::device::open(loop, argv[2]);
        if (role == "server") {
            std::printf("server: %s\n", dev->mac().to_string().c_str());
            std::fflush(stdout);
            loop.run(serve(*dev));
            return 0;
        }
        std::uint64_t calls = argc == 5 ? std::strtoull(argv[4], nullptr, 10) : 1000;
        return loop.run(client(*dev, vmrdma::mac_address::parse(argv[3]), calls));
    } catch (const vmrdma::error& e) {
        std::fprintf(stderr, "rpc %s: %s\n", role.c_str(), e.what());
        return 1;
    }
}
