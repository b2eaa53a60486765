#include "daemon.hpp"
#include "engine_status.hpp"

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
#include <map>
#include <unordered_map>
#include <utility>

extern "C" {
#include "proto/engine.h"
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

// A vmrdma error as the ring's status and NAK reason (the one mapping the
// frontend turns back into the same errc).
std::int32_t status_of(const std::error_code& code, std::uint8_t& nak) {
    auto st = vmrdma::detail::status_from_code(code);
    nak = st.nak_reason;
    return st.status;
}

// A request refused by validation: status and the reason are in the error.
struct rejection {
    std::int32_t status;
};

}  // namespace

struct daemon::frontend {
    std::uint32_t id = 0;
    pid_t pid = 0;
    uid_t uid = static_cast<uid_t>(-1);
    gid_t gid = static_cast<gid_t>(-1);
    limits lim;                  // the daemon's defaults, then what the administrator set
    std::uint32_t admin_weight = 0;  // set by the administrator (0: none)
    std::uint64_t requests = 0, responses = 0, rejected = 0, violations = 0, failed = 0;
    std::uint32_t in_flight = 0;
    std::uint64_t bulk_inflight = 0;  // WRITE/READ/SEND bytes at the engine
    std::uint32_t bulk_waiting = 0;   // operations waiting for admission
    std::uint64_t weight() const {
        std::uint64_t w = 0;
        for (auto& [id, m] : ep_info) w += m.weight;
        return w ? w : 1;
    }
    std::stop_source drain;      // fires when the daemon starts draining
    std::stop_source ended;      // a Xen guest: fires when it is to be disconnected
    guest_port* port = nullptr;  // a Xen guest (serve_guest), else a socket frontend
    int sock = -1;
    bool hello_done = false;
    bool dead = false;
    // Shared ring (we created it; the frontend writes into it).
    int ring_fd = -1, req_efd = -1, rsp_efd = -1;
    void* ring_mem = nullptr;
    std::size_t ring_len = 0;
    vr_ring_shared* shared = nullptr;
    const vr_ring_req* reqs = nullptr;
    vr_ring_rsp* rsps = nullptr;
    std::uint32_t size = 0, req_cons = 0, rsp_prod_pvt = 0;
    // What it owns, by the handles it names them with.
    std::map<std::uint16_t, vmrdma::endpoint> endpoints;
    struct ep_meta {
        std::uint32_t asked_weight = 1;  // what the frontend asked for
        std::uint32_t weight = 1;        // in force
        bool listen = false;
    };
    std::map<std::uint16_t, ep_meta> ep_info;
    struct region_entry {
        vmrdma::region mr;
        void* map = nullptr;
        std::size_t map_len = 0;
        std::uint16_t ep = 0;
        guest_port* port = nullptr;  // granted pages (map_len / 4096 of them), else a memfd mapping
        bool writable = true;        // false: granted read-only, nothing may be written into it
        ~region_entry() {
            mr = {};  // deregister (operations using it fail first), then unmap
            if (map && port)
                port->unmap(map, static_cast<std::uint32_t>(map_len / VR_XEN_PAGE_SIZE));
            else if (map)
                munmap(map, map_len);
        }
    };
    std::unordered_map<std::uint32_t, std::unique_ptr<region_entry>> regions;  // by engine key
    std::uint64_t registered_bytes = 0;
    struct conn_entry {
        vmrdma::connection conn;
        std::uint16_t ep = 0;
        std::uint16_t peer_ep = 0;
        std::array<std::uint8_t, 6> peer_mac{};
        bool accepted = false;
    };
    std::unordered_map<std::uint32_t, conn_entry> conns;  // by handle
    std::uint32_t next_conn = 1;
    vmrdma::async_scope ops;
    std::stop_source stop;

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
// The frontend service's rules (proto/service.h) see a frontend through its
// limits and what it holds now.
vr_svc_limits service_limits(const limits& lim) {
    return {.endpoints = lim.endpoints,
            .regions = lim.regions,
            .registered_bytes = lim.registered_bytes,
            .max_weight = lim.max_weight};
}

vr_svc_usage service_usage(std::size_t endpoints, std::size_t regions, std::uint64_t registered_bytes) {
    return {.endpoints = static_cast<std::uint32_t>(endpoints),
            .regions = static_cast<std::uint32_t>(regions),
            .registered_bytes = registered_bytes};
}

// A refusal as the daemon reports it: the service's reason, with the limit
// in force when the reason is a limit.
std::int32_t refused(int rc, const char* reason, std::uint64_t limit, std::string& why) {
    why = reason;
    if (rc == -ENOSPC) why += " (" + std::to_string(limit) + ")";
    return rc;
}
}  // namespace

