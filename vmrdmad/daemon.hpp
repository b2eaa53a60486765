// vmrdmad: the user-space driver domain of the split driver
// (docs/split-driver.md). It owns the NIC (an engine_host: the proto/ engine
// on a raw socket, hosted on coro's event loop as in-process users get it)
// and serves each frontend through proto/frontend.h, the same frontend
// service backend_kmod hosts, over a UNIX socket: the control
// path (hello, endpoints, registration of sealed memfds) on the socket, the
// data path through per-frontend shared request/response rings
// (proto/ring.h) with eventfd doorbells. Each frontend names only its own
// endpoints, regions and connections; everything it had is revoked when its
// socket closes. With --xen, Xen guests are frontends too (serve_guest,
// guest_port below; xen_backend.hpp): ring and regions in granted pages,
// control requests on the ring, revoked when the guest goes.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <coroutine>
#include <vector>
#include <cstdint>
#include <memory>
#include <set>
#include <stop_token>
#include <string>
#include <string_view>
#include <unordered_map>

#include "engine_host.hpp"
#include "vmrdma/async_scope.hpp"
#include "vmrdma/event_loop.hpp"
#include "vmrdma/rdma.hpp"
#include "vmrdma/task.hpp"

extern "C" {
#include "proto/control.h"
#include "proto/ring.h"
}

namespace vmrdmad {

// Per-frontend limits; a request beyond one fails with resources_exhausted
// (-ENOSPC) and a reason.
struct limits {
    std::uint32_t endpoints = 4;
    std::uint32_t regions = 256;
    std::uint64_t registered_bytes = std::uint64_t{1} << 30;
    std::uint32_t max_ring_size = 1024;  // entries per ring (power of two)
    std::uint32_t max_weight = 16;       // requested endpoint weights are clamped to this
    std::uint32_t connections = 64;      // open or being opened, at once
};

// Shares per uid (docs/split-driver.md, "Per-uid limits"): no uid holds
// more than these of the daemon's frontends (connections to its socket),
// the engine's endpoints and its connections (0: half of each pool), and a
// uid that already holds its reserve takes no unit that would leave fewer
// than reserve_percent of the pool free for the others. Root and vmrdmad's
// own uid (the administrators) and Xen guests are not limited per uid.
struct uid_limits {
    std::uint32_t frontends = 0, endpoints = 0, connections = 0;
    std::uint32_t reserve_percent = 12;
};

// The daemon's poll window by default (measured: docs/benchmarks.md,
// "The daemon polls before it sleeps").
inline constexpr std::chrono::microseconds default_poll{50};

struct options {
    std::string socket_path = "/run/vmrdma.sock";
    // Who may connect: the socket's mode and group (default 0660 and
    // vmrdmad's group: add the users who may use the device to that group,
    // or pass a group). -1: leave the group as it is.
    mode_t socket_mode = 0660;
    gid_t socket_group = static_cast<gid_t>(-1);
    limits per_frontend;
    // Connections to the socket the daemon serves at once (each holds a
    // socket and, after HELLO, a ring memfd and two eventfds).
    std::uint32_t max_frontends = 1024;
    uid_limits per_uid;
    // On stop: how long to let operations in flight finish before the
    // frontends are disconnected anyway.
    std::chrono::milliseconds drain_timeout{5000};
    // Bytes of WRITE/READ/SEND all frontends together may have in flight at
    // the engine; under contention each frontend gets a share in proportion
    // to its weight (the sum of its endpoints' weights), and what is beyond
    // it waits in the daemon. Whatever the bottleneck (wire, CPU, the peer),
    // throughput follows bytes in flight, so the weights hold; the engine's
    // DRR alone shares only a transmit queue that is backlogged. A frontend
    // with nothing in flight may always post one operation, however big.
    // 0: no admission control (DRR only).
    std::uint64_t inflight_bytes = 4u << 20;
    // The engine's sizes (its tables are shared by every frontend).
    vmrdma::device_options engine{};
    // How long the daemon's loop keeps turning after its last work before
    // it sleeps (loop_options::busy_poll; docs/split-driver.md, "Polling
    // before sleeping"). A frontend's next request or the peer's next frame
    // often comes within microseconds; caught by a turn it costs no wake-up.
    std::chrono::microseconds poll = default_poll;
};

// The loop a daemon with these options runs on: it polls opts.poll before
// it sleeps, gathers a stream's frames in a sleep rather than a spin
// (loop_options::gather_while_polling: its frontends block, so their round
// trips are never shorter than a stream's gaps), and a spin that finds
// nothing gives the core to whoever waits for it (yield_while_polling:
// frontends that spin, as MPI ranks do, may need it).
vmrdma::loop_options loop_options_for(const options& opts);

// Read from any thread.
struct stats {
    std::atomic<std::uint64_t> frontends_accepted{0};
    std::atomic<std::uint64_t> frontends_active{0};
    std::atomic<std::uint64_t> frontends_cleaned_up{0};
    std::atomic<std::uint64_t> requests{0};     // ring requests taken
    std::atomic<std::uint64_t> responses{0};
    std::atomic<std::uint64_t> doorbells{0};    // response doorbells rung (only while a frontend waits)
    std::atomic<std::uint64_t> rejected{0};     // requests naming what the frontend does not own, or malformed
    std::atomic<std::uint64_t> violations{0};   // ring protocol broken: the frontend was disconnected
    std::atomic<std::uint64_t> control_errors{0};  // control requests refused
    std::atomic<std::uint64_t> drained{0};      // requests answered -ESHUTDOWN while stopping
    std::atomic<std::uint64_t> stray{0};        // engine completions no frontend owns
    std::atomic<std::uint64_t> uid_refused{0};  // frontends, endpoints, connections refused: a uid's share
};

// One Xen guest as the daemon sees it (vmrdmad/xen_backend.hpp implements
// it with libxenevtchn and libxengnttab; tests can fake it): the calls that
// need Xen, so the request handling stays the daemon's own.
class guest_port {
public:
    virtual ~guest_port() = default;
    // Readable when the guest kicked its event channel.
    virtual int doorbell_fd() const = 0;
    // Takes the pending event and unmasks the channel (before draining).
    virtual void doorbell_ack() = 0;
    // Responses are in the ring.
    virtual void notify() = 0;
    // Maps `count` of the guest's grant refs as one contiguous range;
    // nullptr with errno set on failure.
    virtual void* map(const std::uint32_t* refs, std::uint32_t count, bool writable) = 0;
    virtual void unmap(void* addr, std::uint32_t count) = 0;
};

struct guest_params {
    std::uint32_t domid = 0;
    std::uint32_t admin_weight = 0;  // the backend node's "weight" (0: the guest's own)
};

class daemon final : private vmrdma::detail::engine_events {
public:
    // Opens the driver domain's NIC (`device`: eth:IFNAME) with an engine of
    // opts.engine's sizes, then binds and listens on options.socket_path (an
    // existing socket file there is replaced).
    daemon(vmrdma::event_loop& loop, std::string_view device, options opts);
    ~daemon();
    daemon(const daemon&) = delete;
    daemon& operator=(const daemon&) = delete;

