#include "bench/support/daemon_path.hpp"

#include <algorithm>
#include <chrono>

#include "vmrdma/runtime.hpp"
#include "vmrdmad/daemon.hpp"

namespace vmrdma::bench {

side_result daemon_side(const std::string& device_uri, const std::string& socket_path, int stop_fd,
                        const device_options& engine, const loop_options& loop_opts, unsigned poll_us,
                        const std::function<void()>& ready) {
    vmrdmad::options opts;
    opts.socket_path = socket_path;
    opts.engine = engine;
    opts.poll = std::chrono::microseconds(poll_us);
    loop_options daemon_loop = vmrdmad::loop_options_for(opts);  // as vmrdmad runs
    daemon_loop.busy_poll = std::max<std::chrono::nanoseconds>(loop_opts.busy_poll, opts.poll);
    daemon_loop.coalesce_wakeups = loop_opts.coalesce_wakeups;  // --no-coalesce
    event_loop loop(daemon_loop);
    vmrdmad::daemon d(loop, device_uri, opts);  // listening from here on
    side_result r;
    double cpu0 = cpu_now();
    auto t0 = std::chrono::steady_clock::now();
    ready();
    auto body = [&]() -> task<void> {
        std::stop_source stop;
        async_scope scope;
        scope.spawn([](event_loop& l, int fd, std::stop_source& s) -> task<void> {
            char c;
            try {
                co_await l.submit([&](io_uring_sqe* sqe) { io_uring_prep_read(sqe, fd, &c, 1, 0); });
            } catch (const error&) {
            }
            s.request_stop();
        }(loop, stop_fd, stop));
        co_await d.serve(stop.get_token());
        stop.request_stop();
        co_await scope.join();
    };
    loop.run(body());
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    r.cpu_seconds = cpu_now() - cpu0;
    r.ok = true;
    return r;
}

unsigned default_daemon_poll_us() { return static_cast<unsigned>(vmrdmad::default_poll.count()); }

}  // namespace vmrdma::bench
