#include "daemon.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>

#include <array>
#include <atomic>
#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <unordered_map>
#include <utility>

extern "C" {
#include "proto/engine.h"
#include "proto/frontend.h"
#include "proto/service.h"
#include "proto/xen.h"
}

static_assert(std::endian::native == std::endian::little, "proto/ring.h is little-endian");

namespace vmrdmad {

using vmrdma::errc;
using vmrdma::error;
using vmrdma::task;

namespace {

std::size_t page_size() { return static_cast<std::size_t>(sysconf(_SC_PAGESIZE)); }

void close_fd(int& fd) noexcept {
    if (fd >= 0) ::close(std::exchange(fd, -1));
}

}  // namespace

struct daemon::frontend {
    std::uint32_t id = 0;        // names it in engine cookies
    pid_t pid = 0;
    uid_t uid = static_cast<uid_t>(-1);
    gid_t gid = static_cast<gid_t>(-1);
    limits lim;                  // the daemon's defaults, then what the administrator set
    std::uint64_t requests = 0, responses = 0, violations = 0, failed = 0;  // rejected: svc.rejected
    std::uint32_t in_flight = 0;      // requests taken and not yet answered
    // Refused requests in the current second (svc.rejected at its start):
    // a frontend that sustains more than invalid_per_second is dropped.
    std::uint64_t rejected_mark = 0;
    std::chrono::steady_clock::time_point rejected_since{};
    std::deque<vr_ring_req> waiting;  // waiting for admission, in ring order
    std::stop_source ended;      // a Xen guest: fires when it is to be disconnected
    guest_port* port = nullptr;  // a Xen guest (serve_guest), else a socket frontend
    int sock = -1;
    bool hello_done = false;
    bool dead = false;
    bool doorbell_due = false;   // in daemon::doorbells_due_
    std::uint64_t rung_in_pass = 0;  // daemon::doorbell_pass_ when its doorbell last rang at once
    std::string over_share;      // its uid had its share of frontends: refused at its first message
    // Shared ring (we created it; the frontend writes into it).
    int ring_fd = -1, req_efd = -1, rsp_efd = -1;
    void* ring_mem = nullptr;
    std::size_t ring_len = 0;
    vr_ring_shared* shared = nullptr;
    const vr_ring_req* reqs = nullptr;
    vr_ring_rsp* rsps = nullptr;
    std::uint32_t size = 0, req_cons = 0, rsp_prod_pvt = 0;
    // What it owns and its requests at the engine: the frontend service
    // (proto/frontend.h) over this storage, once it has a ring.
    vr_fe svc{};
    std::vector<vr_fe_ep> eps;
    std::vector<vr_fe_conn> conns;
    std::vector<vr_fe_region> region_records;
    std::vector<vr_fe_slot> slots;
    std::vector<std::uint16_t> free_slots;
    // Each region's mapping, by key (the service's records point here).
    struct region_entry {
        void* map = nullptr;
        std::size_t map_len = 0;
        std::uint64_t key = 0;
        guest_port* port = nullptr;  // granted pages (map_len / 4096 of them), else a memfd mapping
        ~region_entry() {
            if (map && port)
                port->unmap(map, static_cast<std::uint32_t>(map_len / VR_XEN_PAGE_SIZE));
            else if (map)
                munmap(map, map_len);
        }
    };
    std::unordered_map<std::uint64_t, std::unique_ptr<region_entry>> regions;
    // The service hands a region back (closed endpoint, teardown): unmapped
    // here, after the engine has forgotten it.
    static void release(void* ctx, void* host) {
        static_cast<frontend*>(ctx)->regions.erase(static_cast<region_entry*>(host)->key);
    }
    // The service's answers (vr_fe host.respond).
    static void answered(void* ctx, const vr_svc_pending* req, const vr_ring_rsp* rsp);
    vmrdma::async_scope ops;
    std::stop_source stop;
    daemon* owner = nullptr;

    ~frontend() {
        regions.clear();
        if (ring_mem) munmap(ring_mem, ring_len);
        close_fd(ring_fd);
        close_fd(req_efd);
        close_fd(rsp_efd);
        close_fd(sock);
    }
};

namespace {
// A refusal as the daemon reports it: the service's reason, with the limit
// in force when the reason is a limit.
std::int32_t refused(int rc, const char* reason, std::uint64_t limit, std::string& why) {
    why = reason ? reason : std::strerror(-rc);
    if (rc == -ENOSPC && limit) why += " (" + std::to_string(limit) + ")";
    return rc;
}

}  // namespace

vmrdma::loop_options loop_options_for(const options& opts) {
    vmrdma::loop_options o;
    o.busy_poll = opts.poll;
    o.gather_while_polling = true;
    o.yield_while_polling = true;
    return o;
}

daemon::daemon(vmrdma::event_loop& loop, std::string_view device, options opts)
    : loop_(loop), opts_(std::move(opts)) {
    constexpr std::string_view eth = "eth:";
    if (device.substr(0, eth.size()) != eth)
        throw error(errc::invalid_argument, "the driver domain's NIC must be eth:IFNAME, not '" +
                                                std::string(device) + "'");
    vmrdma::detail::engine_events& events = *this;  // a private base: converted here
    host_ = std::make_unique<vmrdma::detail::engine_host>(loop_, events, device.substr(eth.size()), opts_.engine);
    // The engine has its copy; the option stays set (the device record says so).
    if (opts_.engine.auth_key) ::explicit_bzero(opts_.engine.auth_key->data(), opts_.engine.auth_key->size());
    // Bytes released by completions (inside the engine's calls) let queued
    // requests in once per loop turn.
    // The hook may run after the engine's flush in the same turn: true makes
    // the loop turn again without blocking, so what it posted leaves now.
    // Doorbells: the engine host rings those of the responses its frames
    // completed before it transmits (engine_input_taken); this hook, after
    // the engine host's (host_ above), rings the rest in the same turn,
    // before the loop can sleep.
    turn_hook_ = loop_.add_turn_hook([this] {
        ring_doorbells();
        if (!admission_due_) return false;
        pump_admission();
        return true;
    });
    sockaddr_un addr{};
    if (opts_.socket_path.empty() || opts_.socket_path.size() >= sizeof addr.sun_path)
        throw error(errc::invalid_argument, "socket path '" + opts_.socket_path + "' is empty or too long");
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, opts_.socket_path.data(), opts_.socket_path.size());
    listen_fd_ = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (listen_fd_ < 0) throw error(vmrdma::code_from_errno(-errno), "cannot create the UNIX socket");
    // Replace a stale socket left by an earlier daemon, never anything else.
    if (struct stat st {}; ::lstat(opts_.socket_path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode))
        ::unlink(opts_.socket_path.c_str());
    if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0 ||
        ::chmod(opts_.socket_path.c_str(), opts_.socket_mode) < 0 ||
        (opts_.socket_group != static_cast<gid_t>(-1) &&
         ::chown(opts_.socket_path.c_str(), static_cast<uid_t>(-1), opts_.socket_group) < 0) ||
        ::listen(listen_fd_, 64) < 0) {
        int e = errno;
        close_fd(listen_fd_);
        throw error(vmrdma::code_from_errno(-e),
                    "cannot listen on '" + opts_.socket_path + "': " + std::strerror(e));
    }
}