daemon::daemon(vmrdma::event_loop& loop, vmrdma::device& dev, options opts)
    : loop_(loop), dev_(dev), opts_(std::move(opts)) {
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
        ::chmod(opts_.socket_path.c_str(), opts_.socket_mode) < 0 || ::listen(listen_fd_, 64) < 0) {
        int e = errno;
        close_fd(listen_fd_);
        throw error(vmrdma::code_from_errno(-e),
                    "cannot listen on '" + opts_.socket_path + "': " + std::strerror(e));
    }
}

daemon::~daemon() {
    close_fd(listen_fd_);
    if (!unlinked_) ::unlink(opts_.socket_path.c_str());
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
        f->drain.request_stop();
    }
    wake_admission();  // not yet admitted: fail -ESHUTDOWN
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
    if (draining_) f.drain.request_stop();
    frontends_.insert(&f);
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
    f.admin_weight = std::min<std::uint32_t>(params.admin_weight, VR_WEIGHT_MAX);
    f.hello_done = true;
    f.size = size;
    f.shared = static_cast<vr_ring_shared*>(ring);
    f.reqs = reinterpret_cast<const vr_ring_req*>(static_cast<char*>(ring) + vr_ring_req_off());
    f.rsps = reinterpret_cast<vr_ring_rsp*>(static_cast<char*>(ring) + vr_ring_rsp_off(size));
    // The guest wrote the header (proto/xen.h); ours are the indices we produce.
    VR_RING_WRITE(f.shared->rsp_prod, 0u);
    VR_RING_WRITE(f.shared->state, draining_ ? std::uint32_t{VR_RING_STATE_DRAINING} : std::uint32_t{VR_RING_STATE_OPEN});
    VR_RING_WRITE(f.shared->req_event, 1u);
    if (draining_) f.drain.request_stop();
    frontends_.insert(&f);
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
        refuse(-EPROTO, "control protocol version " + std::to_string(msg.version) + " is not 1");
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
            f.hello_done = true;
            reply.arg[0] = size;
            auto mac = dev_.mac();
            for (int i = 0; i < 6; ++i) reply.arg[1] |= std::uint64_t{mac.bytes[i]} << (8 * i);
            reply.arg[2] = dev_.mtu();
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
            if (msg.arg[0] > 0xffff || !f.endpoints.contains(static_cast<std::uint16_t>(msg.arg[0]))) {
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
                auto ep_it = f.endpoints.find(static_cast<std::uint16_t>(msg.arg[0]));
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
                entry->ep = ep_it->first;
                try {
                    std::span<std::byte> memory(static_cast<std::byte*>(p) + (offset - start), length);
                    entry->mr = ep_it->second.register_memory(memory, static_cast<vmrdma::access>(access));
                } catch (const error& e) {
                    std::uint8_t nak;
                    refuse(status_of(e.code(), nak), e.what());
                    break;
                }
                reply.arg[0] = entry->mr.key();
                f.registered_bytes += length;
                f.regions[entry->mr.key()] = std::move(entry);
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
    if (records.empty()) return true;
    return ::send(f.sock, records.data(), records.size(), MSG_NOSIGNAL | MSG_DONTWAIT) ==
           static_cast<ssize_t>(records.size());
}