    // Accepts and serves frontends until `stop` fires; then drains: stops
    // listening, marks every ring DRAINING, answers new requests with
    // -ESHUTDOWN, fails waiting receives and accepts with -ESHUTDOWN, lets
    // the rest finish (up to options.drain_timeout), then disconnects every
    // frontend, revokes what it had and returns.
    vmrdma::task<void> serve(std::stop_token stop);
    const stats& counters() const noexcept { return stats_; }

    // Serves one Xen guest (docs/xen.md) as a frontend: `ring` is its shared
    // ring (proto/ring.h, `size` entries), already mapped and its header
    // checked by the caller, which keeps it and `port` mapped until this
    // returns. The control requests (VR_RING_OPEN_EP/CLOSE_EP/REG/DEREG)
    // arrive on the ring. Runs until `end` fires, the guest breaks the ring
    // protocol or the daemon stops; returns once everything the guest had is
    // closed, deregistered and unmapped; true if it broke the protocol.
    vmrdma::task<bool> serve_guest(guest_port& port, void* ring, std::uint32_t size, guest_params params,
                                   std::stop_token end);
    const options& settings() const noexcept { return opts_; }
    const vmrdma::mac_address& mac() const noexcept { return host_->mac(); }
    std::uint32_t mtu() const noexcept { return host_->mtu(); }

private:
    struct frontend;
    vmrdma::task<void> serve_frontend(int fd);
    vmrdma::task<void> watch_ring(frontend& f);
    // One request taken from a ring: answered now, queued for admission, or
    // handed to the frontend's service (proto/frontend.h).
    void take(frontend& f, const vr_ring_req& req);
    void dispatch(frontend& f, const vr_ring_req& req);
    void ring_control(frontend& f, const vr_ring_req& req);
    // Admission by weight (options::inflight_bytes; the rule is proto/'s
    // vr_svc_admissible, the bytes in flight vr_fe's).
    bool admissible(const frontend& f, std::uint64_t bytes) const;
    void pump_admission();
    void attach_service(frontend& f, std::uint32_t ring_size);
    void sync_limits(frontend& f);
    frontend* owner_of(std::uint16_t ep) const;
    // engine_events
    void engine_completion(const vr_completion& wc) override;
    int engine_accept(std::uint16_t ep, const std::uint8_t* mac, std::uint16_t peer_ep) override;
    void engine_input_taken() override { ring_doorbells(); }
    vmrdma::task<void> cleanup(frontend& f);
    // Takes at most ring_pass_budget requests; true when more are waiting.
    bool drain_ring(frontend& f);
    // One frontend's requests per turn of the loop: a flooding frontend
    // cannot keep the others (and the engine) from their turns.
    static constexpr unsigned ring_pass_budget = 64;
    // Refused requests per second beyond which a frontend is dropped as a
    // violation (a well-behaved one is refused rarely).
    static constexpr std::uint64_t invalid_per_second = 10000;
    bool too_many_invalid(frontend& f);
    void respond(frontend& f, const vr_ring_rsp& rsp);
    void ring_doorbells();
    void ring(frontend& f);
    // What the socket's VR_CTL_* and the Xen ring's VR_RING_* control
    // requests share: 0 or a negative errno, with the reason in `why`.
    std::int32_t open_ep(frontend& f, std::uint64_t id, std::uint64_t weight, bool listen, std::string& why);
    std::int32_t close_ep(frontend& f, std::uint64_t id, std::string& why);
    std::int32_t check_reg(frontend& f, std::uint64_t ep, std::uint64_t length, std::uint64_t access,
                           std::string& why);
    std::int32_t dereg(frontend& f, std::uint64_t key, std::string& why);
    // VR_RING_REG on a guest's ring: maps the granted pages and registers them.
    std::int32_t guest_reg(frontend& f, const vr_ring_req& req, std::uint64_t& key);
    void violation(frontend& f, const char* what);
    // Per-uid shares (options::per_uid).
    enum class pool { frontends, endpoints, connections };
    struct uid_use {
        std::uint32_t held[3] = {};
        std::uint64_t refused = 0;
    };
    bool uid_limited(const frontend& f) const;
    std::uint32_t pool_total(pool p) const;
    std::uint32_t pool_limit(pool p) const;
    std::uint32_t pool_reserve(pool p) const;
    std::uint32_t pool_used(pool p) const;
    std::uint32_t uid_holds(uid_t uid, pool p) const;
    // Whether f's uid may take one more unit of p; if not, counts the
    // refusal and says why.
    bool uid_may_take(frontend& f, pool p, std::string& why);
    // Returns false when the frontend must be dropped.
    bool control(frontend& f, const vr_ctl_msg& msg, int fd);
    // VR_CTL_ADMIN_*: fills the reply (and, for a list, the records).
    void admin(frontend& f, const vr_ctl_msg& msg, vr_ctl_msg& reply, std::string& records);

    vmrdma::event_loop& loop_;
    options opts_;
    std::unique_ptr<vmrdma::detail::engine_host> host_;
    int listen_fd_ = -1;
    std::set<frontend*> frontends_;
    std::unordered_map<std::uint32_t, frontend*> by_id_;     // the id in engine cookies
    std::unordered_map<std::uint16_t, frontend*> ep_owner_;  // engine endpoint ids
    std::size_t turn_hook_ = 0;
    bool admission_due_ = false;  // bytes were released: look at the queues this turn
    // Frontends (by id) whose response doorbell is due: rung once after the
    // engine pass that answered them (ring_doorbells, from engine_input_taken
    // and the turn hook).
    std::vector<std::uint32_t> doorbells_due_;
    std::uint64_t doorbell_pass_ = 1;  // ring_doorbells() calls
    std::uint32_t next_frontend_id_ = 1;
    std::unordered_map<uid_t, std::uint64_t> uid_refused_;  // refusals per uid (vmrdmactl uids)
    bool draining_ = false;
    bool unlinked_ = false;
    vmrdma::async_scope scope_;
    stats stats_;
};

}  // namespace vmrdmad