daemon::~daemon() {
    loop_.remove_turn_hook(turn_hook_);
    close_fd(listen_fd_);
    if (!unlinked_) ::unlink(opts_.socket_path.c_str());
    host_->destroy();  // what frontends left is gone; their completions find nobody
}

task<void> daemon::serve(std::stop_token stop) {
    for (;;) {
        int fd = -1;
        bool failed = false;
        try {
            fd = co_await loop_.submit(
                [&](io_uring_sqe* sqe) { io_uring_prep_accept(sqe, listen_fd_, nullptr, nullptr, SOCK_CLOEXEC); },
                stop);
        } catch (const error& e) {
            if (e.code() == errc::cancelled || stop.stop_requested()) break;
            std::fprintf(stderr, "vmrdmad: accept: %s\n", e.what());
            failed = true;
        }
        if (failed) {
            try {
                co_await loop_.sleep_for(std::chrono::milliseconds(10), stop);  // EMFILE and the like
            } catch (const error&) {
            }
            continue;
        }
        scope_.spawn(serve_frontend(fd));
    }
    // Drain: no new frontends (connects are refused from here on), no new
    // requests (answered -ESHUTDOWN), no more waiting for peers (receives
    // and accepts fail -ESHUTDOWN); what is in flight may finish.
    draining_ = true;
    close_fd(listen_fd_);
    ::unlink(opts_.socket_path.c_str());
    unlinked_ = true;
    for (auto* f : frontends_) {
        if (f->shared) VR_RING_WRITE(f->shared->state, std::uint32_t{VR_RING_STATE_DRAINING});
        // Waiting for peers ends now; what the engine is moving may finish.
        if (f->svc.slots)
            vr_fe_answer_waiting(&f->svc, (1u << VR_RING_RECV) | (1u << VR_RING_ACCEPT) | (1u << VR_RING_CONNECT) |
                                             (1u << VR_RING_RESOLVE),
                                 -ESHUTDOWN);
    }
    pump_admission();  // not yet admitted: fail -ESHUTDOWN
    auto deadline = std::chrono::steady_clock::now() + opts_.drain_timeout;
    while (std::chrono::steady_clock::now() < deadline &&
           std::any_of(frontends_.begin(), frontends_.end(), [](frontend* f) { return f->in_flight > 0; })) {
        try {
            co_await loop_.sleep_for(std::chrono::milliseconds(5));
        } catch (const error&) {
            break;
        }
    }
    for (auto* f : frontends_) {
        if (f->in_flight > 0)
            std::fprintf(stderr, "vmrdmad: frontend %u (pid %d): %u operations still in flight after %lld ms; "
                                 "disconnecting it\n",
                         f->id, static_cast<int>(f->pid), f->in_flight,
                         static_cast<long long>(opts_.drain_timeout.count()));
        if (f->port)
            f->ended.request_stop();
        else
            ::shutdown(f->sock, SHUT_RDWR);
    }
    co_await scope_.join();
}