std::int32_t daemon::open_ep(frontend& f, std::uint64_t id, std::uint64_t weight, bool listen, std::string& why) {
    const auto& lim = f.lim;
    const char* reason = nullptr;
    const auto limits = service_limits(lim);
    const auto usage = service_usage(f.endpoints.size(), f.regions.size(), f.registered_bytes);
    if (auto rc = vr_svc_check_open_ep(&limits, &usage, id, 0x10000, &reason))
        return refused(rc, reason, lim.endpoints, why);
    // The policy without and with the administrator's override.
    std::uint32_t asked = vr_svc_ep_weight(weight, lim.max_weight, 0);
    std::uint32_t w = vr_svc_ep_weight(weight, lim.max_weight, f.admin_weight);
    auto ep_id = static_cast<std::uint16_t>(id);
    try {
        auto ep = dev_.open_endpoint(ep_id, {.weight = static_cast<std::uint32_t>(w), .listen = listen});
        f.endpoints.emplace(ep_id, std::move(ep));
        f.ep_info[ep_id] = {asked, static_cast<std::uint32_t>(w), listen};
    } catch (const error& e) {
        std::uint8_t nak;
        why = e.what();
        return status_of(e.code(), nak);
    }
    return 0;
}

std::int32_t daemon::close_ep(frontend& f, std::uint64_t id, std::string& why) {
    auto it = f.endpoints.find(static_cast<std::uint16_t>(id));
    if (id > 0xffff || it == f.endpoints.end()) {
        why = "not your endpoint";
        return -ENOENT;
    }
    // Connections first: their engine ids die with the endpoint.
    for (auto c = f.conns.begin(); c != f.conns.end();)
        c = c->second.ep == it->first ? f.conns.erase(c) : std::next(c);
    f.ep_info.erase(it->first);
    f.endpoints.erase(it);  // its regions are deregistered by the engine
    for (auto r = f.regions.begin(); r != f.regions.end();) {
        if (r->second->ep == static_cast<std::uint16_t>(id)) {
            f.registered_bytes -= r->second->mr.memory().size();
            r = f.regions.erase(r);
        } else {
            ++r;
        }
    }
    return 0;
}

std::int32_t daemon::check_reg(frontend& f, std::uint64_t ep, std::uint64_t length, std::uint64_t access,
                               std::string& why) {
    const char* reason = nullptr;
    const auto limits = service_limits(f.lim);
    const auto usage = service_usage(f.endpoints.size(), f.regions.size(), f.registered_bytes);
    bool owned = ep <= 0xffff && f.endpoints.contains(static_cast<std::uint16_t>(ep));
    auto rc = vr_svc_check_reg(&limits, &usage, owned, length, access, &reason);
    if (rc == -ENOSPC && f.regions.size() >= f.lim.regions) return refused(rc, reason, f.lim.regions, why);
    if (rc == -ENOSPC) return refused(rc, reason, f.lim.registered_bytes, why);
    return rc ? refused(rc, reason, 0, why) : 0;
}

