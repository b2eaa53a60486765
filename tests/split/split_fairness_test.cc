// Weighted sharing through vmrdmad: two frontends flood RDMA writes to the
// same peer at once through one daemon; the administrator (vmrdmactl's
// control message) gives one weight 1 and the other weight 3, and the bytes
// delivered over a window split 1:3 (a ratio under contention, not a
// timing threshold). A third, light frontend doing one fetch_add at a time
// keeps completing while the two flood.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <cstring>

#include "tests/split/split_support.hpp"
#include "vmrdma/registrable.hpp"
#include "vmrdmad/admin_client.hpp"

using namespace std::chrono_literals;
using vmrdma::access;
using vmrdma::errc;
using vmrdma::error;
using vmrdma::task;

namespace {

constexpr std::size_t target_size = 1u << 20;
constexpr std::uint32_t chunk = 64u << 10;
constexpr int depth = 64;  // writes each flooder keeps in flight: 4 MiB, the daemon's whole budget

struct published {
    std::promise<std::array<std::uint64_t, 3>> keys;
};

// One frontend on its own thread: connects endpoint `ep` to peer endpoint
// `peer_ep` and floods writes (or, `light`, does fetch_adds one at a time)
// until `stop`, counting bytes or operations.
class frontend_thread {
public:
    frontend_thread(std::string uri, std::uint16_t ep, vmrdma::mac_address peer, std::uint16_t peer_ep,
                    std::uint64_t rkey, bool light)
        : thread_([=, this] {
              try {
                  vmrdma::event_loop loop;
                  auto dev = vmrdma::device::open(loop, uri);
                  auto e = dev->open_endpoint(ep, {.weight = 1});
                  vmrdma::registrable_buffer buf(chunk);
                  std::memset(buf.data(), ep, chunk);
                  auto mr = e.register_memory(buf.span(), access::none);
                  auto body = [&]() -> task<void> {
                      auto conn = co_await e.connect(peer, peer_ep);
                      ready_ = true;
                      vmrdma::remote_region remote{rkey, target_size};
                      if (light) {
                          while (!stop_) {
                              co_await conn.fetch_add(remote, 0, 1);
                              ++done_;
                          }
                          co_return;
                      }
                      auto worker = [&](int slot) -> task<void> {
                          std::uint64_t off = std::uint64_t(slot) * chunk % target_size;
                          while (!stop_) {
                              co_await conn.write(mr, 0, remote, off, chunk);
                              done_ += chunk;
                          }
                      };
                      vmrdma::async_scope scope;
                      for (int i = 0; i < depth; ++i) scope.spawn(worker(i));
                      co_await scope.join();
                  };
                  loop.run(body());
              } catch (...) {
                  error_ = std::current_exception();
                  ready_ = true;
              }
          }) {}
    ~frontend_thread() {
        stop_ = true;
        if (thread_.joinable()) thread_.join();
    }
    void finish() {
        stop_ = true;
        thread_.join();
        if (error_) std::rethrow_exception(error_);
    }
    bool ready() const { return ready_; }
    std::uint64_t done() const { return done_; }

private:
    std::atomic<bool> stop_{false}, ready_{false};
    std::atomic<std::uint64_t> done_{0};
    std::exception_ptr error_;
    std::thread thread_;
};

std::uint32_t frontend_of(vmrdmad::admin_client& admin, std::uint16_t ep) {
    for (auto& e : admin.endpoints())
        if (e.ep == ep) return e.frontend;
    throw std::runtime_error("no frontend has endpoint " + std::to_string(ep));
}

}  // namespace