task<void> daemon::serve_frontend(int fd) {
    auto owned = std::make_unique<frontend>();
    frontend& f = *owned;
    f.sock = fd;
    f.id = next_frontend_id_++;
    f.lim = opts_.per_frontend;
    if (ucred cred{}; [&] {
            socklen_t len = sizeof cred;
            return ::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0;
        }()) {
        f.pid = cred.pid;
        f.uid = cred.uid;
        f.gid = cred.gid;
    }
    f.owner = this;
    uid_may_take(f, pool::frontends, f.over_share);
    frontends_.insert(&f);
    by_id_[f.id] = &f;
    ++stats_.frontends_accepted;
    ++stats_.frontends_active;
    for (;;) {
        try {
            co_await loop_.submit([&](io_uring_sqe* sqe) { io_uring_prep_poll_add(sqe, f.sock, POLLIN); });
        } catch (const error&) {
            break;
        }
        vr_ctl_msg msg{};
        iovec iov{&msg, sizeof msg};
        alignas(cmsghdr) char control_buf[CMSG_SPACE(sizeof(int) * 4)]{};
        msghdr mh{};
        mh.msg_iov = &iov;
        mh.msg_iovlen = 1;
        mh.msg_control = control_buf;
        mh.msg_controllen = sizeof control_buf;
        ssize_t n = ::recvmsg(f.sock, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
        // Take every passed descriptor, so none leaks; at most one is used.
        int passed = -1;
        for (cmsghdr* c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
            if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
            std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            for (std::size_t k = 0; k < count; ++k) {
                int pfd;
                std::memcpy(&pfd, CMSG_DATA(c) + k * sizeof(int), sizeof pfd);
                if (passed < 0)
                    passed = pfd;
                else
                    ::close(pfd);
            }
        }
        if (n <= 0 || f.dead) {
            close_fd(passed);
            break;
        }
        bool keep = n == static_cast<ssize_t>(sizeof msg) && !(mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) &&
                    msg.magic == VR_CTL_MAGIC;
        if (!keep) ++stats_.violations;
        if (keep) keep = control(f, msg, passed);
        close_fd(passed);
        if (!keep) break;
    }
    co_await cleanup(f);
    frontends_.erase(&f);
    by_id_.erase(f.id);
    --stats_.frontends_active;
    ++stats_.frontends_cleaned_up;
}

task<bool> daemon::serve_guest(guest_port& port, void* ring, std::uint32_t size, guest_params params,
                                std::stop_token end) {
    auto owned = std::make_unique<frontend>();
    frontend& f = *owned;
    f.port = &port;
    f.id = next_frontend_id_++;
    f.pid = -static_cast<pid_t>(params.domid);  // vmrdmactl: a guest shows as pid -DOMID
    f.uid = 0;
    f.gid = 0;
    f.lim = opts_.per_frontend;
    f.owner = this;
    attach_service(f, size);
    f.svc.admin_weight = std::min<std::uint32_t>(params.admin_weight, VR_WEIGHT_MAX);
    f.hello_done = true;
    f.size = size;
    f.shared = static_cast<vr_ring_shared*>(ring);
    f.reqs = reinterpret_cast<const vr_ring_req*>(static_cast<char*>(ring) + vr_ring_req_off());
    f.rsps = reinterpret_cast<vr_ring_rsp*>(static_cast<char*>(ring) + vr_ring_rsp_off(size));
    // The guest wrote the header (proto/xen.h); ours are the indices we produce.
    VR_RING_WRITE(f.shared->rsp_prod, 0u);
    VR_RING_WRITE(f.shared->state, draining_ ? std::uint32_t{VR_RING_STATE_DRAINING} : std::uint32_t{VR_RING_STATE_OPEN});
    VR_RING_WRITE(f.shared->req_event, 1u);
    frontends_.insert(&f);
    by_id_[f.id] = &f;
    ++stats_.frontends_accepted;
    ++stats_.frontends_active;
    {
        std::stop_callback on_end(end, [&f] { f.ended.request_stop(); });
        f.ops.spawn(watch_ring(f));
        auto token = f.ended.get_token();
        while (!token.stop_requested()) {
            try {
                co_await loop_.sleep_for(std::chrono::hours(1), token);
            } catch (const error&) {
            }
        }
    }
    bool broke = f.violations > 0;
    co_await cleanup(f);
    f.shared = nullptr;  // the caller unmaps the ring
    frontends_.erase(&f);
    by_id_.erase(f.id);
    --stats_.frontends_active;
    ++stats_.frontends_cleaned_up;
    co_return broke;
}

bool daemon::control(frontend& f, const vr_ctl_msg& msg, int fd) {
    vr_ctl_msg reply{};
    reply.magic = VR_CTL_MAGIC;
    reply.version = VR_CTL_VERSION;
    reply.type = msg.type;
    reply.seq = msg.seq;
    int send_fds[3];
    int nsend = 0;
    auto refuse = [&](std::int32_t status, const std::string& why) {
        reply.status = status;
        std::snprintf(reply.text, sizeof reply.text, "%s", why.c_str());
        ++stats_.control_errors;
    };
    const auto& lim = f.lim;
    std::string records;
    if (msg.version != VR_CTL_VERSION) {
        refuse(-EPROTO, "control protocol version " + std::to_string(msg.version) + " is not " +
                            std::to_string(VR_CTL_VERSION));
    } else if (!f.over_share.empty()) {
        refuse(-ENOSPC, f.over_share);  // then the frontend is dropped
    } else if (msg.type == VR_CTL_ADMIN_LIST || msg.type == VR_CTL_ADMIN_SET) {
        admin(f, msg, reply, records);
        if (reply.status != 0) ++stats_.control_errors;
    } else if (draining_ && (msg.type == VR_CTL_HELLO || msg.type == VR_CTL_OPEN_EP || msg.type == VR_CTL_REG)) {
        refuse(-ESHUTDOWN, "vmrdmad is shutting down");
    } else if (msg.type != VR_CTL_HELLO && !f.hello_done) {
        refuse(-EPROTO, "say hello first");
    } else {
        switch (msg.type) {
        case VR_CTL_HELLO: {
            if (f.hello_done) {
                refuse(-EPROTO, "hello twice");
                break;
            }
            std::uint64_t want = msg.arg[0] ? msg.arg[0] : 256;
            while (want > lim.max_ring_size && want > VR_RING_MIN_SIZE) want >>= 1;  // stays a power of two
            auto size = static_cast<std::uint32_t>(want);
            if (!vr_ring_size_ok(size)) {
                refuse(-EINVAL, "ring size must be a power of two from 2 to 4096");
                break;
            }
            std::size_t len = (vr_ring_bytes(size) + page_size() - 1) / page_size() * page_size();
            f.ring_fd = memfd_create("vmrdmad-ring", MFD_CLOEXEC | MFD_ALLOW_SEALING);
            f.req_efd = eventfd(0, EFD_CLOEXEC);
            f.rsp_efd = eventfd(0, EFD_CLOEXEC);
            void* p = MAP_FAILED;
            if (f.ring_fd >= 0 && f.req_efd >= 0 && f.rsp_efd >= 0 &&
                ftruncate(f.ring_fd, static_cast<off_t>(len)) == 0 &&
                fcntl(f.ring_fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) == 0)
                p = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED, f.ring_fd, 0);
            if (p == MAP_FAILED) {
                refuse(-errno, "cannot create the shared ring");
                break;
            }
            f.ring_mem = p;
            f.ring_len = len;
            f.size = size;
            f.shared = static_cast<vr_ring_shared*>(p);
            f.reqs = reinterpret_cast<const vr_ring_req*>(static_cast<char*>(p) + vr_ring_req_off());
            f.rsps = reinterpret_cast<vr_ring_rsp*>(static_cast<char*>(p) + vr_ring_rsp_off(size));
            vr_ring_init(f.shared, size);
            attach_service(f, size);
            f.hello_done = true;
            reply.arg[0] = size;
            auto mac = host_->mac();
            for (int i = 0; i < 6; ++i) reply.arg[1] |= std::uint64_t{mac.bytes[i]} << (8 * i);
            reply.arg[2] = host_->mtu();
            send_fds[0] = f.ring_fd;
            send_fds[1] = f.req_efd;
            send_fds[2] = f.rsp_efd;
            nsend = 3;
            f.ops.spawn(watch_ring(f));
            break;
        }
        case VR_CTL_OPEN_EP: {
            std::string why;
            if (auto rc = open_ep(f, msg.arg[0], msg.arg[1], msg.arg[2] != 0, why)) refuse(rc, why);
            break;
        }
        case VR_CTL_CLOSE_EP: {
            std::string why;
            if (auto rc = close_ep(f, msg.arg[0], why)) refuse(rc, why);
            break;
        }
        case VR_CTL_REG: {
            std::uint64_t offset = msg.arg[1], length = msg.arg[2], access = msg.arg[3];
            struct stat st {};
            int seals = fd >= 0 ? fcntl(fd, F_GET_SEALS) : -1;
            std::string why;
            if (msg.arg[0] > 0xffff || !vr_fe_ep_of(&f.svc, static_cast<std::uint16_t>(msg.arg[0]))) {
                refuse(-ENOENT, "not your endpoint");
            } else if (fd < 0) {
                refuse(-EINVAL, "register needs a memfd (SCM_RIGHTS)");
            } else if (seals < 0) {
                refuse(-EINVAL, "not a sealable memfd");
            } else if (!(seals & F_SEAL_SHRINK)) {
                refuse(-EINVAL, "memfd is not sealed against shrinking (F_SEAL_SHRINK)");
            } else if (fstat(fd, &st) < 0 || offset > static_cast<std::uint64_t>(st.st_size) ||
                       length > static_cast<std::uint64_t>(st.st_size) - offset) {
                refuse(-EINVAL, "offset+length is outside the memfd");
            } else if (auto rc = check_reg(f, msg.arg[0], length, access, why)) {
                refuse(rc, why);
            } else {
                auto ep = static_cast<std::uint16_t>(msg.arg[0]);
                std::uint64_t start = offset / page_size() * page_size();
                std::size_t map_len = offset + length - start;
                void* p = mmap(nullptr, map_len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, static_cast<off_t>(start));
                if (p == MAP_FAILED) {
                    refuse(-errno, std::string("cannot map the memfd: ") + std::strerror(errno));
                    break;
                }
                auto entry = std::make_unique<frontend::region_entry>();
                entry->map = p;
                entry->map_len = map_len;
                std::uint64_t key = 0;
                // A memfd is mapped writable whatever the access bits: LOCAL_WRITE always.
                if (auto rc = vr_fe_add_region(&f.svc, ep, static_cast<char*>(p) + (offset - start), entry.get(),
                                               length, static_cast<std::uint32_t>(access) | VR_ACCESS_LOCAL_WRITE,
                                               true, &key)) {
                    refuse(rc, rc == -ENOSPC ? "the engine's region table is full" : "the engine refused the region");
                    break;  // entry unmaps
                }
                entry->key = key;
                reply.arg[0] = key;
                f.regions[key] = std::move(entry);
            }
            break;
        }
        case VR_CTL_DEREG: {
            std::string why;
            if (auto rc = dereg(f, msg.arg[0], why)) refuse(rc, why);
            break;
        }
        case VR_CTL_LIMITS:
            reply.arg[0] = lim.endpoints;
            reply.arg[1] = lim.regions;
            reply.arg[2] = lim.registered_bytes;
            reply.arg[3] = lim.max_ring_size;
            reply.arg[4] = lim.max_weight;
            break;
        default: refuse(-EINVAL, "unknown control message type " + std::to_string(msg.type)); break;
        }
    }

    iovec iov{&reply, sizeof reply};
    alignas(cmsghdr) char control_buf[CMSG_SPACE(sizeof(int) * 3)]{};
    msghdr mh{};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    if (nsend > 0) {
        mh.msg_control = control_buf;
        mh.msg_controllen = CMSG_SPACE(sizeof(int) * nsend);
        cmsghdr* c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * nsend);
        std::memcpy(CMSG_DATA(c), send_fds, sizeof(int) * nsend);
    }
    // A frontend that does not read its replies is dropped, not waited for.
    if (::sendmsg(f.sock, &mh, MSG_NOSIGNAL | MSG_DONTWAIT) != static_cast<ssize_t>(sizeof reply)) return false;
    if (!f.over_share.empty()) return false;  // told why; its uid has its share of frontends
    if (records.empty()) return true;
    return ::send(f.sock, records.data(), records.size(), MSG_NOSIGNAL | MSG_DONTWAIT) ==
           static_cast<ssize_t>(records.size());
}