std::int32_t daemon::dereg(frontend& f, std::uint64_t key, std::string& why) {
    auto it = f.regions.find(static_cast<std::uint32_t>(key));
    if (key > 0xffffffffu || it == f.regions.end()) {
        why = "not your region";
        return -ENOENT;
    }
    f.registered_bytes -= it->second->mr.memory().size();
    f.regions.erase(it);  // deregistered (operations using it fail first), then unmapped
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
    entry->writable = writable;
    entry->ep = req.ep;
    try {
        std::span<std::byte> memory(static_cast<std::byte*>(data) + req.loff, len);
        entry->mr = f.endpoints.at(req.ep).register_memory(memory, static_cast<vmrdma::access>(access));
    } catch (const error& e) {
        std::uint8_t nak;
        return status_of(e.code(), nak);  // entry unmaps
    }
    key = entry->mr.key();
    f.registered_bytes += len;
    f.regions[entry->mr.key()] = std::move(entry);
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
        std::vector<frontend*> all(frontends_.begin(), frontends_.end());
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
                r.endpoints = static_cast<std::uint32_t>(f->endpoints.size());
                r.regions = static_cast<std::uint32_t>(f->regions.size());
                r.conns = static_cast<std::uint32_t>(f->conns.size());
                r.weight = f->admin_weight;
                r.max_endpoints = f->lim.endpoints;
                r.max_regions = f->lim.regions;
                r.max_weight = f->lim.max_weight;
                r.draining = draining_;
                for (auto& [key, reg] : f->regions) r.mapped_bytes += reg->map_len;
                r.max_bytes = f->lim.registered_bytes;
                r.requests = f->requests;
                r.responses = f->responses;
                r.rejected = f->rejected;
                r.violations = f->violations;
                r.failed = f->failed;
                add(r);
            }
            break;
        case VR_ADMIN_ENDPOINTS:
            reply.arg[1] = sizeof(vr_admin_endpoint);
            for (auto* f : all)
                for (auto& [id, ep] : f->endpoints) {
                    vr_admin_endpoint r{};
                    r.frontend = f->id;
                    r.ep = id;
                    auto& meta = f->ep_info[id];
                    r.listen = meta.listen;
                    r.weight = meta.weight;
                    for (auto& [h, c] : f->conns) r.conns += c.ep == id;
                    for (auto& [k, reg] : f->regions) r.regions += reg->ep == id;
                    auto c = ep.stats();
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
                std::map<std::uint32_t, const frontend::conn_entry*> sorted;
                for (auto& [h, c] : f->conns) sorted[h] = &c;
                for (auto& [h, c] : sorted) {
                    vr_admin_conn r{};
                    r.frontend = f->id;
                    r.handle = h;
                    r.ep = c->ep;
                    r.peer_ep = c->peer_ep;
                    std::memcpy(r.peer_mac, c->peer_mac.data(), 6);
                    r.accepted = c->accepted;
                    r.open = c->conn.is_open();
                    add(r);
                }
            }
            break;
        case VR_ADMIN_DEVICE: {
            vr_admin_device r{};
            auto mac = dev_.mac();
            for (int i = 0; i < 6; ++i) r.mac |= std::uint64_t{mac.bytes[i]} << (8 * i);
            r.mtu = dev_.mtu();
            r.draining = draining_;
            auto c = dev_.stats();
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
        target->admin_weight = static_cast<std::uint32_t>(value);
        for (auto& [id, ep] : target->endpoints) {
            auto& meta = target->ep_info[id];
            std::uint32_t w = vr_svc_ep_weight(meta.asked_weight, lim.max_weight, static_cast<std::uint32_t>(value));
            try {
                ep.set_weight(w);
                meta.weight = w;
            } catch (const error& e) {
                refuse(-EINVAL, e.what());
                return;
            }
        }
        break;
    }
    case VR_ADMIN_SET_MAX_ENDPOINTS:
    case VR_ADMIN_SET_MAX_REGIONS:
    case VR_ADMIN_SET_MAX_WEIGHT:
        if (value > 0xffffffffu || (msg.arg[1] == VR_ADMIN_SET_MAX_WEIGHT && (value == 0 || value > 1024))) {
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
}

