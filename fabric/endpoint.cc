// fi_endpoint (FI_EP_RDM): binding, enabling (opens the vmrdma endpoint and
// its messenger), names, options, and the data operations of fi_msg,
// fi_tagged, fi_rma and fi_atomic, each turned into one call of the
// messenger with the device's mutex held.
#include <arpa/inet.h>

#include <cstring>

#include "fabric/atomics.hpp"
#include "fabric/glue.hpp"
#include "fabric/info.hpp"
#include "fabric/messenger.hpp"

namespace vmrdma::fabric {

namespace {

ep_obj* ep_of(fid_ep* f) { return owner_of(f, &ep_obj::fid); }
ep_obj* ep_of(fid* f) { return ep_of(owner_of(f, &fid_ep::fid)); }

std::vector<iovec> iov_of(const void* buf, std::size_t len) {
    return {iovec{const_cast<void*>(buf), len}};
}

std::vector<iovec> iov_of(const iovec* iov, std::size_t count) { return {iov, iov + count}; }

// Runs an operation on an enabled endpoint with the device's lock held; a
// full queue (-FI_EAGAIN) turns the loop so that the caller's retry finds
// room.
template <typename Fn>
ssize_t with_messenger(ep_obj* ep, Fn&& fn) {
    return guarded([&]() -> ssize_t {
        std::lock_guard lock(ep->dom->ctx->mutex());
        if (!ep->m) return -FI_EOPBADSTATE;
        ssize_t rc = fn(*ep->m);
        if (rc == -FI_EAGAIN) ep->dom->ctx->progress();
        return rc;
    });
}

// Whether an operation posted with these flags reports its success.
bool wants_tx(const ep_obj* ep, std::uint64_t flags) { return !ep->tx_selective || (flags & FI_COMPLETION); }
bool wants_rx(const ep_obj* ep, std::uint64_t flags) { return !ep->rx_selective || (flags & FI_COMPLETION); }

// ---------------------------------------------------------------- fi_ops

int ep_close(fid* f) {
    auto* ep = ep_of(f);
    {
        std::lock_guard lock(ep->dom->ctx->mutex());
        ep->m.reset();
        if (ep->av) ep->av->refs--;
        if (ep->tx_cq) ep->tx_cq->refs--;
        if (ep->rx_cq) ep->rx_cq->refs--;
        for (auto* c : ep->cntrs)
            if (c) c->refs--;
        if (ep->eq) ep->eq->refs--;
        ep->dom->refs--;
    }
    delete ep;
    return 0;
}

int ep_bind(fid* f, fid* bfid, std::uint64_t flags) {
    auto* ep = ep_of(f);
    std::lock_guard lock(ep->dom->ctx->mutex());
    if (ep->m) return -FI_EOPBADSTATE;  // bind before fi_enable
    switch (bfid->fclass) {
    case FI_CLASS_AV: {
        auto* av = owner_of(owner_of(bfid, &fid_av::fid), &av_obj::fid);
        if (ep->av) return -FI_EINVAL;
        ep->av = av;
        av->refs++;
        return 0;
    }
    case FI_CLASS_CQ: {
        auto* cq = owner_of(owner_of(bfid, &fid_cq::fid), &cq_obj::fid);
        if (flags & ~(FI_TRANSMIT | FI_RECV | FI_SELECTIVE_COMPLETION)) return -FI_EBADFLAGS;
        if (flags & FI_TRANSMIT) {
            if (ep->tx_cq) return -FI_EINVAL;
            ep->tx_cq = cq;
            cq->refs++;
            ep->tx_selective = flags & FI_SELECTIVE_COMPLETION;
        }
        if (flags & FI_RECV) {
            if (ep->rx_cq) return -FI_EINVAL;
            ep->rx_cq = cq;
            cq->refs++;
            ep->rx_selective = flags & FI_SELECTIVE_COMPLETION;
        }
        return 0;
    }
    case FI_CLASS_CNTR: {
        auto* c = owner_of(owner_of(bfid, &fid_cntr::fid), &cntr_obj::fid);
        const std::pair<std::uint64_t, cntr_slot> slots[] = {
            {FI_SEND, cntr_send},   {FI_RECV, cntr_recv},
            {FI_READ, cntr_read},   {FI_WRITE, cntr_write},
            {FI_REMOTE_READ, cntr_remote_read}, {FI_REMOTE_WRITE, cntr_remote_write}};
        if (flags & ~(FI_SEND | FI_RECV | FI_READ | FI_WRITE | FI_REMOTE_READ | FI_REMOTE_WRITE))
            return -FI_EBADFLAGS;
        for (auto [bit, slot] : slots) {
            if (!(flags & bit)) continue;
            if (ep->cntrs[slot]) ep->cntrs[slot]->refs--;
            ep->cntrs[slot] = c;
            c->refs++;
        }
        return 0;
    }
    case FI_CLASS_EQ: {
        auto* eq = owner_of(owner_of(bfid, &fid_eq::fid), &eq_obj::fid);
        ep->eq = eq;
        eq->refs++;
        return 0;
    }
    default: return -FI_EINVAL;
    }
}

// Opens the vmrdma endpoint: the id the source address names, else the
// first free one.
vmrdma::endpoint open_vmrdma_endpoint(ep_obj* ep) {
    auto& dev = ep->dom->ctx->device();
    const vmrdma::endpoint_options listening{.weight = 1, .listen = true};
    if (ep->wanted_id) {
        try {
            return dev.open_endpoint(*ep->wanted_id, listening);
        } catch (const vmrdma::error& e) {
            // A service names the endpoint id; a device has a few dozen.
            throw vmrdma::error(e.code(), "cannot open endpoint id " + std::to_string(*ep->wanted_id) +
                                              " (the service of the source address; a device has ids from 0 "
                                              "to a few dozen, e.g. fabtests' -B 1): " + e.what());
        }
    }
    std::optional<vmrdma::error> last;
    for (std::uint16_t id = 1; id < 64; ++id) {
        try {
            return dev.open_endpoint(id, listening);
        } catch (const vmrdma::error& e) {
            last = e;
        }
    }
    throw *last;
}

int ep_control(fid* f, int command, void* arg) {
    auto* ep = ep_of(f);
    return guarded([&]() -> int {
        std::lock_guard lock(ep->dom->ctx->mutex());
        switch (command) {
        case FI_ENABLE:
            if (ep->m) return 0;
            if (!ep->av) return -FI_ENOAV;
            if (!ep->tx_cq && !ep->rx_cq && !ep->cntrs[cntr_send] && !ep->cntrs[cntr_recv]) return -FI_ENOCQ;
            ep->m = std::make_unique<messenger>(*ep, open_vmrdma_endpoint(ep));
            return 0;
        case FI_GETOPSFLAG: {
            auto* flags = static_cast<std::uint64_t*>(arg);
            *flags = (*flags & FI_TRANSMIT) ? ep->tx_op_flags : ep->rx_op_flags;
            return 0;
        }
        case FI_SETOPSFLAG: {
            auto flags = *static_cast<std::uint64_t*>(arg);
            if (flags & FI_TRANSMIT) ep->tx_op_flags = flags & ~(FI_TRANSMIT | FI_RECV);
            if (flags & FI_RECV) ep->rx_op_flags = flags & ~(FI_TRANSMIT | FI_RECV);
            return 0;
        }
        default: return -FI_ENOSYS;
        }
    });
}

fi_ops ep_fi_ops = {
    .size = sizeof(fi_ops),
    .close = ep_close,
    .bind = ep_bind,
    .control = ep_control,
    .ops_open = no_ops_open,
    .tostr = nullptr,
    .ops_set = nullptr,
};

// ---------------------------------------------------------------- fi_ops_ep

ssize_t ep_cancel(fid_t f, void* context) {
    auto* ep = ep_of(f);
    return with_messenger(ep, [&](messenger& m) -> ssize_t { return m.cancel(context); });
}

int ep_getopt(fid_t f, int level, int optname, void* optval, std::size_t* optlen) {
    auto* ep = ep_of(f);
    if (level != FI_OPT_ENDPOINT) return -FI_ENOPROTOOPT;
    if (optname == FI_OPT_MIN_MULTI_RECV) {
        if (*optlen < sizeof(std::size_t)) return -FI_ETOOSMALL;
        *static_cast<std::size_t*>(optval) = ep->min_multi_recv;
        *optlen = sizeof(std::size_t);
        return 0;
    }
    return -FI_ENOPROTOOPT;
}

int ep_setopt(fid_t f, int level, int optname, const void* optval, std::size_t optlen) {
    auto* ep = ep_of(f);
    if (level != FI_OPT_ENDPOINT) return -FI_ENOPROTOOPT;
    if (optname == FI_OPT_MIN_MULTI_RECV) {
        if (optlen < sizeof(std::size_t)) return -FI_EINVAL;
        ep->min_multi_recv = *static_cast<const std::size_t*>(optval);
        return 0;
    }
    return -FI_ENOPROTOOPT;
}

int no_ctx(fid_ep*, int, fi_tx_attr*, fid_ep**, void*) { return -FI_ENOSYS; }
int no_rx_ctx(fid_ep*, int, fi_rx_attr*, fid_ep**, void*) { return -FI_ENOSYS; }

ssize_t rx_size_left(fid_ep* f) {
    return with_messenger(ep_of(f), [](messenger& m) -> ssize_t { return static_cast<ssize_t>(m.rx_room()); });
}

ssize_t tx_size_left(fid_ep* f) {
    return with_messenger(ep_of(f), [](messenger& m) -> ssize_t { return static_cast<ssize_t>(m.tx_room()); });
}

fi_ops_ep ep_ops = {
    .size = sizeof(fi_ops_ep),
    .cancel = ep_cancel,
    .getopt = ep_getopt,
    .setopt = ep_setopt,
    .tx_ctx = no_ctx,
    .rx_ctx = no_rx_ctx,
    .rx_size_left = rx_size_left,
    .tx_size_left = tx_size_left,
};

// ---------------------------------------------------------------- fi_ops_cm

int cm_getname(fid_t f, void* addr, std::size_t* addrlen) {
    auto* ep = ep_of(f);
    return guarded([&]() -> int {
        std::lock_guard lock(ep->dom->ctx->mutex());
        if (!ep->m) return -FI_EOPBADSTATE;
        const std::size_t room = *addrlen;
        if (ep->dom->ipv4) {
            // The interface's IPv4 address; the port is the endpoint id.
            *addrlen = sizeof(sockaddr_in);
            if (room < sizeof(sockaddr_in)) return -FI_ETOOSMALL;
            sockaddr_in in{};
            in.sin_family = AF_INET;
            in.sin_addr = ep->dom->own_ipv4;
            in.sin_port = htons(*ep->m->address().endpoint);
            std::memcpy(addr, &in, sizeof in);
            return 0;
        }
        *addrlen = address_size;
        if (room < address_size) return -FI_ETOOSMALL;
        encode_address(ep->m->address(), addr);
        return 0;
    });
}

int cm_setname(fid_t, void*, std::size_t) { return -FI_ENOSYS; }
int cm_getpeer(fid_ep*, void*, std::size_t*) { return -FI_ENOSYS; }
int cm_connect(fid_ep*, const void*, const void*, std::size_t) { return -FI_ENOSYS; }
int cm_listen(fid_pep*) { return -FI_ENOSYS; }
int cm_accept(fid_ep*, const void*, std::size_t) { return -FI_ENOSYS; }
int cm_reject(fid_pep*, fid_t, const void*, std::size_t) { return -FI_ENOSYS; }
int cm_shutdown(fid_ep*, std::uint64_t) { return -FI_ENOSYS; }
int cm_join(fid_ep*, const void*, std::uint64_t, fid_mc**, void*) { return -FI_ENOSYS; }

fi_ops_cm cm_ops = {
    .size = sizeof(fi_ops_cm),
    .setname = cm_setname,
    .getname = cm_getname,
    .getpeer = cm_getpeer,
    .connect = cm_connect,
    .listen = cm_listen,
    .accept = cm_accept,
    .reject = cm_reject,
    .shutdown = cm_shutdown,
    .join = cm_join,
};

// ---------------------------------------------------------------- messages

ssize_t do_send(fid_ep* f, std::vector<iovec> iov, fi_addr_t dest, void* context, bool tagged, std::uint64_t tag,
                std::optional<std::uint64_t> data, std::uint64_t flags, bool inject) {
    auto* ep = ep_of(f);
    send_args a;
    a.iov = std::move(iov);
    a.dest = dest;
    a.context = context;
    a.tagged = tagged;
    a.tag = tag;
    a.data = data;
    a.inject = inject;
    a.completion = wants_tx(ep, flags);
    return with_messenger(ep, [&](messenger& m) { return m.send(std::move(a)); });
}

ssize_t do_recv(fid_ep* f, std::vector<iovec> iov, fi_addr_t src, void* context, bool tagged, std::uint64_t tag,
                std::uint64_t ignore, std::uint64_t flags) {
    auto* ep = ep_of(f);
    recv_args a;
    a.iov = std::move(iov);
    a.src = src;
    a.context = context;
    a.tagged = tagged;
    a.tag = tag;
    a.ignore = ignore;
    a.flags = flags;
    a.completion = wants_rx(ep, flags);
    return with_messenger(ep, [&](messenger& m) { return m.recv(std::move(a)); });
}

ssize_t msg_recv(fid_ep* f, void* buf, std::size_t len, void*, fi_addr_t src, void* context) {
    return do_recv(f, iov_of(buf, len), src, context, false, 0, 0, ep_of(f)->rx_op_flags);
}
ssize_t msg_recvv(fid_ep* f, const iovec* iov, void**, std::size_t count, fi_addr_t src, void* context) {
    if (count > iov_limit) return -FI_EINVAL;
    return do_recv(f, iov_of(iov, count), src, context, false, 0, 0, ep_of(f)->rx_op_flags);
}
ssize_t msg_recvmsg(fid_ep* f, const fi_msg* msg, std::uint64_t flags) {
    if (msg->iov_count > iov_limit) return -FI_EINVAL;
    return do_recv(f, iov_of(msg->msg_iov, msg->iov_count), msg->addr, msg->context, false, 0, 0, flags);
}
ssize_t msg_send(fid_ep* f, const void* buf, std::size_t len, void*, fi_addr_t dest, void* context) {
    return do_send(f, iov_of(buf, len), dest, context, false, 0, std::nullopt, ep_of(f)->tx_op_flags, false);
}
ssize_t msg_sendv(fid_ep* f, const iovec* iov, void**, std::size_t count, fi_addr_t dest, void* context) {
    if (count > iov_limit) return -FI_EINVAL;
    return do_send(f, iov_of(iov, count), dest, context, false, 0, std::nullopt, ep_of(f)->tx_op_flags, false);
}
ssize_t msg_sendmsg(fid_ep* f, const fi_msg* msg, std::uint64_t flags) {
    if (msg->iov_count > iov_limit) return -FI_EINVAL;
    std::optional<std::uint64_t> data;
    if (flags & FI_REMOTE_CQ_DATA) data = msg->data;
    return do_send(f, iov_of(msg->msg_iov, msg->iov_count), msg->addr, msg->context, false, 0, data, flags, false);
}
ssize_t msg_inject(fid_ep* f, const void* buf, std::size_t len, fi_addr_t dest) {
    return do_send(f, iov_of(buf, len), dest, nullptr, false, 0, std::nullopt, 0, true);
}
ssize_t msg_senddata(fid_ep* f, const void* buf, std::size_t len, void*, std::uint64_t data, fi_addr_t dest,
                     void* context) {
    return do_send(f, iov_of(buf, len), dest, context, false, 0, data, ep_of(f)->tx_op_flags, false);
}
ssize_t msg_injectdata(fid_ep* f, const void* buf, std::size_t len, std::uint64_t data, fi_addr_t dest) {
    return do_send(f, iov_of(buf, len), dest, nullptr, false, 0, data, 0, true);
}

fi_ops_msg msg_ops = {
    .size = sizeof(fi_ops_msg),
    .recv = msg_recv,
    .recvv = msg_recvv,
    .recvmsg = msg_recvmsg,
    .send = msg_send,
    .sendv = msg_sendv,
    .sendmsg = msg_sendmsg,
    .inject = msg_inject,
    .senddata = msg_senddata,
    .injectdata = msg_injectdata,
};

ssize_t t_recv(fid_ep* f, void* buf, std::size_t len, void*, fi_addr_t src, std::uint64_t tag, std::uint64_t ignore,
               void* context) {
    return do_recv(f, iov_of(buf, len), src, context, true, tag, ignore, ep_of(f)->rx_op_flags);
}
ssize_t t_recvv(fid_ep* f, const iovec* iov, void**, std::size_t count, fi_addr_t src, std::uint64_t tag,
                std::uint64_t ignore, void* context) {
    if (count > iov_limit) return -FI_EINVAL;
    return do_recv(f, iov_of(iov, count), src, context, true, tag, ignore, ep_of(f)->rx_op_flags);
}
ssize_t t_recvmsg(fid_ep* f, const fi_msg_tagged* msg, std::uint64_t flags) {
    if (msg->iov_count > iov_limit) return -FI_EINVAL;
    return do_recv(f, iov_of(msg->msg_iov, msg->iov_count), msg->addr, msg->context, true, msg->tag, msg->ignore,
                   flags);
}
ssize_t t_send(fid_ep* f, const void* buf, std::size_t len, void*, fi_addr_t dest, std::uint64_t tag,
               void* context) {
    return do_send(f, iov_of(buf, len), dest, context, true, tag, std::nullopt, ep_of(f)->tx_op_flags, false);
}
ssize_t t_sendv(fid_ep* f, const iovec* iov, void**, std::size_t count, fi_addr_t dest, std::uint64_t tag,
                void* context) {
    if (count > iov_limit) return -FI_EINVAL;
    return do_send(f, iov_of(iov, count), dest, context, true, tag, std::nullopt, ep_of(f)->tx_op_flags, false);
}
ssize_t t_sendmsg(fid_ep* f, const fi_msg_tagged* msg, std::uint64_t flags) {
    if (msg->iov_count > iov_limit) return -FI_EINVAL;
    std::optional<std::uint64_t> data;
    if (flags & FI_REMOTE_CQ_DATA) data = msg->data;
    return do_send(f, iov_of(msg->msg_iov, msg->iov_count), msg->addr, msg->context, true, msg->tag, data, flags,
                   false);
}
ssize_t t_inject(fid_ep* f, const void* buf, std::size_t len, fi_addr_t dest, std::uint64_t tag) {
    return do_send(f, iov_of(buf, len), dest, nullptr, true, tag, std::nullopt, 0, true);
}
ssize_t t_senddata(fid_ep* f, const void* buf, std::size_t len, void*, std::uint64_t data, fi_addr_t dest,
                   std::uint64_t tag, void* context) {
    return do_send(f, iov_of(buf, len), dest, context, true, tag, data, ep_of(f)->tx_op_flags, false);
}
ssize_t t_injectdata(fid_ep* f, const void* buf, std::size_t len, std::uint64_t data, fi_addr_t dest,
                     std::uint64_t tag) {
    return do_send(f, iov_of(buf, len), dest, nullptr, true, tag, data, 0, true);
}

fi_ops_tagged tagged_ops = {
    .size = sizeof(fi_ops_tagged),
    .recv = t_recv,
    .recvv = t_recvv,
    .recvmsg = t_recvmsg,
    .send = t_send,
    .sendv = t_sendv,
    .sendmsg = t_sendmsg,
    .inject = t_inject,
    .senddata = t_senddata,
    .injectdata = t_injectdata,
};

// ---------------------------------------------------------------- RMA

ssize_t do_rma(fid_ep* f, msg_kind kind, std::vector<iovec> local, fi_addr_t dest, std::uint64_t addr,
               std::uint64_t key, void* context, std::optional<std::uint64_t> data, std::uint64_t flags,
               bool inject) {
    auto* ep = ep_of(f);
    rma_args a;
    a.kind = kind;
    a.local = std::move(local);
    a.dest = dest;
    a.addr = addr;
    a.key = key;
    a.context = context;
    a.data = data;
    a.inject = inject;
    a.completion = wants_tx(ep, flags);
    return with_messenger(ep, [&](messenger& m) { return m.rma(std::move(a)); });
}

ssize_t rma_read(fid_ep* f, void* buf, std::size_t len, void*, fi_addr_t src, std::uint64_t addr,
                 std::uint64_t key, void* context) {
    return do_rma(f, msg_kind::read_req, iov_of(buf, len), src, addr, key, context, std::nullopt,
                  ep_of(f)->tx_op_flags, false);
}
ssize_t rma_readv(fid_ep* f, const iovec* iov, void**, std::size_t count, fi_addr_t src, std::uint64_t addr,
                  std::uint64_t key, void* context) {
    if (count > iov_limit) return -FI_EINVAL;
    return do_rma(f, msg_kind::read_req, iov_of(iov, count), src, addr, key, context, std::nullopt,
                  ep_of(f)->tx_op_flags, false);
}
ssize_t rma_readmsg(fid_ep* f, const fi_msg_rma* msg, std::uint64_t flags) {
    if (msg->iov_count > iov_limit || msg->rma_iov_count != 1) return -FI_EINVAL;
    return do_rma(f, msg_kind::read_req, iov_of(msg->msg_iov, msg->iov_count), msg->addr, msg->rma_iov[0].addr,
                  msg->rma_iov[0].key, msg->context, std::nullopt, flags, false);
}
ssize_t rma_write(fid_ep* f, const void* buf, std::size_t len, void*, fi_addr_t dest, std::uint64_t addr,
                  std::uint64_t key, void* context) {
    return do_rma(f, msg_kind::write, iov_of(buf, len), dest, addr, key, context, std::nullopt,
                  ep_of(f)->tx_op_flags, false);
}
ssize_t rma_writev(fid_ep* f, const iovec* iov, void**, std::size_t count, fi_addr_t dest, std::uint64_t addr,
                   std::uint64_t key, void* context) {
    if (count > iov_limit) return -FI_EINVAL;
    return do_rma(f, msg_kind::write, iov_of(iov, count), dest, addr, key, context, std::nullopt,
                  ep_of(f)->tx_op_flags, false);
}
ssize_t rma_writemsg(fid_ep* f, const fi_msg_rma* msg, std::uint64_t flags) {
    if (msg->iov_count > iov_limit || msg->rma_iov_count != 1) return -FI_EINVAL;
    std::optional<std::uint64_t> data;
    if (flags & FI_REMOTE_CQ_DATA) data = msg->data;
    return do_rma(f, msg_kind::write, iov_of(msg->msg_iov, msg->iov_count), msg->addr, msg->rma_iov[0].addr,
                  msg->rma_iov[0].key, msg->context, data, flags, false);
}
ssize_t rma_inject(fid_ep* f, const void* buf, std::size_t len, fi_addr_t dest, std::uint64_t addr,
                   std::uint64_t key) {
    return do_rma(f, msg_kind::write, iov_of(buf, len), dest, addr, key, nullptr, std::nullopt, 0, true);
}
ssize_t rma_writedata(fid_ep* f, const void* buf, std::size_t len, void*, std::uint64_t data, fi_addr_t dest,
                      std::uint64_t addr, std::uint64_t key, void* context) {
    return do_rma(f, msg_kind::write, iov_of(buf, len), dest, addr, key, context, data, ep_of(f)->tx_op_flags,
                  false);
}
ssize_t rma_injectdata(fid_ep* f, const void* buf, std::size_t len, std::uint64_t data, fi_addr_t dest,
                       std::uint64_t addr, std::uint64_t key) {
    return do_rma(f, msg_kind::write, iov_of(buf, len), dest, addr, key, nullptr, data, 0, true);
}

fi_ops_rma rma_ops = {
    .size = sizeof(fi_ops_rma),
    .read = rma_read,
    .readv = rma_readv,
    .readmsg = rma_readmsg,
    .write = rma_write,
    .writev = rma_writev,
    .writemsg = rma_writemsg,
    .inject = rma_inject,
    .writedata = rma_writedata,
    .injectdata = rma_injectdata,
};

// ---------------------------------------------------------------- atomics

std::vector<iovec> ioc_of(const fi_ioc* ioc, std::size_t count, int datatype) {
    std::vector<iovec> out;
    const std::size_t size = atomic_size(datatype);
    for (std::size_t i = 0; i < count; ++i) out.push_back({ioc[i].addr, ioc[i].count * size});
    return out;
}

std::size_t elements(const fi_ioc* ioc, std::size_t count) {
    std::size_t n = 0;
    for (std::size_t i = 0; i < count; ++i) n += ioc[i].count;
    return n;
}

ssize_t do_atomic(fid_ep* f, std::vector<iovec> operand, std::size_t count, std::vector<iovec> compare,
                  std::vector<iovec> result, fi_addr_t dest, std::uint64_t addr, std::uint64_t key, int datatype,
                  int op, void* context, std::uint64_t flags, bool inject) {
    auto* ep = ep_of(f);
    rma_args a;
    a.kind = msg_kind::atomic;
    a.local = std::move(operand);
    a.compare = std::move(compare);
    a.result = std::move(result);
    a.count = count;
    a.dest = dest;
    a.addr = addr;
    a.key = key;
    a.datatype = datatype;
    a.op = op;
    a.context = context;
    a.inject = inject;
    a.completion = wants_tx(ep, flags);
    return with_messenger(ep, [&](messenger& m) { return m.rma(std::move(a)); });
}

ssize_t at_write(fid_ep* f, const void* buf, std::size_t count, void*, fi_addr_t dest, std::uint64_t addr,
                 std::uint64_t key, fi_datatype dt, fi_op op, void* context) {
    return do_atomic(f, iov_of(buf, count * atomic_size(dt)), count, {}, {}, dest, addr, key, dt, op, context,
                     ep_of(f)->tx_op_flags, false);
}
ssize_t at_writev(fid_ep* f, const fi_ioc* iov, void**, std::size_t count, fi_addr_t dest, std::uint64_t addr,
                  std::uint64_t key, fi_datatype dt, fi_op op, void* context) {
    return do_atomic(f, ioc_of(iov, count, dt), elements(iov, count), {}, {}, dest, addr, key, dt, op, context,
                     ep_of(f)->tx_op_flags, false);
}
ssize_t at_writemsg(fid_ep* f, const fi_msg_atomic* msg, std::uint64_t flags) {
    if (msg->rma_iov_count != 1) return -FI_EINVAL;
    return do_atomic(f, ioc_of(msg->msg_iov, msg->iov_count, msg->datatype), elements(msg->msg_iov, msg->iov_count),
                     {}, {}, msg->addr, msg->rma_iov[0].addr, msg->rma_iov[0].key, msg->datatype, msg->op,
                     msg->context, flags, false);
}
ssize_t at_inject(fid_ep* f, const void* buf, std::size_t count, fi_addr_t dest, std::uint64_t addr,
                  std::uint64_t key, fi_datatype dt, fi_op op) {
    return do_atomic(f, iov_of(buf, count * atomic_size(dt)), count, {}, {}, dest, addr, key, dt, op, nullptr, 0,
                     true);
}
ssize_t at_readwrite(fid_ep* f, const void* buf, std::size_t count, void*, void* result, void*, fi_addr_t dest,
                     std::uint64_t addr, std::uint64_t key, fi_datatype dt, fi_op op, void* context) {
    const std::size_t bytes = count * atomic_size(dt);
    return do_atomic(f, buf ? iov_of(buf, bytes) : std::vector<iovec>{}, count, {}, iov_of(result, bytes), dest,
                     addr, key, dt, op, context, ep_of(f)->tx_op_flags, false);
}
ssize_t at_readwritev(fid_ep* f, const fi_ioc* iov, void**, std::size_t count, fi_ioc* resultv, void**,
                      std::size_t result_count, fi_addr_t dest, std::uint64_t addr, std::uint64_t key,
                      fi_datatype dt, fi_op op, void* context) {
    return do_atomic(f, iov ? ioc_of(iov, count, dt) : std::vector<iovec>{},
                     iov ? elements(iov, count) : elements(resultv, result_count), {},
                     ioc_of(resultv, result_count, dt), dest, addr, key, dt, op, context, ep_of(f)->tx_op_flags,
                     false);
}
ssize_t at_readwritemsg(fid_ep* f, const fi_msg_atomic* msg, fi_ioc* resultv, void**, std::size_t result_count,
                        std::uint64_t flags) {
    if (msg->rma_iov_count != 1) return -FI_EINVAL;
    const bool has_operand = msg->msg_iov && msg->iov_count;
    return do_atomic(f, has_operand ? ioc_of(msg->msg_iov, msg->iov_count, msg->datatype) : std::vector<iovec>{},
                     has_operand ? elements(msg->msg_iov, msg->iov_count) : elements(resultv, result_count), {},
                     ioc_of(resultv, result_count, msg->datatype), msg->addr, msg->rma_iov[0].addr,
                     msg->rma_iov[0].key, msg->datatype, msg->op, msg->context, flags, false);
}
ssize_t at_compwrite(fid_ep* f, const void* buf, std::size_t count, void*, const void* compare, void*, void* result,
                     void*, fi_addr_t dest, std::uint64_t addr, std::uint64_t key, fi_datatype dt, fi_op op,
                     void* context) {
    const std::size_t bytes = count * atomic_size(dt);
    return do_atomic(f, iov_of(buf, bytes), count, iov_of(compare, bytes), iov_of(result, bytes), dest, addr, key,
                     dt, op, context, ep_of(f)->tx_op_flags, false);
}
ssize_t at_compwritev(fid_ep* f, const fi_ioc* iov, void**, std::size_t count, const fi_ioc* comparev, void**,
                      std::size_t compare_count, fi_ioc* resultv, void**, std::size_t result_count, fi_addr_t dest,
                      std::uint64_t addr, std::uint64_t key, fi_datatype dt, fi_op op, void* context) {
    return do_atomic(f, ioc_of(iov, count, dt), elements(iov, count), ioc_of(comparev, compare_count, dt),
                     ioc_of(resultv, result_count, dt), dest, addr, key, dt, op, context, ep_of(f)->tx_op_flags,
                     false);
}
ssize_t at_compwritemsg(fid_ep* f, const fi_msg_atomic* msg, const fi_ioc* comparev, void**,
                        std::size_t compare_count, fi_ioc* resultv, void**, std::size_t result_count,
                        std::uint64_t flags) {
    if (msg->rma_iov_count != 1) return -FI_EINVAL;
    return do_atomic(f, ioc_of(msg->msg_iov, msg->iov_count, msg->datatype), elements(msg->msg_iov, msg->iov_count),
                     ioc_of(comparev, compare_count, msg->datatype), ioc_of(resultv, result_count, msg->datatype),
                     msg->addr, msg->rma_iov[0].addr, msg->rma_iov[0].key, msg->datatype, msg->op, msg->context,
                     flags, false);
}

int valid(atomic_kind kind, fi_datatype dt, fi_op op, std::size_t* count) {
    if (!atomic_valid(kind, op, dt)) return -FI_EOPNOTSUPP;
    *count = inject_max / 2 / atomic_size(dt);
    return 0;
}
int at_writevalid(fid_ep*, fi_datatype dt, fi_op op, std::size_t* count) {
    return valid(atomic_kind::base, dt, op, count);
}
int at_readwritevalid(fid_ep*, fi_datatype dt, fi_op op, std::size_t* count) {
    return valid(atomic_kind::fetch, dt, op, count);
}
int at_compwritevalid(fid_ep*, fi_datatype dt, fi_op op, std::size_t* count) {
    return valid(atomic_kind::compare, dt, op, count);
}

fi_ops_atomic atomic_ops = {
    .size = sizeof(fi_ops_atomic),
    .write = at_write,
    .writev = at_writev,
    .writemsg = at_writemsg,
    .inject = at_inject,
    .readwrite = at_readwrite,
    .readwritev = at_readwritev,
    .readwritemsg = at_readwritemsg,
    .compwrite = at_compwrite,
    .compwritev = at_compwritev,
    .compwritemsg = at_compwritemsg,
    .writevalid = at_writevalid,
    .readwritevalid = at_readwritevalid,
    .compwritevalid = at_compwritevalid,
};

}  // namespace

int endpoint_open(fid_domain* domain, fi_info* info, fid_ep** out, void* context) {
    return guarded([&]() -> int {
        auto* d = owner_of(domain, &domain_obj::fid);
        if (info && info->ep_attr && info->ep_attr->type != FI_EP_RDM && info->ep_attr->type != FI_EP_UNSPEC)
            return -FI_EINVAL;
        auto ep = std::make_unique<ep_obj>();
        ep->dom = d;
        ep->info = fi_dupinfo(info ? info : d->info);
        if (!ep->info) return -FI_ENOMEM;
        if (ep->info->tx_attr) ep->tx_op_flags = ep->info->tx_attr->op_flags;
        if (ep->info->rx_attr) ep->rx_op_flags = ep->info->rx_attr->op_flags;
        if (ep->info->src_addr && d->ipv4) {
            sockaddr_in in{};
            if (ep->info->src_addrlen < sizeof in) return -FI_EINVAL;
            std::memcpy(&in, ep->info->src_addr, sizeof in);
            if (in.sin_port) ep->wanted_id = ntohs(in.sin_port);
        } else if (ep->info->src_addr) {
            auto a = decode_address(ep->info->src_addr, ep->info->src_addrlen);
            if (!a) return -FI_EINVAL;
            ep->wanted_id = a->endpoint;
        }
        ep->fid.fid.fclass = FI_CLASS_EP;
        ep->fid.fid.context = context;
        ep->fid.fid.ops = &ep_fi_ops;
        ep->fid.ops = &ep_ops;
        ep->fid.cm = &cm_ops;
        ep->fid.msg = &msg_ops;
        ep->fid.rma = &rma_ops;
        ep->fid.tagged = &tagged_ops;
        ep->fid.atomic = &atomic_ops;
        std::lock_guard lock(d->ctx->mutex());
        d->refs++;
        *out = &ep.release()->fid;
        return 0;
    });
}

}  // namespace vmrdma::fabric