std::int32_t daemon::open_ep(frontend& f, std::uint64_t id, std::uint64_t weight, bool listen, std::string& why) {
    const char* reason = nullptr;
    if (!uid_may_take(f, pool::endpoints, why)) return -ENOSPC;
    if (auto rc = vr_fe_open_ep(&f.svc, id, weight, listen, &reason))
        return refused(rc, reason, f.lim.endpoints, why);
    ep_owner_[static_cast<std::uint16_t>(id)] = &f;
    return 0;
}

std::int32_t daemon::close_ep(frontend& f, std::uint64_t id, std::string& why) {
    // Its operations fail, its ACCEPTs are answered, its connections and
    // regions go (frontend::release unmaps them).
    if (auto rc = vr_fe_close_ep(&f.svc, id, &frontend::release, &f)) {
        why = "not your endpoint";
        return rc;
    }
    ep_owner_.erase(static_cast<std::uint16_t>(id));
    host_->want_flush();  // the DISCONNECTs
    return 0;
}

std::int32_t daemon::check_reg(frontend& f, std::uint64_t ep, std::uint64_t length, std::uint64_t access,
                               std::string& why) {
    const char* reason = nullptr;
    auto rc = vr_fe_check_reg(&f.svc, ep, length, access, &reason);
    if (rc == -ENOSPC)
        return refused(rc, reason, f.svc.use.regions >= f.lim.regions ? f.lim.regions : f.lim.registered_bytes, why);
    return rc ? refused(rc, reason, 0, why) : 0;
}

std::int32_t daemon::dereg(frontend& f, std::uint64_t key, std::string& why) {
    void* host = nullptr;
    if (auto rc = vr_fe_dereg(&f.svc, key, &host)) {  // operations using it fail first
        why = "not your region";
        return rc;
    }
    frontend::release(&f, host);  // then unmapped
    return 0;
}

std::int32_t daemon::guest_reg(frontend& f, const vr_ring_req& req, std::uint64_t& key) {
    std::string why;
    std::uint64_t len = req.operand, access = req.mask;
    if (auto rc = check_reg(f, req.ep, len, access, why)) return rc;
    const char* reason = nullptr;
    if (auto rc = vr_svc_check_grant_reg(req.loff, len, req.swap, &reason)) return rc;
    auto pages = static_cast<std::uint32_t>(req.swap);
    std::uint32_t nindex = vr_xen_index_pages(pages);
    // Directory and index pages, read-only: copy the data pages' refs out.
    std::uint32_t dir_ref = static_cast<std::uint32_t>(req.tag);
    void* dir = f.port->map(&dir_ref, 1, false);
    if (!dir) return errno ? -errno : -EFAULT;
    std::vector<std::uint32_t> index(nindex);
    std::memcpy(index.data(), dir, nindex * sizeof(std::uint32_t));
    f.port->unmap(dir, 1);
    void* idx = f.port->map(index.data(), nindex, false);
    if (!idx) return errno ? -errno : -EFAULT;
    std::vector<std::uint32_t> refs(pages);
    std::memcpy(refs.data(), idx, pages * sizeof(std::uint32_t));
    f.port->unmap(idx, nindex);
    bool writable = vr_svc_reg_writable(access);
    void* data = f.port->map(refs.data(), pages, writable);
    if (!data) return errno ? -errno : -EFAULT;
    auto entry = std::make_unique<frontend::region_entry>();
    entry->map = data;
    entry->map_len = std::size_t{pages} * VR_XEN_PAGE_SIZE;
    entry->port = f.port;
    std::uint64_t engine_key = 0;
    if (auto rc = vr_fe_add_region(&f.svc, req.ep, static_cast<char*>(data) + req.loff, entry.get(), len,
                                   static_cast<std::uint32_t>(access) | VR_ACCESS_LOCAL_WRITE, writable,
                                   &engine_key))
        return rc;  // entry unmaps
    entry->key = engine_key;
    key = engine_key;
    f.regions[engine_key] = std::move(entry);
    return 0;
}