task<void> daemon::watch_ring(frontend& f) {
    std::uint64_t counter = 0;
    auto stop = f.stop.get_token();
    while (!f.dead) {
        drain_ring(f);
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

void daemon::drain_ring(frontend& f) {
    for (;;) {
        std::uint32_t prod = VR_RING_READ(f.shared->req_prod);
        vr_ring_rmb();
        if (prod - f.req_cons > f.size) {
            violation(f, "request producer index out of range");
            return;
        }
        while (f.req_cons != prod) {
            if (f.req_cons - f.rsp_prod_pvt >= f.size - 1) {
                violation(f, "more than size-1 requests outstanding");
                return;
            }
            // Copy out first: the frontend can rewrite the shared entry at any time.
            vr_ring_req req;
            std::memcpy(&req, &f.reqs[f.req_cons & (f.size - 1)], sizeof req);
            std::atomic_signal_fence(std::memory_order_seq_cst);
            ++f.req_cons;
            ++stats_.requests;
            ++f.requests;
            ++f.in_flight;
            f.ops.spawn(run_op(f, req));
            if (f.dead) return;
        }
        if (vr_ring_final_check(&f.shared->req_prod, &f.shared->req_event, f.req_cons) == f.req_cons) return;
    }
}

void daemon::violation(frontend& f, const char* what) {
    ++stats_.violations;
    ++f.violations;
    if (f.port)
        std::fprintf(stderr, "vmrdmad: Xen guest dom%d broke the ring protocol (%s): disconnected\n",
                     static_cast<int>(-f.pid), what);
    else
        std::fprintf(stderr, "vmrdmad: frontend on fd %d broke the ring protocol (%s): disconnected\n", f.sock, what);
    f.dead = true;
    if (f.port) f.ended.request_stop();  // serve_guest sees the end and cleans up
    else ::shutdown(f.sock, SHUT_RDWR);  // serve_frontend sees the end and cleans up
}

void daemon::respond(frontend& f, const vr_ring_rsp& rsp) {
    --f.in_flight;
    if (f.dead) return;
    ++f.responses;
    if (rsp.status != 0) ++f.failed;
    f.rsps[f.rsp_prod_pvt & (f.size - 1)] = rsp;
    ++f.rsp_prod_pvt;
    ++stats_.responses;
    if (vr_ring_push(&f.shared->rsp_prod, &f.shared->rsp_event, f.rsp_prod_pvt)) {
        if (f.port) {
            f.port->notify();
        } else {
            std::uint64_t one = 1;
            [[maybe_unused]] auto n = ::write(f.rsp_efd, &one, sizeof one);
        }
    }
}

task<void> daemon::run_op(frontend& f, vr_ring_req req) {
    vr_ring_rsp rsp{};
    rsp.cookie = req.cookie;
    rsp.opcode = req.opcode;
    rsp.ep = req.ep;
    rsp.conn = req.conn;
    auto reject = [&](std::int32_t status) {
        ++stats_.rejected;
        ++f.rejected;
        throw rejection{status};
    };
    auto conn_of = [&]() -> frontend::conn_entry& {
        auto it = f.conns.find(req.conn);
        if (it == f.conns.end()) reject(-EINVAL);  // not a connection of this frontend
        return it->second;
    };
    auto region_of = [&](std::uint16_t ep) -> vmrdma::region& {
        auto it = f.regions.find(req.lkey);
        if (it == f.regions.end() || it->second->ep != ep) reject(-EACCES);  // not its region: bad key
        // Granted read-only (no LOCAL_WRITE): nothing may land in it.
        if (!it->second->writable && (req.opcode == VR_RING_READ || req.opcode == VR_RING_RECV)) reject(-EPERM);
        return it->second->mr;
    };
    auto endpoint_of = [&]() -> vmrdma::endpoint& {
        auto it = f.endpoints.find(req.ep);
        if (it == f.endpoints.end()) reject(-EINVAL);
        return it->second;
    };
    if (draining_) {  // stopping: nothing new
        ++stats_.drained;
        rsp.status = -ESHUTDOWN;
        respond(f, rsp);
        co_return;
    }
    std::uint64_t admitted = 0;
    try {
        if (req.flags != 0) reject(-EINVAL);
        switch (req.opcode) {
        case VR_RING_WRITE:
        case VR_RING_READ: {
            conn_of();
            region_of(f.conns[req.conn].ep);
            co_await admit(f, req.len);
            admitted = req.len;
            auto& c = conn_of();  // looked up again: admission may have waited
            auto& mr = region_of(c.ep);
            vmrdma::remote_region remote{req.rkey, 0};
            if (req.opcode == VR_RING_WRITE)
                co_await c.conn.write(mr, req.loff, remote, req.roff, req.len);
            else
                co_await c.conn.read(mr, req.loff, remote, req.roff, req.len);
            rsp.bytes = req.len;
            break;
        }
        case VR_RING_SEND: {
            conn_of();
            region_of(f.conns[req.conn].ep);
            co_await admit(f, req.len);
            admitted = req.len;
            auto& c = conn_of();
            auto& mr = region_of(c.ep);
            co_await c.conn.send(mr, req.loff, req.len, req.tag);
            rsp.bytes = req.len;
            break;
        }
        case VR_RING_RECV: {
            auto& ep = endpoint_of();
            auto& mr = region_of(req.ep);
            auto got = co_await ep.recv(mr, req.loff, req.len, req.tag, req.mask, f.drain.get_token());
            rsp.bytes = got.length;
            rsp.tag = got.tag;
            break;
        }
        case VR_RING_FADD:
            rsp.value = co_await conn_of().conn.fetch_add({req.rkey, 0}, req.roff, req.operand);
            break;
        case VR_RING_CSWAP:
            rsp.value = co_await conn_of().conn.compare_swap({req.rkey, 0}, req.roff, req.operand, req.swap);
            break;
        case VR_RING_CONNECT:
        case VR_RING_ACCEPT: {
            auto& ep = endpoint_of();
            vmrdma::mac_address peer;
            std::memcpy(peer.bytes.data(), req.peer_mac, 6);
            vmrdma::connection conn;  // (no co_await inside ?: : GCC 12 miscompiles it)
            if (req.opcode == VR_RING_CONNECT)
                conn = co_await ep.connect(peer, req.peer_ep, f.drain.get_token());
            else
                conn = co_await ep.accept(f.drain.get_token());
            if (f.dead) throw error(errc::cancelled, "frontend gone");  // conn closes here
            std::uint32_t handle = f.next_conn++;
            if (handle == 0) handle = f.next_conn++;
            frontend::conn_entry entry{std::move(conn), req.ep, 0, {}, req.opcode == VR_RING_ACCEPT};
            if (req.opcode == VR_RING_CONNECT) {
                entry.peer_ep = req.peer_ep;
                std::memcpy(entry.peer_mac.data(), req.peer_mac, 6);
            }
            f.conns[handle] = std::move(entry);
            rsp.conn = handle;
            break;
        }
        case VR_RING_DISCONNECT:
            conn_of();
            f.conns.erase(req.conn);  // outstanding operations fail with cancelled
            break;
        // Control on the ring: Xen guests only (a socket frontend uses VR_CTL_*).
        case VR_RING_OPEN_EP:
        case VR_RING_CLOSE_EP:
        case VR_RING_REG:
        case VR_RING_DEREG: {
            if (!f.port) reject(-EINVAL);
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
            break;
        }
        default: reject(-EINVAL);
        }
    } catch (const rejection& r) {
        rsp.status = r.status;
    } catch (const error& e) {
        rsp.status = status_of(e.code(), rsp.nak_reason);
        if (draining_ && e.code() == errc::cancelled) rsp.status = -ESHUTDOWN;  // stopped waiting for a peer
        if (std::getenv("VMRDMAD_DEBUG"))
            std::fprintf(stderr, "vmrdmad: op %u failed: %s\n", unsigned(req.opcode), e.what());
    } catch (...) {
        rsp.status = -EIO;
    }
    if (admitted) release(f, admitted);
    respond(f, rsp);
}

// Admission by weight (options::inflight_bytes).
std::uint64_t daemon::share_of(const frontend& f) const {
    std::uint64_t total = 0;
    for (auto* g : frontends_)
        if (g == &f || g->bulk_inflight > 0 || g->bulk_waiting > 0) total += g->weight();
    return opts_.inflight_bytes * f.weight() / total;
}

task<void> daemon::admit(frontend& f, std::uint64_t bytes) {
    if (opts_.inflight_bytes == 0) co_return;
    struct park {
        daemon& d;
        bool await_ready() const noexcept { return false; }
        void await_suspend(std::coroutine_handle<> h) { d.admission_waiters_.push_back(h); }
        void await_resume() const noexcept {}
    };
    ++f.bulk_waiting;
    while (!f.dead && !draining_ && f.bulk_inflight > 0 && f.bulk_inflight + bytes > share_of(f))
        co_await park{*this};
    --f.bulk_waiting;
    if (f.dead || draining_) throw error(errc::cancelled, "frontend gone or daemon stopping");
    f.bulk_inflight += bytes;
}

void daemon::release(frontend& f, std::uint64_t bytes) {
    if (opts_.inflight_bytes == 0) return;
    f.bulk_inflight -= bytes;
    wake_admission();
}

void daemon::wake_admission() {
    auto waiters = std::move(admission_waiters_);
    admission_waiters_.clear();
    for (auto h : waiters) loop_.make_ready(h);
}

task<void> daemon::cleanup(frontend& f) {
    f.dead = true;
    wake_admission();  // its operations waiting for admission give up
    f.stop.request_stop();  // the doorbell watcher
    f.conns.clear();        // disconnect first: connection ids die with their endpoint
    f.ep_info.clear();
    f.endpoints.clear();    // vr_ep_close: receives, accepts and regions fail or go
    co_await f.ops.join();  // every operation of this frontend has ended
    f.regions.clear();      // dereg (already gone from the engine) and unmap
    f.registered_bytes = 0;
}

}  // namespace vmrdmad
