#include "fabric/objects.hpp"

#include <sys/epoll.h>
#include <unistd.h>

#include <cstring>

#include "fabric/ipv4.hpp"
#include "fabric/messenger.hpp"

namespace vmrdma::fabric {

int fi_errno_of(const std::exception& e) noexcept {
    const auto* v = dynamic_cast<const vmrdma::error*>(&e);
    if (!v) return FI_EIO;
    if (v->code().category() != vmrdma::category()) return v->code().value() > 0 ? v->code().value() : FI_EIO;
    switch (static_cast<errc>(v->code().value())) {
    case errc::timeout: return FI_ETIMEDOUT;
    case errc::cancelled: return FI_ECANCELED;
    case errc::peer_gone: return FI_ECONNRESET;
    case errc::no_such_endpoint: return FI_ECONNREFUSED;
    case errc::bad_key:
    case errc::access_denied:
    case errc::permission_denied: return FI_EACCES;
    case errc::out_of_bounds:
    case errc::invalid_argument: return FI_EINVAL;
    case errc::message_too_long: return FI_EMSGSIZE;
    case errc::resources_exhausted:
    case errc::receiver_not_ready: return FI_ENOBUFS;
    case errc::shut_down: return FI_ESHUTDOWN;
    case errc::not_found: return FI_EHOSTUNREACH;
    default: return FI_EIO;
    }
}

domain_obj::~domain_obj() { fi_freeinfo(info); }

std::byte* domain_obj::target(std::uint64_t key, std::uint64_t addr, std::size_t len, std::uint64_t access,
                              int& err, mr_obj** out) const {
    auto it = mrs.find(key);
    if (it == mrs.end()) {
        err = FI_EACCES;  // no such key here: as a forged rkey is
        return nullptr;
    }
    const mr_obj& mr = *it->second;
    if ((mr.access & access) != access) {
        err = FI_EACCES;
        return nullptr;
    }
    const std::uint64_t start = virt_addr ? reinterpret_cast<std::uint64_t>(mr.base) : mr.offset;
    if (addr < start || addr - start > mr.len || len > mr.len - (addr - start)) {
        err = FI_EINVAL;
        return nullptr;
    }
    if (out) *out = it->second;
    return mr.base + (addr - start);
}

std::optional<peer_address> av_obj::peer(fi_addr_t a) {
    if (a >= table.size() || !table[a]) return std::nullopt;
    auto& e = *table[a];
    if (!e.peer && e.ipv4) {
        // An address's host may not be up when it is inserted: asked now.
        auto mac = resolve_ipv4(e.ipv4->sin_addr, dom->ctx->device().mac(), std::chrono::seconds(1));
        if (!mac) return std::nullopt;
        e.peer = peer_address{*mac, ntohs(e.ipv4->sin_port)};
        index.try_emplace(address_key(*e.peer), a);
    }
    return e.peer;
}

fi_addr_t av_obj::lookup(const peer_address& a) {
    if (auto it = index.find(address_key(a)); it != index.end()) return it->second;
    if (!dom->ipv4) return FI_ADDR_NOTAVAIL;
    // An IPv4 entry not used yet: the sender's IPv4 from the neighbour table.
    std::optional<in_addr> ip = a.mac == dom->ctx->device().mac() ? std::nullopt : ipv4_of_mac(a.mac);
    for (fi_addr_t i = 0; i < table.size(); ++i) {
        auto& e = table[i];
        if (!e || e.value().peer || !e.value().ipv4 || ntohs(e.value().ipv4->sin_port) != a.endpoint) continue;
        const bool same = ip ? e.value().ipv4->sin_addr.s_addr == ip->s_addr
                             : resolve_ipv4(e.value().ipv4->sin_addr, a.mac, std::chrono::milliseconds(0)) == a.mac;
        if (!same) continue;
        e.value().peer = a;
        index.try_emplace(address_key(a), i);
        return i;
    }
    return FI_ADDR_NOTAVAIL;
}

cq_obj::~cq_obj() {
    if (epoll_fd >= 0) ::close(epoll_fd);
}

void cq_obj::push(const cq_entry& entry) {
    entries.push_back(entry);
    wake.set();
}

void cq_obj::push_error(const fi_cq_err_entry& err) {
    errors.push_back(err);
    wake.set();
}

cntr_obj::~cntr_obj() {
    if (epoll_fd >= 0) ::close(epoll_fd);
}

void cntr_obj::add(std::uint64_t n) {
    value += n;
    wake.set();
}

void cntr_obj::add_error(std::uint64_t n) {
    errors += n;
    wake.set();
}

void eq_obj::write(std::uint32_t type, const void* buf, std::size_t len) {
    std::lock_guard lock(mutex);
    event e{type, {}};
    e.data.assign(static_cast<const std::byte*>(buf), static_cast<const std::byte*>(buf) + len);
    events.push_back(std::move(e));
    wake.set();
}

void eq_obj::write_error(const fi_eq_err_entry& err) {
    std::lock_guard lock(mutex);
    errors.push_back(err);
    wake.set();
}

ep_obj::~ep_obj() {
    m.reset();  // it may still look at the endpoint's attributes as it stops
    fi_freeinfo(info);
}

}  // namespace vmrdma::fabric