void daemon::admin(frontend& self, const vr_ctl_msg& msg, vr_ctl_msg& reply, std::string& records) {
    auto refuse = [&](std::int32_t status, const std::string& why) {
        reply.status = status;
        std::snprintf(reply.text, sizeof reply.text, "%s", why.c_str());
    };
    auto add = [&](const auto& record) {
        records.append(reinterpret_cast<const char*>(&record), sizeof record);
        ++reply.arg[0];
        reply.arg[1] = sizeof record;
    };
    if (msg.type == VR_CTL_ADMIN_LIST) {
        // A user sees their own frontends; root and vmrdmad's uid see all.
        const bool sees_all = self.uid == 0 || self.uid == ::geteuid();
        std::vector<frontend*> all;
        for (auto* f : frontends_)
            if (sees_all || f->uid == self.uid) all.push_back(f);
        std::sort(all.begin(), all.end(), [](frontend* a, frontend* b) { return a->id < b->id; });
        switch (msg.arg[0]) {
        case VR_ADMIN_FRONTENDS:
            reply.arg[1] = sizeof(vr_admin_frontend);
            for (auto* f : all) {
                vr_admin_frontend r{};
                r.id = f->id;
                r.pid = f->pid;
                r.uid = f->uid;
                r.gid = f->gid;
                r.ring_size = f->size;
                r.in_flight = f->in_flight;
                r.endpoints = f->svc.use.endpoints;
                r.regions = f->svc.use.regions;
                r.conns = f->svc.nconns;
                r.weight = f->svc.admin_weight;
                r.max_endpoints = f->lim.endpoints;
                r.max_regions = f->lim.regions;
                r.max_weight = f->lim.max_weight;
                r.draining = draining_;
                for (auto& [key, reg] : f->regions) r.mapped_bytes += reg->map_len;
                r.max_bytes = f->lim.registered_bytes;
                r.requests = f->requests;
                r.responses = f->responses;
                r.rejected = f->svc.rejected;
                r.violations = f->violations;
                r.failed = f->failed;
                add(r);
            }
            break;
        case VR_ADMIN_ENDPOINTS:
            reply.arg[1] = sizeof(vr_admin_endpoint);
            for (auto* f : all)
                for (std::uint32_t i = 0; i < f->svc.eps_cap; ++i) {
                    const auto& e = f->svc.eps[i];
                    if (!e.used) continue;
                    vr_admin_endpoint r{};
                    r.frontend = f->id;
                    r.ep = e.id;
                    r.listen = e.listen;
                    r.weight = e.weight;
                    for (std::uint32_t k = 0; k < f->svc.conns_cap; ++k)
                        r.conns += f->svc.conns[k].used && f->svc.conns[k].ep == e.id;
                    for (std::uint32_t k = 0; k < f->svc.regions_cap; ++k)
                        r.regions += f->svc.regions[k].used && f->svc.regions[k].ep == e.id;
                    auto c = host_->endpoint_counters(e.id);
                    r.tx_frames = c.tx_frames;
                    r.tx_bytes = c.tx_bytes;
                    r.rx_frames = c.rx_frames;
                    r.rx_bytes = c.rx_bytes;
                    r.retransmits = c.retransmits;
                    r.naks_tx = c.naks_sent;
                    r.naks_rx = c.naks_received;
                    add(r);
                }
            break;
        case VR_ADMIN_CONNS:
            reply.arg[1] = sizeof(vr_admin_conn);
            for (auto* f : all) {
                std::map<std::uint32_t, const vr_fe_conn*> sorted;
                for (std::uint32_t k = 0; k < f->svc.conns_cap; ++k)
                    if (f->svc.conns[k].used) sorted[f->svc.conns[k].handle] = &f->svc.conns[k];
                for (auto& [h, c] : sorted) {
                    vr_admin_conn r{};
                    r.frontend = f->id;
                    r.handle = h;
                    r.ep = c->ep;
                    r.peer_ep = c->peer_ep;
                    std::memcpy(r.peer_mac, c->peer_mac, 6);
                    r.accepted = c->accepted;
                    r.open = !c->failed;
                    add(r);
                }
            }
            break;
        case VR_ADMIN_UIDS: {
            std::vector<uid_t> uids;
            for (auto* f : all)
                if (!f->port && std::find(uids.begin(), uids.end(), f->uid) == uids.end()) uids.push_back(f->uid);
            for (auto& [uid, n] : uid_refused_)
                if ((sees_all || uid == self.uid) && std::find(uids.begin(), uids.end(), uid) == uids.end())
                    uids.push_back(uid);
            std::sort(uids.begin(), uids.end());
            reply.arg[1] = sizeof(vr_admin_uid);
            for (uid_t uid : uids) {
                vr_admin_uid r{};
                frontend probe;
                probe.uid = uid;
                const bool limited = uid_limited(probe);
                r.uid = uid;
                r.frontends = uid_holds(uid, pool::frontends);
                r.endpoints = uid_holds(uid, pool::endpoints);
                r.conns = uid_holds(uid, pool::connections);
                r.max_frontends = limited ? pool_limit(pool::frontends) : 0;
                r.max_endpoints = limited ? pool_limit(pool::endpoints) : 0;
                r.max_conns = limited ? pool_limit(pool::connections) : 0;
                r.reserve_frontends = pool_reserve(pool::frontends);
                r.reserve_endpoints = pool_reserve(pool::endpoints);
                r.reserve_conns = pool_reserve(pool::connections);
                auto it = uid_refused_.find(uid);
                r.refused = it == uid_refused_.end() ? 0 : it->second;
                add(r);
            }
            break;
        }
        case VR_ADMIN_DEVICE: {
            vr_admin_device r{};
            auto mac = host_->mac();
            for (int i = 0; i < 6; ++i) r.mac |= std::uint64_t{mac.bytes[i]} << (8 * i);
            r.mtu = host_->mtu();
            r.draining = draining_;
            auto c = host_->device_counters();
            r.tx_frames = c.tx_frames;
            r.tx_bytes = c.tx_bytes;
            r.rx_frames = c.rx_frames;
            r.rx_bytes = c.rx_bytes;
            r.retransmits = c.retransmits;
            r.timeouts = c.timeouts;
            r.duplicates = c.duplicates;
            r.rx_dropped = c.rx_dropped;
            r.naks_tx = c.naks_sent;
            r.naks_rx = c.naks_received;
            r.cookies_refused = c.cookies_refused;
            r.challenges = c.challenges;
            r.connections_refused = c.connections_refused;
            r.out_of_window = c.out_of_window;
            r.auth_failed = c.auth_failed;
            r.replays = c.replays;
            r.offences = c.offences;
            r.auth = opts_.engine.auth_key.has_value();
            r.frontends_accepted = stats_.frontends_accepted;
            r.frontends_active = stats_.frontends_active;
            r.frontends_cleaned_up = stats_.frontends_cleaned_up;
            r.requests = stats_.requests;
            r.responses = stats_.responses;
            r.rejected = stats_.rejected;
            r.violations = stats_.violations;
            r.control_errors = stats_.control_errors;
            add(r);
            break;
        }
        default: refuse(-EINVAL, "unknown list " + std::to_string(msg.arg[0])); return;
        }
        if (reply.arg[0] > VR_ADMIN_MAX_RECORDS) {
            records.resize(std::size_t{VR_ADMIN_MAX_RECORDS} * reply.arg[1]);
            reply.arg[0] = VR_ADMIN_MAX_RECORDS;
        }
        return;
    }
    // VR_CTL_ADMIN_SET: the administrator only.
    if (self.uid != 0 && self.uid != ::geteuid()) {
        refuse(-EPERM, "only root or vmrdmad's uid " + std::to_string(::geteuid()) + " may change this");
        return;
    }
    frontend* target = nullptr;
    for (auto* f : frontends_)
        if (f->id == msg.arg[0]) target = f;
    if (!target) {
        refuse(-ENOENT, "no frontend " + std::to_string(msg.arg[0]));
        return;
    }
    std::uint64_t value = msg.arg[2];
    auto& lim = target->lim;
    switch (msg.arg[1]) {
    case VR_ADMIN_SET_WEIGHT: {
        if (value > VR_WEIGHT_MAX) {
            refuse(-EINVAL, "weight must be 1.." + std::to_string(VR_WEIGHT_MAX) + " (0: the frontend's own)");
            return;
        }
        vr_fe_set_admin_weight(&target->svc, static_cast<std::uint32_t>(value));  // every endpoint, now and later
        break;
    }
    case VR_ADMIN_SET_MAX_ENDPOINTS:
    case VR_ADMIN_SET_MAX_REGIONS:
    case VR_ADMIN_SET_MAX_WEIGHT:
        if (value > 0xffffffffu || (msg.arg[1] == VR_ADMIN_SET_MAX_WEIGHT && (value == 0 || value > VR_WEIGHT_MAX))) {
            refuse(-EINVAL, "value out of range");
            return;
        }
        (msg.arg[1] == VR_ADMIN_SET_MAX_ENDPOINTS  ? lim.endpoints
         : msg.arg[1] == VR_ADMIN_SET_MAX_REGIONS ? lim.regions
                                                   : lim.max_weight) = static_cast<std::uint32_t>(value);
        break;
    case VR_ADMIN_SET_MAX_BYTES: lim.registered_bytes = value; break;
    default: refuse(-EINVAL, "unknown setting " + std::to_string(msg.arg[1])); return;
    }
    sync_limits(*target);
}