TEST_CASE("two flooding frontends share the link 1:3 by the weights the administrator set") {
    if (vmrdma::testing::skip_network_tests()) return;
    alarm(180);
    vmrdma::testing::veth_pair veth("vsf0", "vsfp0", 9000);
    split_test::daemon_thread daemon(veth.a, split_test::socket_path("fair"));

    // The peer: three listening endpoints, each with a 1 MiB target region.
    std::promise<std::array<std::uint64_t, 3>> keys_promise;
    auto keys_future = keys_promise.get_future();
    split_test::peer_thread peer(veth.b, [&](vmrdma::event_loop& loop, vmrdma::device& dev,
                                             std::stop_token stop) -> task<void> {
        std::vector<vmrdma::endpoint> eps;
        std::vector<std::vector<std::byte>> mem;
        std::vector<vmrdma::region> mrs;
        std::array<std::uint64_t, 3> keys{};
        for (std::uint16_t i = 0; i < 3; ++i) {
            eps.push_back(dev.open_endpoint(1 + i, {.weight = 1, .listen = true}));
            mem.emplace_back(target_size);
        }
        for (std::uint16_t i = 0; i < 3; ++i) {
            mrs.push_back(eps[i].register_memory(mem[i], access::remote_write | access::remote_atomic));
            keys[i] = mrs.back().key();
        }
        keys_promise.set_value(keys);
        std::vector<vmrdma::connection> conns;
        for (std::uint16_t i = 0; i < 3; ++i) conns.push_back(co_await eps[i].accept(stop));
        try {
            co_await loop.sleep_for(600s, stop);
        } catch (const error&) {
        }
    });
    auto keys = keys_future.get();

    frontend_thread a(daemon.uri(), 10, peer.mac(), 1, keys[0], false);
    frontend_thread b(daemon.uri(), 11, peer.mac(), 2, keys[1], false);
    frontend_thread light(daemon.uri(), 12, peer.mac(), 3, keys[2], true);
    REQUIRE(split_test::eventually([&] { return a.ready() && b.ready() && light.ready(); }, 10000));

    // The administrator's control message (what `vmrdmactl set-weight` sends).
    vmrdmad::admin_client admin(daemon.path());
    admin.set(frontend_of(admin, 10), VR_ADMIN_SET_WEIGHT, 1);
    admin.set(frontend_of(admin, 11), VR_ADMIN_SET_WEIGHT, 3);
    for (auto& e : admin.endpoints()) {
        if (e.ep == 10) CHECK(e.weight == 1);
        if (e.ep == 11) CHECK(e.weight == 3);
        if (e.ep == 12) CHECK(e.weight == 1);
    }

    std::this_thread::sleep_for(500ms);  // both backlogged
    std::uint64_t a0 = a.done(), b0 = b.done(), l0 = light.done();
    // The light one: completions keep coming during the window, never a
    // long gap.
    std::uint64_t light_last = l0;
    int stalled_ticks = 0, worst_stall = 0;
    for (int tick = 0; tick < 40; ++tick) {  // 4 s
        std::this_thread::sleep_for(100ms);
        auto now = light.done();
        stalled_ticks = now == light_last ? stalled_ticks + 1 : 0;
        worst_stall = std::max(worst_stall, stalled_ticks);
        light_last = now;
    }
    std::uint64_t a1 = a.done(), b1 = b.done(), l1 = light.done();
    double da = double(a1 - a0), db = double(b1 - b0);
    double share_b = db / (da + db);
    MESSAGE("weight 1: " << da / 4 / (1 << 20) << " MiB/s, weight 3: " << db / 4 / (1 << 20)
                         << " MiB/s, share of the weight-3 frontend " << share_b << " (ideal 0.75); light: "
                         << (l1 - l0) << " fetch_adds, longest stall " << worst_stall * 100 << " ms");
    // The 1:3 share within +-10%: the weight-3 frontend moves 0.75 of the
    // bytes, +-0.075 (observed: 0.73-0.74).
    CHECK(da > 0);
    CHECK(share_b > 0.75 * 0.9);
    CHECK(share_b < 0.75 * 1.1);
    CHECK(l1 - l0 >= 20);
    CHECK(worst_stall < 10);  // never a second without a completion

    a.finish();
    b.finish();
    light.finish();
    CHECK(daemon.stats().violations == 0);
    CHECK(daemon.stats().rejected == 0);
    alarm(0);
}
