#include "xen_backend.hpp"

#include <poll.h>
#include <sys/mman.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <vector>

extern "C" {
#include <xenevtchn.h>
#include <xengnttab.h>
#include <xenstore.h>

#include "proto/xen.h"
}

namespace vmrdmad {

using vmrdma::errc;
using vmrdma::error;
using vmrdma::task;

namespace {

// XenbusState (xen/io/xenbus.h).
enum : int {
    st_unknown = 0,
    st_initialising = 1,
    st_initwait = 2,
    st_initialised = 3,
    st_connected = 4,
    st_closing = 5,
    st_closed = 6,
};

// One guest's grant mappings and event channel: the Xen half of guest_port.
class xen_port final : public guest_port {
public:
    explicit xen_port(std::uint32_t domid) : domid_(domid) {
        gt_ = xengnttab_open(nullptr, 0);
        ev_ = xenevtchn_open(nullptr, 0);
        if (!gt_ || !ev_) {
            int e = errno;
            close_handles();
            errno = e;
            throw std::runtime_error(std::string("cannot open gntdev/evtchn: ") + std::strerror(e));
        }
    }
    ~xen_port() override { close_handles(); }

    bool bind(std::uint32_t remote_port) {
        auto p = xenevtchn_bind_interdomain(ev_, domid_, remote_port);
        if (p < 0) return false;
        local_ = static_cast<evtchn_port_t>(p);
        bound_ = true;
        return true;
    }
    int doorbell_fd() const override { return xenevtchn_fd(ev_); }
    void doorbell_ack() override {
        auto p = xenevtchn_pending(ev_);
        if (p >= 0) xenevtchn_unmask(ev_, static_cast<evtchn_port_t>(p));
    }
    void notify() override {
        if (bound_) xenevtchn_notify(ev_, local_);
    }
    void* map(const std::uint32_t* refs, std::uint32_t count, bool writable) override {
        std::vector<std::uint32_t> copy(refs, refs + count);
        errno = 0;
        return xengnttab_map_domain_grant_refs(gt_, count, domid_, copy.data(),
                                               writable ? PROT_READ | PROT_WRITE : PROT_READ);
    }
    void unmap(void* addr, std::uint32_t count) override {
        if (addr && xengnttab_unmap(gt_, addr, count) != 0)
            std::fprintf(stderr, "vmrdmad: dom%u: unmapping %u granted page(s): %s\n", domid_, count,
                         std::strerror(errno));
    }

private:
    void close_handles() {
        if (ev_ && bound_) xenevtchn_unbind(ev_, local_);
        bound_ = false;
        if (ev_) xenevtchn_close(ev_);
        if (gt_) xengnttab_close(gt_);
        ev_ = nullptr;
        gt_ = nullptr;
    }
    std::uint32_t domid_;
    xengnttab_handle* gt_ = nullptr;
    xenevtchn_handle* ev_ = nullptr;
    evtchn_port_t local_ = 0;
    bool bound_ = false;
};

}  // namespace

struct xen_backend::guest {
    std::uint32_t domid = 0;
    std::string be, fe;        // backend and frontend directories
    std::string fe_state_path; // watched
    int be_state = st_unknown; // what we last wrote
    std::unique_ptr<xen_port> port;
    void* ring = nullptr;
    std::uint32_t ring_pages = 0, ring_size = 0, admin_weight = 0;
    bool serving = false;
    std::stop_source end;
};

namespace {

// xs_read as a string; false when the node is missing.
bool read_str(xs_handle* xs, const std::string& path, std::string& out) {
    unsigned int len = 0;
    char* v = static_cast<char*>(xs_read(xs, XBT_NULL, path.c_str(), &len));
    if (!v) return false;
    out.assign(v, len);
    std::free(v);
    return true;
}

bool read_u32(xs_handle* xs, const std::string& path, std::uint32_t& out) {
    std::string s;
    if (!read_str(xs, path, s) || s.empty()) return false;
    char* end = nullptr;
    errno = 0;
    unsigned long v = std::strtoul(s.c_str(), &end, 10);
    if (errno || *end || v > 0xffffffffu) return false;
    out = static_cast<std::uint32_t>(v);
    return true;
}

int read_state(xs_handle* xs, const std::string& dir) {
    std::uint32_t v = 0;
    return read_u32(xs, dir + "/state", v) ? static_cast<int>(v) : st_unknown;
}

}  // namespace

xen_backend::xen_backend(vmrdma::event_loop& loop) : loop_(loop), base_("/local/domain/0/backend/" VR_XEN_DEVICE_TYPE) {
    xs_ = xs_open(0);
    if (!xs_) {
        int e = errno;
        throw std::runtime_error(std::string("--xen: cannot open xenstore: ") + std::strerror(e) +
                                 " (is this a Xen dom0 with xenstored running?)");
    }
    // The grant and event channel devices: fail now rather than per guest.
    auto* gt = xengnttab_open(nullptr, 0);
    int gt_err = errno;
    auto* ev = xenevtchn_open(nullptr, 0);
    int ev_err = errno;
    if (gt) xengnttab_close(gt);
    if (ev) xenevtchn_close(ev);
    if (!gt || !ev) {
        xs_close(xs_);
        xs_ = nullptr;
        int e = !gt ? gt_err : ev_err;
        throw std::runtime_error(std::string("--xen: cannot open ") + (!gt ? "/dev/xen/gntdev" : "/dev/xen/evtchn") +
                                 ": " + std::strerror(e) + " (load xen-gntdev and xen-evtchn; run as root in dom0)");
    }
}

xen_backend::~xen_backend() {
    if (xs_) xs_close(xs_);
}

// A detached device's node is gone: writing under it would create it again
// (and a later attach would find a stale device), so nothing is written then.
bool xen_backend::be_present(const guest& g) {
    std::string dummy;
    return read_str(xs_, g.be, dummy);
}

bool xen_backend::write_state(guest& g, int state) {
    if (!be_present(g)) return false;
    auto text = std::to_string(state);
    bool ok = xs_write(xs_, XBT_NULL, (g.be + "/state").c_str(), text.data(), static_cast<unsigned>(text.size()));
    if (ok) g.be_state = state;
    return ok;
}

// Like xenbus_dev_fatal: the reason in "error", then Closing.
void xen_backend::fatal(guest& g, int err, const std::string& what) {
    std::fprintf(stderr, "vmrdmad: dom%u: %s (%s)\n", g.domid, what.c_str(), std::strerror(err < 0 ? -err : err));
    auto text = std::to_string(err < 0 ? -err : err) + " " + what;
    if (!be_present(g)) return;
    xs_write(xs_, XBT_NULL, (g.be + "/error").c_str(), text.data(), static_cast<unsigned>(text.size()));
    write_state(g, st_closing);
}

// The NIC and the limits, then InitWait, in one transaction.
void xen_backend::publish(guest& g) {
    const auto& lim = daemon_->settings().per_frontend;
    auto mac = daemon_->mac();
    char mac_text[32];
    std::snprintf(mac_text, sizeof mac_text, "%02x:%02x:%02x:%02x:%02x:%02x", mac.bytes[0], mac.bytes[1],
                  mac.bytes[2], mac.bytes[3], mac.bytes[4], mac.bytes[5]);
    std::pair<const char*, std::string> keys[] = {
        {VR_XEN_KEY_MAC, mac_text},
        {VR_XEN_KEY_MTU, std::to_string(daemon_->mtu())},
        {VR_XEN_KEY_MAX_EPS, std::to_string(lim.endpoints)},
        {VR_XEN_KEY_MAX_REGS, std::to_string(lim.regions)},
        {VR_XEN_KEY_MAX_BYTES, std::to_string(lim.registered_bytes)},
        {VR_XEN_KEY_MAX_WEIGHT, std::to_string(lim.max_weight)},
        {"state", std::to_string(st_initwait)},
    };
    for (int attempt = 0; attempt < 16; ++attempt) {
        xs_transaction_t t = xs_transaction_start(xs_);
        if (t == XBT_NULL) break;
        bool ok = true;
        for (auto& [k, v] : keys)
            ok = ok && xs_write(xs_, t, (g.be + "/" + k).c_str(), v.data(), static_cast<unsigned>(v.size()));
        if (!ok) {
            xs_transaction_end(xs_, t, true);
            break;
        }
        if (xs_transaction_end(xs_, t, false)) {
            g.be_state = st_initwait;
            return;
        }
        if (errno != EAGAIN) break;
    }
    fatal(g, errno ? errno : EIO, "writing the backend's keys");
}

// The frontend is Initialised: map its ring, check the header, bind its
// channel, Connected (vb_connect in backend_kmod/vb_xenbus.c).
void xen_backend::connect(guest& g) {
    std::uint32_t size = 0, npages = 0, evtchn = 0;
    if (!read_u32(xs_, g.fe + "/" VR_XEN_KEY_RING_SIZE, size) || !read_u32(xs_, g.fe + "/" VR_XEN_KEY_RING_PAGES, npages) ||
        !read_u32(xs_, g.fe + "/" VR_XEN_KEY_EVTCHN, evtchn)) {
        fatal(g, EINVAL, "reading " + g.fe + "'s ring-size, ring-pages and event-channel");
        return;
    }
    if (!vr_ring_size_ok(size) || npages == 0 || npages > VR_XEN_MAX_RING_PAGES ||
        vr_ring_bytes(size) > npages * VR_XEN_PAGE_SIZE) {
        fatal(g, EINVAL, "bad ring: size " + std::to_string(size) + " in " + std::to_string(npages) + " page(s)");
        return;
    }
    if (size > daemon_->settings().per_frontend.max_ring_size) {
        fatal(g, ENOSPC, "ring of " + std::to_string(size) + " entries is over the limit of " +
                             std::to_string(daemon_->settings().per_frontend.max_ring_size) + " (--max-ring)");
        return;
    }
    std::uint32_t refs[VR_XEN_MAX_RING_PAGES];
    for (std::uint32_t i = 0; i < npages; ++i) {
        char key[32];
        std::snprintf(key, sizeof key, "/" VR_XEN_KEY_RING_REF, i);
        if (!read_u32(xs_, g.fe + key, refs[i])) {
            fatal(g, EINVAL, "reading " + g.fe + key);
            return;
        }
    }
    g.admin_weight = 0;
    if (std::uint32_t w = 0; read_u32(xs_, g.be + "/" VR_XEN_KEY_WEIGHT, w)) g.admin_weight = std::min<std::uint32_t>(w, 1024);
    std::unique_ptr<xen_port> port;
    try {
        port = std::make_unique<xen_port>(g.domid);
    } catch (const std::exception& e) {
        fatal(g, EIO, e.what());
        return;
    }
    void* ring = port->map(refs, npages, true);
    if (!ring) {
        fatal(g, errno ? errno : EFAULT, "mapping the ring");
        return;
    }
    auto* sh = static_cast<vr_ring_shared*>(ring);
    if (!vr_ring_header_ok(sh, size)) {
        port->unmap(ring, npages);
        fatal(g, EPROTO, "ring header does not match ring-size " + std::to_string(size));
        return;
    }
    if (!port->bind(evtchn)) {
        int e = errno;
        port->unmap(ring, npages);
        fatal(g, e ? e : EIO, "binding event channel " + std::to_string(evtchn));
        return;
    }
    g.port = std::move(port);
    g.ring = ring;
    g.ring_pages = npages;
    g.ring_size = size;
    g.serving = true;
    g.end = std::stop_source{};
    scope_.spawn(serve(g));  // serve_guest sets the ring up before it first suspends
    write_state(g, st_connected);
    std::fprintf(stderr, "vmrdmad: dom%u connected: ring of %u entries in %u page(s), event channel %u\n", g.domid,
                 size, npages, evtchn);
}

task<void> xen_backend::serve(guest& g) {
    bool broke = false;
    try {
        broke = co_await daemon_->serve_guest(*g.port, g.ring, g.ring_size, {g.domid, g.admin_weight},
                                              g.end.get_token());
    } catch (const std::exception& e) {
        std::fprintf(stderr, "vmrdmad: dom%u: %s\n", g.domid, e.what());
    }
    g.port->unmap(g.ring, g.ring_pages);
    g.ring = nullptr;
    g.port.reset();  // unbinds the channel
    g.serving = false;
    std::fprintf(stderr, "vmrdmad: dom%u gone: its endpoints closed, regions deregistered and unmapped, ring unmapped\n",
                 g.domid);
    if (broke)
        fatal(g, EPROTO, "ring protocol violation");
    else if (g.be_state == st_connected)
        write_state(g, st_closing);  // we stopped serving it (the daemon stops): the guest lets go
    if (!stopping_) reconcile();
}

// One pass over xenstore: new devices, frontend state changes, removals.
// Idempotent; run on every watch event and once a second.
void xen_backend::reconcile() {
    if (stopping_) return;
    unsigned int n = 0;
    char** doms = xs_directory(xs_, XBT_NULL, base_.c_str(), &n);
    for (unsigned int i = 0; doms && i < n; ++i) {
        char* end = nullptr;
        unsigned long domid = std::strtoul(doms[i], &end, 10);
        if (*end || domid == 0 || domid >= 0x7ff0 || guests_.contains(static_cast<std::uint32_t>(domid))) continue;
        std::string be = base_ + "/" + doms[i] + "/0";
        if (read_state(xs_, be) != st_initialising) continue;  // the attach tool's node, not yet complete
        auto g = std::make_unique<guest>();
        g->domid = static_cast<std::uint32_t>(domid);
        g->be = be;
        if (!read_str(xs_, be + "/frontend", g->fe) || g->fe.empty())
            g->fe = "/local/domain/" + std::to_string(domid) + "/device/" VR_XEN_DEVICE_TYPE "/0";
        g->fe_state_path = g->fe + "/state";
        xs_watch(xs_, g->fe_state_path.c_str(), "fe");
        std::fprintf(stderr, "vmrdmad: dom%lu: vmrdma device %s\n", domid, be.c_str());
        publish(*g);
        guests_.emplace(g->domid, std::move(g));
    }
    std::free(doms);
    for (auto it = guests_.begin(); it != guests_.end();) {
        guest& g = *it->second;
        bool be_gone = !be_present(g);
        int fe = read_state(xs_, g.fe);
        if (be_gone || fe == st_unknown || fe == st_closing || fe == st_closed) {
            if (g.serving) {
                g.end.request_stop();  // serve() reconciles again once it is torn down
                ++it;
                continue;
            }
            if (be_gone) {
                xs_unwatch(xs_, g.fe_state_path.c_str(), "fe");
                it = guests_.erase(it);
                continue;
            }
            if (fe == st_closing && g.be_state != st_closing && g.be_state != st_closed)
                write_state(g, st_closing);
            else if ((fe == st_closed || fe == st_unknown) && g.be_state != st_closed)
                write_state(g, st_closed);  // kept until the device node goes (detach)
        } else if (fe == st_initialising && g.be_state == st_closed) {
            publish(g);  // it came back
        } else if ((fe == st_initialised || fe == st_connected) && g.be_state == st_initwait && !g.serving) {
            connect(g);
        }
        ++it;
    }
}

task<void> xen_backend::watch_xenstore(std::stop_token stop) {
    while (!stop.stop_requested()) {
        try {
            co_await loop_.submit([&](io_uring_sqe* sqe) { io_uring_prep_poll_add(sqe, xs_fileno(xs_), POLLIN); },
                                  stop);
        } catch (const error&) {
            break;
        }
        while (char** ev = xs_check_watch(xs_)) std::free(ev);
        reconcile();
    }
}

task<void> xen_backend::tick(std::stop_token stop) {
    while (!stop.stop_requested()) {
        try {
            co_await loop_.sleep_for(std::chrono::seconds(1), stop);
        } catch (const error&) {
            break;
        }
        reconcile();
    }
}

task<void> xen_backend::run(daemon& d, std::stop_token stop) {
    daemon_ = &d;
    if (!xs_watch(xs_, base_.c_str(), "be") || !xs_watch(xs_, "@releaseDomain", "dead")) {
        int e = errno;
        throw std::runtime_error(std::string("--xen: cannot watch ") + base_ + ": " + std::strerror(e));
    }
    std::fprintf(stderr, "vmrdmad: Xen backend: serving guests' vmrdma devices under %s\n", base_.c_str());
    reconcile();
    vmrdma::async_scope watchers;
    watchers.spawn(watch_xenstore(stop));
    watchers.spawn(tick(stop));
    co_await watchers.join();
    // Stopping: disconnect every guest and wait until each is torn down.
    stopping_ = true;
    for (auto& [domid, g] : guests_)
        if (g->serving) g->end.request_stop();
    co_await scope_.join();
    for (auto& [domid, g] : guests_) {
        xs_unwatch(xs_, g->fe_state_path.c_str(), "fe");
        if (g->be_state != st_closed && g->be_state != st_closing) write_state(*g, st_closing);
    }
    xs_unwatch(xs_, base_.c_str(), "be");
    xs_unwatch(xs_, "@releaseDomain", "dead");
    guests_.clear();
}

}  // namespace vmrdmad