task<void> daemon::watch_ring(frontend& f) {
    std::uint64_t counter = 0;
    auto stop = f.stop.get_token();
    while (!f.dead) {
        if (drain_ring(f)) {
            // Its pass budget is spent and more waits: the other frontends
            // and the engine take their turn first.
            co_await loop_.schedule();
            continue;
        }
        if (f.dead) break;
        try {
            if (f.port) {  // a Xen guest: its event channel
                co_await loop_.submit(
                    [&](io_uring_sqe* sqe) { io_uring_prep_poll_add(sqe, f.port->doorbell_fd(), POLLIN); }, stop);
                f.port->doorbell_ack();
            } else {
                co_await loop_.submit(
                    [&](io_uring_sqe* sqe) { io_uring_prep_read(sqe, f.req_efd, &counter, sizeof counter, 0); },
                    stop);
            }
        } catch (const error&) {
            break;
        }
    }
}

bool daemon::drain_ring(frontend& f) {
    unsigned budget = ring_pass_budget;
    for (;;) {
        std::uint32_t prod = VR_RING_READ(f.shared->req_prod);
        vr_ring_rmb();
        if (const char* broken = vr_ring_check_prod(prod, f.req_cons, f.size)) {
            violation(f, broken);
            return false;
        }
        while (f.req_cons != prod) {
            if (budget-- == 0) return true;  // fairness: at most ring_pass_budget per turn
            if (const char* broken = vr_ring_check_outstanding(f.req_cons, f.rsp_prod_pvt, f.size)) {
                violation(f, broken);
                return false;
            }
            // Copy out first: the frontend can rewrite the shared entry at any time.
            vr_ring_req req;
            std::memcpy(&req, &f.reqs[f.req_cons & (f.size - 1)], sizeof req);
            std::atomic_signal_fence(std::memory_order_seq_cst);
            ++f.req_cons;
            ++stats_.requests;
            ++f.requests;
            ++f.in_flight;
            take(f, req);
            if (f.dead) return false;
            if (too_many_invalid(f)) return false;
        }
        if (vr_ring_final_check(&f.shared->req_prod, &f.shared->req_event, f.req_cons) == f.req_cons) return false;
    }
}

// More than invalid_per_second refused requests within one second: a
// frontend that only floods the daemon with requests it may not make.
bool daemon::too_many_invalid(frontend& f) {
    const auto now = loop_.turn_time();  // per request: the turn's clock is close enough for a 1 s window
    if (now - f.rejected_since >= std::chrono::seconds(1)) {
        f.rejected_since = now;
        f.rejected_mark = f.svc.rejected;
        return false;
    }
    const std::uint64_t n = f.svc.rejected - f.rejected_mark;
    if (n <= invalid_per_second) return false;
    violation(f, ("sustained invalid requests: " + std::to_string(n) + " refused in under a second").c_str());
    return true;
}

void daemon::violation(frontend& f, const char* what) {
    ++stats_.violations;
    ++f.violations;
    if (f.port)
        std::fprintf(stderr, "vmrdmad: Xen guest dom%d broke the ring protocol (%s): disconnected\n",
                     static_cast<int>(-f.pid), what);
    else
        std::fprintf(stderr, "vmrdmad: frontend pid %d uid %u (fd %d) broke the ring protocol (%s): disconnected\n",
                     static_cast<int>(f.pid), static_cast<unsigned>(f.uid), f.sock, what);
    f.dead = true;
    if (f.port) f.ended.request_stop();  // serve_guest sees the end and cleans up
    else ::shutdown(f.sock, SHUT_RDWR);  // serve_frontend sees the end and cleans up
}

