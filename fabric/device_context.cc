#include "fabric/device_context.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cstdio>
#include <map>

namespace vmrdma::fabric {

using namespace std::chrono_literals;

namespace {
// The helper turns the loop after this long without a call.
constexpr auto helper_period = 10ms;
// How long a message's ACK waits for an answer to carry it (below).
constexpr std::uint64_t ack_request_delay_us = 10;

std::int64_t now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

std::mutex registry_mutex;
std::map<std::string, std::weak_ptr<device_context>>& registry() {
    static std::map<std::string, std::weak_ptr<device_context>> r;
    return r;
}
}  // namespace

vmrdma::device_options provider_device_options(const provider_environment& env) {
    vmrdma::device_options o;
    o.max_endpoints = 32;
    o.max_connections = 256;
    o.max_posted_recvs = 128;
    // eth:: application threads polling for completions read frames
    // themselves, instead of waiting for the helper's wake-up (docs/mpi.md,
    // Progress). VMRDMA_FI_RECEIVE_IN_TURNS=0 turns it off, to compare (on
    // eth: with VMRDMA_ETH_RX=uring too: an eth: device reads its ring in
    // turns by default, and then only the ring's size changes).
    o.receive_in_turns = env.receive_in_turns;
    // A message's ACK waits up to this long for the answer the application
    // is about to send, which then carries it: in a ping-pong every message
    // otherwise cost an ACK frame of its own on each side, sent before the
    // answer (docs/mpi.md, Progress). VMRDMA_FI_ACK_DELAY_US overrides it
    // (0: at once), to compare.
    o.ack_request_delay_ns = env.ack_delay_us.value_or(ack_request_delay_us) * 1000;
    // What each frame's CRC covers: every payload byte (the default), or,
    // with VMRDMA_FI_INTEGRITY=link on both ends, headers only, payloads
    // resting on the link's FCS (device_options::integrity).
    if (env.link_integrity) o.integrity = vmrdma::device_options::integrity_mode::link;
    // The provider keeps its own slots posted; the engine's queue only
    // absorbs a burst that finds them all taken.
    o.unexpected_messages = 16;
    o.unexpected_message_size = 65 * 1024;
    // A rank may compute for minutes between calls into the provider; the
    // helper thread keeps its engine answering, but its slots may stay full.
    o.receiver_not_ready_timeout_ns = 600'000'000'000ull;
    return o;
}

std::shared_ptr<device_context> device_context::acquire(const std::string& uri) {
    std::lock_guard lock(registry_mutex);
    auto& slot = registry()[uri];
    if (auto existing = slot.lock()) return existing;
    std::shared_ptr<device_context> fresh(new device_context(uri));
    slot = fresh;
    return fresh;
}

device_context::device_context(std::string uri) : uri_(std::move(uri)) {
    const auto env = read_provider_environment();  // first: it may refuse a value
    print_stats_ = env.stats;
    helper_wake_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (helper_wake_ < 0) throw_errno(-errno, "eventfd failed");
    try {
        device_ = vmrdma::device::open(loop_, uri_, provider_device_options(env));
    } catch (...) {
        ::close(helper_wake_);
        throw;
    }
    any_memory_ = uri_.rfind("unix:", 0) != 0;
    last_call_ns_ = now_ns();
    helper_ = std::thread([this] { helper(); });
}

device_context::~device_context() {
    stopping_ = true;
    wake_helper();
    helper_.join();
    ::close(helper_wake_);
    std::lock_guard lock(mutex_);
    if (print_stats_) {
        auto c = device_->stats();
        std::fprintf(stderr,
                     "vmrdma %s: tx %llu frames %llu bytes, rx %llu frames %llu bytes, retransmits %llu, "
                     "timeouts %llu, duplicates %llu, dropped %llu, naks sent %llu received %llu\n",
                     uri_.c_str(), (unsigned long long)c.tx_frames, (unsigned long long)c.tx_bytes,
                     (unsigned long long)c.rx_frames, (unsigned long long)c.rx_bytes,
                     (unsigned long long)c.retransmits, (unsigned long long)c.timeouts,
                     (unsigned long long)c.duplicates, (unsigned long long)c.rx_dropped,
                     (unsigned long long)c.naks_sent, (unsigned long long)c.naks_received);
    }
    // The device's last DISCONNECTs leave on a turn of the loop (the helper
    // has gone: this thread submits from now on).
    for (int i = 0; i < 4; ++i) loop_.run_once();
    device_.reset();
    for (int i = 0; i < 16 && !loop_.run_once(); ++i) {
    }
}

// One pass reads the socket (the engine host's turn hook); more passes only
// while the one before woke something (the engine completed an operation,
// the coroutine that awaits it handles it and may send), up to four. Four
// passes every time were four recvmmsg calls per fi_cq_read, most of the
// time between a frame's arrival and the answer MPI sent to it (docs/mpi.md,
// Progress).
bool device_context::passes() {
    bool pending = loop_.run_ready();
    for (int i = 1; i < 4 && loop_.has_ready_work(); ++i) pending = loop_.run_ready();
    return pending;
}

void device_context::turn() {
    if (passes()) wake_helper();
}

// Arms what wakes a sleeper (eth:'s socket poll, armed only as the loop
// goes idle: docs/mpi.md, Progress); the helper submits it.
void device_context::prepare_to_wait() {
    if (loop_.prepare_to_wait()) wake_helper();
}

void device_context::wake_helper() noexcept {
    if (helper_woken_.exchange(true, std::memory_order_acq_rel)) return;  // once until it reads
    std::uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(helper_wake_, &one, sizeof one);
}

void device_context::progress() {
    const auto resumed = loop_.stats().resumptions, reaped = loop_.stats().completions;
    turn();
    last_call_ns_.store(now_ns(), std::memory_order_relaxed);
    if (helper_waiting_.load(std::memory_order_acquire)) let_helper_in();
    // On unix: and xen: the engine runs in another process (vmrdmad, the
    // backend; its transport counts itself on the loop: shares_cores()),
    // whose next step is often what this thread polls for, and which may be
    // waiting for this very core: an MPI rank calls fi_cq_read in a loop. A
    // call that found nothing gives the core away once. NetPIPE through
    // vmrdmad, two ranks and two polling daemons on two cores: 230-320 us a
    // small message; 15-18 us with the ranks and the daemons (loop_options::
    // yield_while_polling) yielding (docs/mpi.md, Progress).
    if (loop_.shares_cores() && loop_.stats().resumptions == resumed && loop_.stats().completions == reaped &&
        !loop_.has_ready_work())
        std::this_thread::yield();
}

// With the mutex held, lets the helper, which waits for it to submit what
// the loop has queued, have it. std::mutex is not fair: an application
// polling fi_cq_read took it back at once, every time, while the helper
// slept and woke on it (a futex wake per call, a context switch per wake)
// and what it was to submit waited. Bounded: a helper not given a core
// soon gets the next chance, rather than the application waiting a
// scheduler tick for it.
void device_context::let_helper_in() {
    mutex_.unlock();
    for (int i = 0; i < 64 && helper_waiting_.load(std::memory_order_acquire); ++i) std::this_thread::yield();
    mutex_.lock();
}

void device_context::progress_and_wait(std::unique_lock<std::mutex>& lock, int extra_fd,
                                       std::chrono::milliseconds max_wait) {
    progress();
    prepare_to_wait();
    pollfd fds[2] = {{loop_.wait_fd(), POLLIN, 0}, {extra_fd, POLLIN, 0}};
    lock.unlock();
    ::poll(fds, extra_fd >= 0 ? 2 : 1, static_cast<int>(max_wait.count()));
    lock.lock();
}

// The helper is the loop's only submitter (application threads turn it
// with run_ready, which never enters the kernel): io_uring runs an
// operation's completion task work on the thread that submitted it, and an
// application thread blocked in its own read(2) with a timeout would get
// EINTR (fi_pingpong's control socket did). It waits in poll(2), where that
// task work runs; the application wakes it when it has queued operations.
// Once the application has not called in for helper_period, the helper
// also turns the loop, so the engine keeps answering its peers.
void device_context::helper() {
    bool asked = true;  // to submit (wake_helper), or to stop
    while (!stopping_.load(std::memory_order_relaxed)) {
        const auto idle = std::chrono::nanoseconds(now_ns() - last_call_ns_.load(std::memory_order_relaxed));
        const bool app_idle = idle >= helper_period;
        // The lock only for work: a helper taking it every period from an
        // application that polls made the application wait for it.
        if (asked || app_idle) {
            helper_waiting_.store(true, std::memory_order_release);
            std::lock_guard lock(mutex_);
            helper_waiting_.store(false, std::memory_order_release);
            if (app_idle) {
                passes();                 // it submits what they queue itself, below
                loop_.prepare_to_wait();  // it sleeps on the loop's completions too
            }
            loop_.submit_pending();
        }
        // While the application turns the loop it takes the completions;
        // when it is idle the helper wakes for them too.
        pollfd fds[2] = {{helper_wake_, POLLIN, 0}, {loop_.wait_fd(), POLLIN, 0}};
        ::poll(fds, app_idle ? 2 : 1,
               static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(helper_period).count()));
        std::uint64_t v;
        asked = ::read(helper_wake_, &v, sizeof v) == sizeof v;
        // After the read: a wake_helper() since then writes again, and one
        // before it finds its operations submitted at the top of the loop.
        helper_woken_.store(false, std::memory_order_release);
    }
}

}  // namespace vmrdma::fabric
