// One vmrdma device per (process, device URI), shared by every domain opened
// on it: the event loop, the device, the mutex that serialises every call
// into the provider on that device, and the helper thread that turns the
// loop when no application thread has for a while (docs/mpi.md, "Progress").
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>

#include "fabric/environment.hpp"
#include "fabric/wake_fd.hpp"
#include "vmrdma/rdma.hpp"
#include "vmrdma/runtime.hpp"

namespace vmrdma::fabric {

class messenger;

class device_context {
public:
    // The shared context for `uri`, opened on first use; throws vmrdma::error.
    static std::shared_ptr<device_context> acquire(const std::string& uri);
    ~device_context();

    const std::string& uri() const noexcept { return uri_; }
    std::mutex& mutex() noexcept { return mutex_; }
    event_loop& loop() noexcept { return loop_; }
    vmrdma::device& device() noexcept { return *device_; }
    // Whether the transport registers any memory (eth:, xen:) or only
    // registrable memory (unix:).
    bool any_memory() const noexcept { return any_memory_; }
    // Whether the engine runs in this process (eth:), so that registering
    // an application's buffer for one transfer costs a table entry, not a
    // round trip to a driver domain: large transfers then move from and
    // into the application's memory directly (docs/mpi.md, Messages).
    bool in_process_engine() const noexcept { return uri_.rfind("eth:", 0) == 0; }
    // The provider's endpoints on this device in this process, by id:
    // messages between them (and to oneself) stay in the process.
    std::unordered_map<std::uint16_t, messenger*>& local_endpoints() noexcept { return local_; }

    // With the mutex held: turns the loop without blocking until it is idle
    // (a few turns at most). Every entry point calls it.
    void progress();
    // With the mutex held: as progress(), then waits outside the lock, in
    // poll(2) on the loop's wait fd and `extra_fd` (-1: none), at most
    // `max_wait`; `lock` is released while waiting.
    void progress_and_wait(std::unique_lock<std::mutex>& lock, int extra_fd, std::chrono::milliseconds max_wait);
    // Before the application sleeps on a wait fd of ours (fi_trywait).
    void prepare_to_wait();

private:
    explicit device_context(std::string uri);
    void turn();  // a few turns of the loop without entering the kernel
    bool passes();  // those turns; true when operations wait to be submitted
    void helper();
    void wake_helper() noexcept;
    void let_helper_in();

    std::string uri_;
    std::mutex mutex_;
    // Turned by application threads (run_ready) and submitted by the helper:
    // the kernel must post completions for whichever thread polls, so its
    // task work is not deferred to one thread (no coalesced wake-ups).
    event_loop loop_{loop_options{.coalesce_wakeups = false}};
    std::unique_ptr<vmrdma::device> device_;
    bool any_memory_ = false;
    bool print_stats_ = false;  // VMRDMA_FI_STATS=1
    std::unordered_map<std::uint16_t, messenger*> local_;
    std::atomic<std::int64_t> last_call_ns_{0};  // the application's last progress call
    int helper_wake_ = -1;  // eventfd: operations wait to be submitted, or stop
    std::atomic<bool> helper_woken_{false};    // helper_wake_ written, not yet read
    std::atomic<bool> helper_waiting_{false};  // the helper waits for the mutex
    std::atomic<bool> stopping_{false};
    std::thread helper_;
};

// The device options the provider opens devices with (eth:): room for many
// endpoints and the provider's own receive slots, and patience with ranks
// that compute for a long time between calls; what the environment asks
// (fabric/environment.hpp) on top.
vmrdma::device_options provider_device_options(const provider_environment& env);

}  // namespace vmrdma::fabric