// Shown to the frontend at once: it starts on the response while the
// engine completes the next (publishing a turn's responses together at its
// end was 5-10 % slower at 64 B and 4 KiB: docs/benchmarks.md). The ring's
// event index rings the doorbell only when the frontend waits: at once for
// the first response of an engine pass (the frontend starts on it while the
// pass goes on), and for later ones once after the pass (ring_doorbells). A
// doorbell per response woke a frontend that took one response, slept again
// and was woken again, a wake-up per 4 KiB read (docs/split-driver.md,
// "Doorbells").
void daemon::respond(frontend& f, const vr_ring_rsp& rsp) {
    --f.in_flight;
    if (f.dead) return;
    ++f.responses;
    if (rsp.status != 0) ++f.failed;
    f.rsps[f.rsp_prod_pvt & (f.size - 1)] = rsp;
    ++f.rsp_prod_pvt;
    ++stats_.responses;
    if (vr_ring_push(&f.shared->rsp_prod, &f.shared->rsp_event, f.rsp_prod_pvt) && !f.doorbell_due) {
        if (f.rung_in_pass != doorbell_pass_) {
            f.rung_in_pass = doorbell_pass_;
            ring(f);
            return;
        }
        f.doorbell_due = true;
        doorbells_due_.push_back(f.id);
    }
}

void daemon::ring(frontend& f) {
    ++stats_.doorbells;
    if (f.port) {
        f.port->notify();
    } else {
        std::uint64_t one = 1;
        [[maybe_unused]] auto n = ::write(f.rsp_efd, &one, sizeof one);
    }
}

void daemon::ring_doorbells() {
    ++doorbell_pass_;
    if (doorbells_due_.empty()) return;
    for (std::uint32_t id : doorbells_due_) {
        auto it = by_id_.find(id);
        if (it == by_id_.end()) continue;  // gone since
        frontend& f = *it->second;
        f.doorbell_due = false;
        if (!f.dead) ring(f);
    }
    doorbells_due_.clear();
}

void daemon::frontend::answered(void* ctx, const vr_svc_pending* req, const vr_ring_rsp* rsp) {
    auto& f = *static_cast<frontend*>(ctx);
    auto& d = *f.owner;
    // Its bytes left the frontend's bulk_inflight (proto/frontend.c): what
    // waits may go now, not from inside the engine's call: at the end of
    // the turn.
    if (vr_svc_is_bulk(req->opcode) && d.opts_.inflight_bytes) d.admission_due_ = true;
    if (rsp->status != 0 && std::getenv("VMRDMAD_DEBUG"))
        std::fprintf(stderr, "vmrdmad: frontend %u: op %u failed: %d\n", f.id, unsigned(req->opcode), rsp->status);
    d.respond(f, *rsp);
}

void daemon::attach_service(frontend& f, std::uint32_t ring_size) {
    // The engine's tables bound what any one frontend can hold.
    f.eps.assign(opts_.engine.max_endpoints, {});
    f.conns.assign(opts_.engine.max_connections, {});
    f.region_records.assign(opts_.engine.max_regions, {});
    f.slots.assign(ring_size, {});
    f.free_slots.assign(ring_size, 0);
    f.svc = {};
    f.svc.eng = host_->engine();
    f.svc.host = {&frontend::answered, &f};
    f.svc.id = f.id;
    f.svc.max_ep_id = opts_.engine.max_endpoints;
    f.svc.eps = f.eps.data();
    f.svc.eps_cap = static_cast<std::uint32_t>(f.eps.size());
    f.svc.conns = f.conns.data();
    f.svc.conns_cap = static_cast<std::uint32_t>(f.conns.size());
    f.svc.regions = f.region_records.data();
    f.svc.regions_cap = static_cast<std::uint32_t>(f.region_records.size());
    f.svc.slots = f.slots.data();
    f.svc.free_slots = f.free_slots.data();
    f.svc.size = ring_size;
    sync_limits(f);
    vr_fe_init(&f.svc);
}

void daemon::sync_limits(frontend& f) {
    f.svc.lim = {.endpoints = f.lim.endpoints,
                 .regions = f.lim.regions,
                 .registered_bytes = f.lim.registered_bytes,
                 .max_weight = f.lim.max_weight};
    f.svc.max_conns = f.lim.connections;
}

daemon::frontend* daemon::owner_of(std::uint16_t ep) const {
    auto it = ep_owner_.find(ep);
    return it == ep_owner_.end() ? nullptr : it->second;
}

void daemon::take(frontend& f, const vr_ring_req& req) {
    vr_ring_rsp rsp;
    vr_svc_rsp_init(&rsp, req.cookie, req.opcode, req.ep, req.conn);
    if (draining_) {  // stopping: nothing new
        ++stats_.drained;
        rsp.status = -ESHUTDOWN;
        respond(f, rsp);
        return;
    }
    if (req.opcode >= VR_RING_OPEN_EP && req.opcode <= VR_RING_DEREG) {
        ring_control(f, req);
        return;
    }
    // Behind a waiting request, or beyond its share: waits, in ring order.
    if (!f.waiting.empty() || (vr_svc_is_bulk(req.opcode) && !admissible(f, req.len))) {
        f.waiting.push_back(req);
        return;
    }
    dispatch(f, req);
}

void daemon::dispatch(frontend& f, const vr_ring_req& req) {
    std::string why;
    if (req.opcode == VR_RING_CONNECT && !uid_may_take(f, pool::connections, why)) {
        vr_ring_rsp rsp;
        vr_svc_rsp_init(&rsp, req.cookie, req.opcode, req.ep, req.conn);
        rsp.status = -ENOSPC;
        respond(f, rsp);
        return;
    }
    const auto rejected = f.svc.rejected;
    vr_ring_rsp rsp{};
    int rc = vr_fe_request(&f.svc, &req, &rsp);
    stats_.rejected += f.svc.rejected - rejected;
    if (rc == 1) {  // with the engine: answered from its completion
        host_->want_flush();
        return;
    }
    rsp.status = rc;
    if (req.opcode == VR_RING_DISCONNECT) host_->want_flush();
    respond(f, rsp);
}

