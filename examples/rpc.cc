// rpc: request/response over vmrdma with the least code the API allows.
// Requests and replies are small messages from ordinary memory (no
// registration), matched by tag; many calls are in flight at once.
//
//   rpc server URI          announces "rpc-add", serves calls until the client leaves
//   rpc client URI [CALLS]  finds "rpc-add", makes CALLS calls (default 1000), 16 at a time
//
// A call is two 64-bit numbers; the reply is their sum. The tag carries the
// call's number, so replies find their callers in any order. The client
// closes when it is done; the server's waiting receive learns of it.
#include <vmrdma/rdma.hpp>
#include <vmrdma/runtime.hpp>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

using namespace std::chrono_literals;

namespace {

constexpr std::uint64_t request_tag = 1ull << 63;  // | call number; a reply's tag is the number

struct request {
    std::uint64_t a, b;
};

vmrdma::task<void> serve(vmrdma::device& dev) {
    auto ep = dev.open_endpoint(1, {.listen = true});
    co_await ep.announce("rpc-add");
    auto conn = co_await ep.accept();
    for (std::uint64_t served = 0;; ++served) {
        std::array<std::byte, sizeof(request)> in{};
        vmrdma::recv_result got;
        try {
            got = co_await ep.recv(in, request_tag, /*mask=*/request_tag);  // any call
        } catch (const vmrdma::error& e) {
            if (e.code() != vmrdma::errc::peer_gone) throw;
            std::printf("server: the client left after %llu calls\n", static_cast<unsigned long long>(served));
            co_return;
        }
        request r;
        std::memcpy(&r, in.data(), sizeof r);
        std::uint64_t sum = r.a + r.b;
        co_await conn.send(std::as_bytes(std::span(&sum, 1)), got.tag & ~request_tag);  // to its caller
    }
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

vmrdma::task<int> client(vmrdma::device& dev, std::uint64_t calls) {
    auto ep = dev.open_endpoint(1);
    auto server = co_await ep.resolve("rpc-add", 10s);
    auto conn = co_await ep.connect(server, {.wait_for_listener = 10s});
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
    std::printf("client: %llu calls in %.3f s (%.0f calls/s), %llu wrong\n",
                static_cast<unsigned long long>(calls), s, static_cast<double>(calls) / s,
                static_cast<unsigned long long>(wrong));
    co_return wrong == 0 ? 0 : 1;
}   // conn closes here: the server's receive fails with peer_gone

}  // namespace

int main(int argc, char** argv) {
    std::string role = argc >= 3 ? argv[1] : "";
    if (!(role == "server" && argc == 3) && !(role == "client" && (argc == 3 || argc == 4))) {
        std::fprintf(stderr, "usage: %s server URI | client URI [CALLS]\n", argv[0]);
        return 2;
    }
    try {
        vmrdma::event_loop loop;
        auto dev = vmrdma::device::open(loop, argv[2]);
        if (role == "server") {
            loop.run(serve(*dev));
            return 0;
        }
        std::uint64_t calls = argc == 4 ? std::strtoull(argv[3], nullptr, 10) : 1000;
        return loop.run(client(*dev, calls));
    } catch (const vmrdma::error& e) {
        std::fprintf(stderr, "rpc %s: %s\n", role.c_str(), e.what());
        return 1;
    }
}
