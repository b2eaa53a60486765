#include "bench/support/vmrdma_path.hpp"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <optional>
#include <vector>

#include "vmrdma/rdma.hpp"
#include "vmrdma/registrable.hpp"
#include "vmrdma/runtime.hpp"

namespace vmrdma::bench {

namespace {

using clock_type = std::chrono::steady_clock;
constexpr std::uint64_t tag_descriptor = 1, tag_data = 2, tag_done = 3;
constexpr std::uint16_t endpoint_id = 1;

// One message-sized buffer (workload::distinct_buffers says why), or one per
// operation in flight so that none share bytes; at least one page.
std::size_t region_size(const workload& w) {
    return std::max<std::size_t>(w.distinct_buffers ? w.size * w.depth : w.size, 4096);
}

// Where in the region the operations of worker `slot` read or write.
std::uint64_t slot_offset(const workload& w, unsigned slot) {
    return w.distinct_buffers ? std::uint64_t{slot} * w.size : 0;
}

double elapsed(clock_type::time_point t0) {
    return std::chrono::duration<double>(clock_type::now() - t0).count();
}

bool keep_going(const workload& w, std::uint64_t done, clock_type::time_point t0) {
    if (w.iterations) return done < w.iterations;
    return elapsed(t0) < w.seconds;
}

}  // namespace

device_options device_options_for(const workload& w) {
    device_options o;
    o.bundle_small_frames = w.bundle;
    if (w.link_integrity) o.integrity = device_options::integrity_mode::link;
    o.go_back_n = w.go_back_n;
    o.ack_request_delay_ns = std::uint64_t{w.ack_delay_us} * 1000;
    if (w.auth) {  // both ends: the same key, made up for the run
        device_options::auth_key_bytes key;
        for (std::size_t i = 0; i < key.size(); ++i) key[i] = static_cast<std::byte>(i * 131 + 17);
        o.auth_key = key;
    }
    return o;
}

loop_options loop_options_for(const workload& w) {
    loop_options o;
    o.busy_poll = std::chrono::microseconds(w.busy_poll_us);
    o.coalesce_wakeups = w.coalesce;
    return o;
}

side_result vmrdma_server(const std::string& uri, const workload& w, const std::function<void()>& ready) {
    event_loop loop(loop_options_for(w));
    auto dev = device::open(loop, uri, device_options_for(w));
    auto ep = dev->open_endpoint(endpoint_id, {.weight = 1, .listen = true});
    std::vector<std::byte> memory(region_size(w));
    std::memset(memory.data(), 0x5a, memory.size());
    auto mr = ep.register_memory(memory, access::remote_write | access::remote_read | access::local_write);
    std::array<std::byte, 16> control{};
    auto control_mr = ep.register_memory(control, access::local_write);
    ready();
    side_result r;
    auto body = [&]() -> task<void> {
        auto conn = co_await ep.accept();
        auto desc = mr.remote().to_bytes();
        std::memcpy(control.data(), desc.data(), desc.size());
        double cpu0 = 0;
        clock_type::time_point t0;
        auto start = [&]() -> task<void> {
            co_await conn.send(control_mr, 0, 16, tag_descriptor);
            cpu0 = cpu_now();
            t0 = clock_type::now();
        };
        if (w.kind == mode::send) {
            // Keep `depth` receives posted; the client's sends land in turn.
            // Posted before the client learns where to send: else its first
            // sends found none, were refused (receiver not ready) and a
            // window's frames were sent again (113-258 a run).
            std::uint64_t received = 0;
            std::stop_source finished;
            bool done_seen = false;
            std::optional<error> failure;
            async_scope scope;
            auto receiver = [&](unsigned slot) -> task<void> {
                while (!finished.stop_requested()) {
                    recv_result got;
                    try {
                        got = co_await ep.recv(mr, slot_offset(w, slot), static_cast<std::uint32_t>(w.size), 0, 0,
                                               finished.get_token());
                    } catch (const error& e) {
                        if (e.code() != errc::cancelled && !failure) failure = e;
                        break;
                    }
                    if (got.tag == tag_done) {
                        done_seen = true;
                        finished.request_stop();  // the other receives are cancelled
                        break;
                    }
                    ++received;
                    r.bytes += static_cast<double>(got.length);
                }
            };
            for (unsigned i = 0; i < w.depth; ++i) scope.spawn(receiver(i));
            co_await start();
            co_await scope.join();
            // The client leaves once its last message is delivered, and
            // the receives still posted here fail with peer_gone; one of
            // them can run before the receive that took that message does
            // (it failed 2 runs in 8 of `--mode send --transport unix -s
            // 4K`, the daemon closing fast). Any other failure, or one
            // before the last message, fails the run.
            if (failure && !(done_seen && failure->code() == errc::peer_gone)) throw *failure;
            r.messages = static_cast<double>(received);
        } else {
            co_await start();
            co_await ep.recv(control_mr, 0, 8, tag_done);
        }
        r.seconds = elapsed(t0);
        r.cpu_seconds = cpu_now() - cpu0;
    };
    loop.run(body());
    r.ok = true;
    auto st = dev->stats();
    r.retransmits = static_cast<double>(st.retransmits);
    r.timeouts = static_cast<double>(st.timeouts);
    return r;
}

side_result vmrdma_client(const std::string& uri, const std::string& server_mac, const workload& w) {
    event_loop loop(loop_options_for(w));
    auto dev = device::open(loop, uri, device_options_for(w));
    auto ep = dev->open_endpoint(endpoint_id);
    // Registrable memory: ordinary memory on eth:, a sealed memfd that the
    // driver domain maps (zero copy) on unix:.
    registrable_buffer memory(region_size(w)), control_buffer(16);
    std::memset(memory.data(), 0xa5, memory.size());
    auto mr = ep.register_memory(memory.span().first(region_size(w)), access::local_write);
    auto control = control_buffer.span().first(16);
    auto control_mr = ep.register_memory(control, access::local_write);
    side_result r;
    auto body = [&]() -> task<void> {
        auto descriptor = ep.recv(control_mr, 0, 16, tag_descriptor);
        auto conn = co_await ep.connect(mac_address::parse(server_mac), endpoint_id);
        co_await std::move(descriptor);
        auto remote = remote_region::from_bytes(control);
        const auto len = static_cast<std::uint32_t>(w.size);
        std::vector<double> latencies;
        double cpu0 = cpu_now();
        auto t0 = clock_type::now();
        std::uint64_t done = 0;
        if (w.kind == mode::lat) {
            while (keep_going(w, done, t0)) {
                auto s = clock_type::now();
                co_await conn.write(mr, 0, remote, 0, len);
                latencies.push_back(std::chrono::duration<double, std::micro>(clock_type::now() - s).count());
                ++done;
            }
        } else {
            // `depth` workers, each with its own slot, keep that many in flight.
            async_scope scope;
            auto worker = [&](unsigned slot) -> task<void> {
                const std::uint64_t off = slot_offset(w, slot);
                while (keep_going(w, done, t0)) {
                    if (w.kind == mode::write)
                        co_await conn.write(mr, off, remote, off, len);
                    else if (w.kind == mode::read)
                        co_await conn.read(mr, off, remote, off, len);
                    else
                        co_await conn.send(mr, off, len, tag_data);
                    ++done;
                }
            };
            for (unsigned i = 0; i < w.depth; ++i) scope.spawn(worker(i));
            co_await scope.join();
        }
        r.seconds = elapsed(t0);
        r.cpu_seconds = cpu_now() - cpu0;
        r.messages = static_cast<double>(done);
        r.bytes = static_cast<double>(done) * static_cast<double>(w.size);
        summarize_latencies(latencies, r);
        co_await conn.send(control_mr, 0, 8, tag_done);
    };
    loop.run(body());
    r.ok = true;
    auto st = dev->stats();
    r.retransmits = static_cast<double>(st.retransmits);
    r.timeouts = static_cast<double>(st.timeouts);
    return r;
}

}  // namespace vmrdma::bench