// Control on the ring: Xen guests only (a socket frontend uses VR_CTL_*).
void daemon::ring_control(frontend& f, const vr_ring_req& req) {
    vr_ring_rsp rsp;
    vr_svc_rsp_init(&rsp, req.cookie, req.opcode, req.ep, req.conn);
    if (!f.port || req.flags != 0) {
        ++stats_.rejected;
        ++f.svc.rejected;
        rsp.status = -EINVAL;
        respond(f, rsp);
        return;
    }
    std::string why;
    if (req.opcode == VR_RING_OPEN_EP)
        rsp.status = open_ep(f, req.ep, req.operand, req.mask & 1, why);
    else if (req.opcode == VR_RING_CLOSE_EP)
        rsp.status = close_ep(f, req.ep, why);
    else if (req.opcode == VR_RING_REG)
        rsp.status = guest_reg(f, req, rsp.value);
    else
        rsp.status = dereg(f, req.lkey, why);
    if (rsp.status != 0 && std::getenv("VMRDMAD_DEBUG"))
        std::fprintf(stderr, "vmrdmad: dom%d: control op %u failed: %d %s\n", static_cast<int>(-f.pid),
                     unsigned(req.opcode), rsp.status, why.c_str());
    respond(f, rsp);
}

// --- engine events (inside the engine's calls) ---

void daemon::engine_completion(const vr_completion& wc) {
    if (wc.op == VR_WC_ACCEPT) {
        if (auto* f = owner_of(wc.ep))
            vr_fe_accepted(&f->svc, wc.ep, wc.conn);
        else
            vr_disconnect(host_->engine(), wc.conn);  // the policy refuses these: cannot happen
        return;
    }
    if (wc.op == VR_WC_DISCONNECT) {  // the peer went away: its operations fail on their own
        for (auto* f : frontends_)
            if (f->svc.slots && vr_fe_conn_failed(&f->svc, wc.conn, wc.status)) break;
        return;
    }
    auto it = by_id_.find(static_cast<std::uint32_t>(wc.cookie >> 32));
    if (it == by_id_.end() || !it->second->svc.slots || !vr_fe_complete(&it->second->svc, &wc)) ++stats_.stray;
}

int daemon::engine_accept(std::uint16_t ep, const std::uint8_t*, std::uint16_t) {
    auto* f = owner_of(ep);
    if (!f || f->dead || draining_) return -ECONNREFUSED;
    std::string why;
    if (!uid_may_take(*f, pool::connections, why)) return -ECONNREFUSED;  // the peer: NAK REJECTED
    return vr_fe_accept_policy(&f->svc, ep);
}

bool daemon::uid_limited(const frontend& f) const {
    return !f.port && f.uid != 0 && f.uid != ::geteuid();
}

std::uint32_t daemon::pool_total(pool p) const {
    switch (p) {
    case pool::frontends: return opts_.max_frontends;
    case pool::endpoints: return opts_.engine.max_endpoints;
    default: return opts_.engine.max_connections;
    }
}

std::uint32_t daemon::pool_limit(pool p) const {
    const auto& u = opts_.per_uid;
    std::uint32_t set = p == pool::frontends ? u.frontends : p == pool::endpoints ? u.endpoints : u.connections;
    return set ? set : std::max<std::uint32_t>(1, pool_total(p) / 2);
}

std::uint32_t daemon::pool_reserve(pool p) const {
    return static_cast<std::uint32_t>(std::uint64_t{pool_total(p)} * opts_.per_uid.reserve_percent / 100);
}

std::uint32_t daemon::pool_used(pool p) const {
    std::uint32_t n = 0;
    for (auto* f : frontends_) {
        if (p == pool::frontends)
            n += !f->port;
        else if (f->svc.slots)
            n += p == pool::endpoints ? f->svc.use.endpoints : f->svc.nconns;
    }
    return n;
}

std::uint32_t daemon::uid_holds(uid_t uid, pool p) const {
    std::uint32_t n = 0;
    for (auto* f : frontends_) {
        if (f->port || f->uid != uid) continue;
        if (p == pool::frontends)
            ++n;
        else if (f->svc.slots)
            n += p == pool::endpoints ? f->svc.use.endpoints : f->svc.nconns;
    }
    return n;
}

bool daemon::uid_may_take(frontend& f, pool p, std::string& why) {
    if (!uid_limited(f)) return true;
    std::uint32_t held = uid_holds(f.uid, p), used = pool_used(p), total = pool_total(p);
    std::uint32_t limit = pool_limit(p), reserve = pool_reserve(p);
    if (vr_svc_share_allows(held, used, total, limit, reserve)) return true;
    static const char* const names[] = {"frontends", "endpoints", "connections"};
    const char* name = names[static_cast<int>(p)];
    why = "uid " + std::to_string(f.uid) + " holds " + std::to_string(held) + " " + name +
          (held >= limit ? " (its limit)" : "; the rest is kept for other users") + " of " + std::to_string(total);
    ++stats_.uid_refused;
    ++uid_refused_[f.uid];
    std::fprintf(stderr, "vmrdmad: frontend pid %d uid %u: %s refused: %s\n", static_cast<int>(f.pid),
                 static_cast<unsigned>(f.uid), name, why.c_str());
    return false;
}

// --- admission by weight (options::inflight_bytes) ---

// The rule is proto/'s (vr_svc_admissible, vr_fe_contending_weight); the
// frontends and their waiting queues are ours.
bool daemon::admissible(const frontend& f, std::uint64_t bytes) const {
    std::uint64_t active = 0;
    for (auto* g : frontends_) active += vr_fe_contending_weight(&g->svc, g == &f, !g->waiting.empty());
    return vr_svc_admissible(opts_.inflight_bytes, f.svc.bulk_inflight, bytes, vr_fe_weight(&f.svc), active);
}

void daemon::pump_admission() {
    admission_due_ = false;
    for (auto* f : frontends_) {
        while (!f->waiting.empty()) {
            const auto req = f->waiting.front();
            if (draining_ || f->dead) {
                f->waiting.pop_front();
                vr_ring_rsp rsp;
                vr_svc_rsp_init(&rsp, req.cookie, req.opcode, req.ep, req.conn);
                rsp.status = draining_ ? -ESHUTDOWN : -ECANCELED;
                respond(*f, rsp);
                continue;
            }
            if (vr_svc_is_bulk(req.opcode) && !admissible(*f, req.len)) break;
            f->waiting.pop_front();
            dispatch(*f, req);
        }
    }
}

task<void> daemon::cleanup(frontend& f) {
    f.dead = true;
    f.stop.request_stop();  // the doorbell watcher
    pump_admission();       // what waited for admission is answered (and dropped)
    if (f.svc.slots) {
        // Every endpoint closes (the engine fails their operations, which are
        // answered), whatever still waits is answered, every region unmapped.
        for (std::uint32_t i = 0; i < f.svc.eps_cap; ++i)
            if (f.svc.eps[i].used) ep_owner_.erase(f.svc.eps[i].id);
        vr_fe_close_all(&f.svc, &frontend::release, &f);
        host_->want_flush();  // the DISCONNECTs
    }
    co_await f.ops.join();  // the doorbell watcher has ended
    f.regions.clear();
    pump_admission();  // its share no longer counts
}

}  // namespace vmrdmad
