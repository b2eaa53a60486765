// The provider's own address vectors, completion queues, counters and event
// queues (libfabric.so offers no helpers for them: docs/mpi.md). CQs and
// counters turn the device's loop on every call (manual progress); their
// wait fd is an epoll set of their own wake fd and the loop's.
#include <poll.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>

#include <arpa/inet.h>

#include "fabric/glue.hpp"
#include "fabric/ipv4.hpp"

namespace vmrdma::fabric {

namespace {

using clock = std::chrono::steady_clock;
constexpr auto wait_slice = std::chrono::milliseconds(10);

// The time left of a timeout in ms (negative: forever), as a deadline.
struct deadline {
    bool forever;
    clock::time_point at;
    explicit deadline(int timeout_ms)
        : forever(timeout_ms < 0), at(clock::now() + std::chrono::milliseconds(std::max(timeout_ms, 0))) {}
    bool passed() const { return !forever && clock::now() >= at; }
    std::chrono::milliseconds slice() const {
        if (forever) return wait_slice;
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(at - clock::now());
        return std::clamp(left, std::chrono::milliseconds(0), std::chrono::milliseconds(wait_slice));
    }
};

bool supported_wait(fi_wait_obj w) {
    return w == FI_WAIT_NONE || w == FI_WAIT_UNSPEC || w == FI_WAIT_FD || w == FI_WAIT_MUTEX_COND ||
           w == FI_WAIT_YIELD;
}

// An epoll set of two fds, for FI_GETWAIT.
int epoll_of(int a, int b) {
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) return -1;
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = a;
    epoll_ctl(ep, EPOLL_CTL_ADD, a, &ev);
    ev.data.fd = b;
    epoll_ctl(ep, EPOLL_CTL_ADD, b, &ev);
    return ep;
}

// ================================================================ AV

av_obj* av_of(fid* f) { return owner_of(owner_of(f, &fid_av::fid), &av_obj::fid); }

int av_close(fid* f) {
    auto* av = av_of(f);
    std::lock_guard lock(av->dom->ctx->mutex());
    if (av->refs > 0) return -FI_EBUSY;
    av->dom->refs--;
    if (av->eq) av->eq->refs--;
    delete av;
    return 0;
}

int av_bind(fid* f, fid* bfid, std::uint64_t) {
    if (bfid->fclass != FI_CLASS_EQ) return -FI_EINVAL;
    auto* av = av_of(f);
    std::lock_guard lock(av->dom->ctx->mutex());
    av->eq = owner_of(owner_of(bfid, &fid_eq::fid), &eq_obj::fid);
    av->eq->refs++;
    return 0;
}

fi_ops av_fi_ops = {
    .size = sizeof(fi_ops),
    .close = av_close,
    .bind = av_bind,
    .control = no_control,
    .ops_open = no_ops_open,
    .tostr = nullptr,
    .ops_set = nullptr,
};

fi_addr_t av_add(av_obj* av, av_entry e) {
    const auto index = static_cast<fi_addr_t>(av->table.size());
    if (e.peer) av->index.try_emplace(address_key(*e.peer), index);
    av->table.push_back(std::move(e));
    return index;
}

// One address as an application gives it, in the domain's format: the
// provider's own (it must name an endpoint), or FI_SOCKADDR_IN (an IPv4
// host address; the port is the endpoint id).
std::optional<av_entry> entry_of(const av_obj* av, const void* bytes) {
    if (av->dom->ipv4) {
        sockaddr_in in{};
        std::memcpy(&in, bytes, sizeof in);
        if (in.sin_family != AF_INET || in.sin_addr.s_addr == htonl(INADDR_ANY) ||
            in.sin_addr.s_addr == htonl(INADDR_BROADCAST))
            return std::nullopt;
        return av_entry{std::nullopt, in};
    }
    auto a = decode_address(bytes, address_size);
    if (!a || !a->endpoint) return std::nullopt;
    return av_entry{a->peer(), std::nullopt};
}

std::size_t name_size(const av_obj* av) { return av->dom->ipv4 ? sizeof(sockaddr_in) : address_size; }

// Inserts entries; bad ones get FI_ADDR_NOTAVAIL. Reports as the flags and
// the AV ask: FI_SYNC_ERR (per-address errors in `context`), or with
// FI_EVENT an FI_AV_COMPLETE event and an error entry per bad address.
int av_insert_entries(av_obj* av, std::vector<std::optional<av_entry>> entries, fi_addr_t* fi_addr,
                      std::uint64_t flags, void* context) {
    int inserted = 0;
    for (std::size_t i = 0; i < entries.size(); ++i) {
        const bool good = entries[i].has_value();
        fi_addr_t a = good ? av_add(av, std::move(*entries[i])) : FI_ADDR_NOTAVAIL;
        if (fi_addr) fi_addr[i] = a;
        if (good) ++inserted;
        if ((flags & FI_SYNC_ERR) && context) static_cast<int*>(context)[i] = good ? 0 : FI_EINVAL;
        if (!good && (av->flags & FI_EVENT) && av->eq) {
            fi_eq_err_entry err{};
            err.fid = &av->fid.fid;
            err.context = context;
            err.data = i;
            err.err = FI_EINVAL;
            av->eq->write_error(err);
        }
    }
    if (av->flags & FI_EVENT) {
        if (!av->eq) return -FI_ENOEQ;
        fi_eq_entry done{};
        done.fid = &av->fid.fid;
        done.context = context;
        done.data = static_cast<std::uint64_t>(inserted);
        av->eq->write(FI_AV_COMPLETE, &done, sizeof done);
        return 0;
    }
    return inserted;
}

int av_insert(fid_av* f, const void* addr, std::size_t count, fi_addr_t* fi_addr, std::uint64_t flags,
              void* context) {
    return guarded([&]() -> int {
        auto* av = owner_of(f, &av_obj::fid);
        if (flags & ~(FI_MORE | FI_SYNC_ERR)) return -FI_EBADFLAGS;
        if ((flags & FI_SYNC_ERR) && (av->flags & FI_EVENT)) return -FI_EBADFLAGS;
        std::lock_guard lock(av->dom->ctx->mutex());
        std::vector<std::optional<av_entry>> entries;
        for (std::size_t i = 0; i < count; ++i)
            entries.push_back(entry_of(av, static_cast<const std::byte*>(addr) + i * name_size(av)));
        return av_insert_entries(av, std::move(entries), fi_addr, flags, context);
    });
}

int av_insertsvc(fid_av* f, const char* node, const char* service, fi_addr_t* fi_addr, std::uint64_t flags,
                 void* context) {
    return guarded([&]() -> int {
        auto* av = owner_of(f, &av_obj::fid);
        std::lock_guard lock(av->dom->ctx->mutex());
        std::optional<std::uint16_t> port = service ? parse_service(service) : std::nullopt;
        std::optional<av_entry> e;
        if (av->dom->ipv4) {
            if (auto ip = parse_ipv4_host(node); ip && port) {
                sockaddr_in in{};
                in.sin_family = AF_INET;
                in.sin_addr = *ip;
                in.sin_port = htons(*port);
                e = entry_of(av, &in);
            }
        } else {
            std::optional<fabric_address> a = node ? parse_address(node) : std::nullopt;
            if (!a && node) {
                try {
                    a = fabric_address{mac_address::parse(node), std::nullopt};
                } catch (const error&) {
                }
            }
            if (a && !a->endpoint) a->endpoint = port;
            if (a && a->endpoint) e = av_entry{a->peer(), std::nullopt};
        }
        return av_insert_entries(av, {e}, fi_addr, flags, context);
    });
}

int av_insertsym(fid_av*, const char*, std::size_t, const char*, std::size_t, fi_addr_t*, std::uint64_t, void*) {
    return -FI_ENOSYS;
}

int av_remove(fid_av* f, fi_addr_t* fi_addr, std::size_t count, std::uint64_t) {
    auto* av = owner_of(f, &av_obj::fid);
    std::lock_guard lock(av->dom->ctx->mutex());
    for (std::size_t i = 0; i < count; ++i) {
        const auto a = fi_addr[i];
        if (a >= av->table.size() || !av->table[a]) return -FI_EINVAL;
        if (const auto& peer = av->table[a]->peer)
            if (auto it = av->index.find(address_key(*peer)); it != av->index.end() && it->second == a)
                av->index.erase(it);
        av->table[a].reset();
    }
    return 0;
}

int av_lookup(fid_av* f, fi_addr_t fi_addr, void* addr, std::size_t* addrlen) {
    auto* av = owner_of(f, &av_obj::fid);
    std::lock_guard lock(av->dom->ctx->mutex());
    if (fi_addr >= av->table.size() || !av->table[fi_addr]) return -FI_EINVAL;
    const auto& e = *av->table[fi_addr];
    std::byte bytes[std::max(address_size, sizeof(sockaddr_in))];
    if (e.ipv4)
        std::memcpy(bytes, &*e.ipv4, sizeof *e.ipv4);
    else
        encode_address({e.peer->mac, e.peer->endpoint}, bytes);
    std::memcpy(addr, bytes, std::min(*addrlen, name_size(av)));
    *addrlen = name_size(av);
    return 0;
}

const char* av_straddr(fid_av* f, const void* addr, char* buf, std::size_t* len) {
    auto* av = owner_of(f, &av_obj::fid);
    std::string s;
    if (av->dom->ipv4) {
        sockaddr_in in{};
        std::memcpy(&in, addr, sizeof in);
        char ip[INET_ADDRSTRLEN] = "?";
        inet_ntop(AF_INET, &in.sin_addr, ip, sizeof ip);
        s = std::string(ip) + ":" + std::to_string(ntohs(in.sin_port));
    } else {
        auto a = decode_address(addr, address_size);
        s = a ? format_address(*a) : "fi_vmrdma://(invalid)";
    }
    if (*len > 0) {
        const std::size_t n = std::min(*len - 1, s.size());
        std::memcpy(buf, s.data(), n);
        buf[n] = '\0';
    }
    *len = s.size() + 1;
    return buf;
}

int no_av_set(fid_av*, fi_av_set_attr*, fid_av_set**, void*) { return -FI_ENOSYS; }

fi_ops_av av_ops = {
    .size = sizeof(fi_ops_av),
    .insert = av_insert,
    .insertsvc = av_insertsvc,
    .insertsym = av_insertsym,
    .remove = av_remove,
    .lookup = av_lookup,
    .straddr = av_straddr,
    .av_set = no_av_set,
};

// ================================================================ CQ

cq_obj* cq_of(fid_cq* f) { return owner_of(f, &cq_obj::fid); }

std::size_t entry_size(fi_cq_format f) {
    switch (f) {
    case FI_CQ_FORMAT_CONTEXT: return sizeof(fi_cq_entry);
    case FI_CQ_FORMAT_MSG: return sizeof(fi_cq_msg_entry);
    case FI_CQ_FORMAT_DATA: return sizeof(fi_cq_data_entry);
    case FI_CQ_FORMAT_TAGGED: return sizeof(fi_cq_tagged_entry);
    default: return 0;
    }
}

// CQs and counters belong to a domain and wait the same way: these serve both.
template <class Queue>
int close_domain_queue(Queue* q) {
    {
        std::lock_guard lock(q->dom->ctx->mutex());
        if (q->refs > 0) return -FI_EBUSY;
        q->dom->refs--;
    }
    delete q;
    return 0;
}

// FI_GETWAIT hands out one epoll fd of the queue's wake fd and the loop's wait fd.
template <class Queue>
int domain_queue_control(Queue* q, int command, void* arg) {
    std::lock_guard lock(q->dom->ctx->mutex());
    switch (command) {
    case FI_GETWAIT:
        if (q->wait_obj == FI_WAIT_NONE) return -FI_ENODATA;
        if (q->epoll_fd < 0) q->epoll_fd = epoll_of(q->wake.fd(), q->dom->ctx->loop().wait_fd());
        if (q->epoll_fd < 0) return -FI_EIO;
        q->wake.expose();
        *static_cast<int*>(arg) = q->epoll_fd;
        return 0;
    case FI_GETWAITOBJ: *static_cast<fi_wait_obj*>(arg) = FI_WAIT_FD; return 0;
    default: return -FI_ENOSYS;
    }
}

int cq_close(fid* f) { return close_domain_queue(cq_of(owner_of(f, &fid_cq::fid))); }

int cq_control(fid* f, int command, void* arg) {
    return domain_queue_control(cq_of(owner_of(f, &fid_cq::fid)), command, arg);
}

fi_ops cq_fi_ops = {
    .size = sizeof(fi_ops),
    .close = cq_close,
    .bind = no_bind,
    .control = cq_control,
    .ops_open = no_ops_open,
    .tostr = nullptr,
    .ops_set = nullptr,
};

// With the lock held: takes up to count entries.
ssize_t cq_take(cq_obj* cq, void* buf, std::size_t count, fi_addr_t* src) {
    if (!cq->errors.empty()) return -FI_EAVAIL;
    if (cq->entries.empty()) {
        if (!cq->signaled) cq->wake.clear();
        return -FI_EAGAIN;
    }
    const std::size_t size = entry_size(cq->format);
    std::size_t n = 0;
    for (; n < count && !cq->entries.empty(); ++n) {
        const auto& e = cq->entries.front();
        std::memcpy(static_cast<std::byte*>(buf) + n * size, &e.e, size);
        if (src) src[n] = e.src;
        cq->entries.pop_front();
    }
    if (cq->entries.empty() && cq->errors.empty() && !cq->signaled) cq->wake.clear();
    return static_cast<ssize_t>(n);
}

ssize_t cq_readfrom(fid_cq* f, void* buf, std::size_t count, fi_addr_t* src) {
    auto* cq = cq_of(f);
    std::lock_guard lock(cq->dom->ctx->mutex());
    if (cq->entries.empty()) cq->dom->ctx->progress();
    return cq_take(cq, buf, count, src);
}

ssize_t cq_read(fid_cq* f, void* buf, std::size_t count) { return cq_readfrom(f, buf, count, nullptr); }

ssize_t cq_readerr(fid_cq* f, fi_cq_err_entry* buf, std::uint64_t) {
    auto* cq = cq_of(f);
    std::lock_guard lock(cq->dom->ctx->mutex());
    if (cq->errors.empty()) return -FI_EAGAIN;
    // err_data is the application's buffer since API 1.5; the provider has none.
    void* err_data = buf->err_data;
    std::size_t err_data_size = buf->err_data_size;
    *buf = cq->errors.front();
    buf->err_data = err_data;
    buf->err_data_size = 0;
    (void)err_data_size;
    cq->errors.pop_front();
    if (cq->entries.empty() && cq->errors.empty() && !cq->signaled) cq->wake.clear();
    return 1;
}

ssize_t cq_sreadfrom(fid_cq* f, void* buf, std::size_t count, fi_addr_t* src, const void*, int timeout) {
    auto* cq = cq_of(f);
    if (cq->wait_obj == FI_WAIT_NONE) return -FI_ENOSYS;
    deadline until(timeout);
    std::unique_lock lock(cq->dom->ctx->mutex());
    for (;;) {
        cq->dom->ctx->progress();
        ssize_t n = cq_take(cq, buf, count, src);
        if (n != -FI_EAGAIN) return n;
        if (cq->signaled) {
            cq->signaled = false;
            cq->wake.clear();
            return -FI_EAGAIN;
        }
        if (until.passed()) return -FI_EAGAIN;
        cq->wake.arm();
        cq->dom->ctx->progress_and_wait(lock, cq->wake.fd(), until.slice());
        cq->wake.disarm();
    }
}

ssize_t cq_sread(fid_cq* f, void* buf, std::size_t count, const void* cond, int timeout) {
    return cq_sreadfrom(f, buf, count, nullptr, cond, timeout);
}

int cq_signal(fid_cq* f) {
    auto* cq = cq_of(f);
    std::lock_guard lock(cq->dom->ctx->mutex());
    cq->signaled = true;
    cq->wake.set();
    return 0;
}

// A CQ's or EQ's strerror: prov_errno is an FI_E* value; into buf when given.
const char* provider_strerror(int prov_errno, char* buf, std::size_t len) {
    const char* s = fi_strerror(prov_errno);
    if (buf && len) {
        std::snprintf(buf, len, "%s", s);
        return buf;
    }
    return s;
}

const char* cq_strerror(fid_cq*, int prov_errno, const void*, char* buf, std::size_t len) {
    return provider_strerror(prov_errno, buf, len);
}

fi_ops_cq cq_ops = {
    .size = sizeof(fi_ops_cq),
    .read = cq_read,
    .readfrom = cq_readfrom,
    .readerr = cq_readerr,
    .sread = cq_sread,
    .sreadfrom = cq_sreadfrom,
    .signal = cq_signal,
    .strerror = cq_strerror,
};

// ================================================================ counters

cntr_obj* cntr_of(fid_cntr* f) { return owner_of(f, &cntr_obj::fid); }

int cntr_close(fid* f) { return close_domain_queue(cntr_of(owner_of(f, &fid_cntr::fid))); }

int cntr_control(fid* f, int command, void* arg) {
    return domain_queue_control(cntr_of(owner_of(f, &fid_cntr::fid)), command, arg);
}

fi_ops cntr_fi_ops = {
    .size = sizeof(fi_ops),
    .close = cntr_close,
    .bind = no_bind,
    .control = cntr_control,
    .ops_open = no_ops_open,
    .tostr = nullptr,
    .ops_set = nullptr,
};

std::uint64_t cntr_read(fid_cntr* f) {
    auto* c = cntr_of(f);
    std::lock_guard lock(c->dom->ctx->mutex());
    c->dom->ctx->progress();
    return c->value;
}

std::uint64_t cntr_readerr(fid_cntr* f) {
    auto* c = cntr_of(f);
    std::lock_guard lock(c->dom->ctx->mutex());
    c->dom->ctx->progress();
    return c->errors;
}

int cntr_add(fid_cntr* f, std::uint64_t v) {
    auto* c = cntr_of(f);
    std::lock_guard lock(c->dom->ctx->mutex());
    c->add(v);
    return 0;
}

int cntr_set(fid_cntr* f, std::uint64_t v) {
    auto* c = cntr_of(f);
    std::lock_guard lock(c->dom->ctx->mutex());
    c->value = v;
    c->wake.set();
    return 0;
}

int cntr_adderr(fid_cntr* f, std::uint64_t v) {
    auto* c = cntr_of(f);
    std::lock_guard lock(c->dom->ctx->mutex());
    c->add_error(v);
    return 0;
}

int cntr_seterr(fid_cntr* f, std::uint64_t v) {
    auto* c = cntr_of(f);
    std::lock_guard lock(c->dom->ctx->mutex());
    c->errors = v;
    c->wake.set();
    return 0;
}

int cntr_wait(fid_cntr* f, std::uint64_t threshold, int timeout) {
    auto* c = cntr_of(f);
    if (c->wait_obj == FI_WAIT_NONE) return -FI_ENOSYS;
    deadline until(timeout);
    std::unique_lock lock(c->dom->ctx->mutex());
    const std::uint64_t errors = c->errors;
    for (;;) {
        c->wake.clear();
        c->dom->ctx->progress();
        if (c->value >= threshold) return 0;
        if (c->errors != errors) return -FI_EAVAIL;
        if (until.passed()) return -FI_ETIMEDOUT;
        c->wake.arm();
        c->dom->ctx->progress_and_wait(lock, c->wake.fd(), until.slice());
        c->wake.disarm();
    }
}

fi_ops_cntr cntr_ops = {
    .size = sizeof(fi_ops_cntr),
    .read = cntr_read,
    .readerr = cntr_readerr,
    .add = cntr_add,
    .set = cntr_set,
    .wait = cntr_wait,
    .adderr = cntr_adderr,
    .seterr = cntr_seterr,
};

// ================================================================ EQ

eq_obj* eq_of(fid_eq* f) { return owner_of(f, &eq_obj::fid); }

int eq_close(fid* f) {
    auto* eq = eq_of(owner_of(f, &fid_eq::fid));
    if (eq->refs > 0) return -FI_EBUSY;
    eq->fabric->refs--;
    delete eq;
    return 0;
}

int eq_control(fid* f, int command, void* arg) {
    auto* eq = eq_of(owner_of(f, &fid_eq::fid));
    switch (command) {
    case FI_GETWAIT:
        if (eq->wait_obj == FI_WAIT_NONE) return -FI_ENODATA;
        *static_cast<int*>(arg) = eq->wake.fd();
        return 0;
    case FI_GETWAITOBJ: *static_cast<fi_wait_obj*>(arg) = FI_WAIT_FD; return 0;
    default: return -FI_ENOSYS;
    }
}

fi_ops eq_fi_ops = {
    .size = sizeof(fi_ops),
    .close = eq_close,
    .bind = no_bind,
    .control = eq_control,
    .ops_open = no_ops_open,
    .tostr = nullptr,
    .ops_set = nullptr,
};

ssize_t eq_read(fid_eq* f, std::uint32_t* event, void* buf, std::size_t len, std::uint64_t flags) {
    auto* eq = eq_of(f);
    std::lock_guard lock(eq->mutex);
    if (!eq->errors.empty()) return -FI_EAVAIL;
    if (eq->events.empty()) return -FI_EAGAIN;
    auto& e = eq->events.front();
    if (len < e.data.size()) return -FI_ETOOSMALL;
    if (event) *event = e.type;
    if (!e.data.empty()) std::memcpy(buf, e.data.data(), e.data.size());
    const auto n = static_cast<ssize_t>(e.data.size());
    if (!(flags & FI_PEEK)) eq->events.pop_front();
    if (eq->events.empty() && eq->errors.empty()) eq->wake.clear();
    return n;
}

ssize_t eq_readerr(fid_eq* f, fi_eq_err_entry* buf, std::uint64_t flags) {
    auto* eq = eq_of(f);
    std::lock_guard lock(eq->mutex);
    if (eq->errors.empty()) return -FI_EAGAIN;
    void* err_data = buf->err_data;
    *buf = eq->errors.front();
    buf->err_data = err_data;
    buf->err_data_size = 0;
    if (!(flags & FI_PEEK)) eq->errors.pop_front();
    if (eq->events.empty() && eq->errors.empty()) eq->wake.clear();
    return sizeof(*buf);
}

ssize_t eq_write(fid_eq* f, std::uint32_t event, const void* buf, std::size_t len, std::uint64_t flags) {
    auto* eq = eq_of(f);
    {
        std::lock_guard lock(eq->mutex);
        if (eq->size && eq->events.size() >= eq->size) return -FI_EAGAIN;
    }
    if (flags & FI_EVENT) return -FI_EBADFLAGS;
    eq->write(event, buf, len);
    return static_cast<ssize_t>(len);
}

ssize_t eq_sread(fid_eq* f, std::uint32_t* event, void* buf, std::size_t len, int timeout, std::uint64_t flags) {
    auto* eq = eq_of(f);
    if (eq->wait_obj == FI_WAIT_NONE) return -FI_ENOSYS;
    deadline until(timeout);
    for (;;) {
        ssize_t n = eq_read(f, event, buf, len, flags);
        if (n != -FI_EAGAIN || until.passed()) return n;
        pollfd p{eq->wake.fd(), POLLIN, 0};
        ::poll(&p, 1, static_cast<int>(until.slice().count()));
    }
}

const char* eq_strerror(fid_eq*, int prov_errno, const void*, char* buf, std::size_t len) {
    return provider_strerror(prov_errno, buf, len);
}

fi_ops_eq eq_ops = {
    .size = sizeof(fi_ops_eq),
    .read = eq_read,
    .readerr = eq_readerr,
    .write = eq_write,
    .sread = eq_sread,
    .strerror = eq_strerror,
};

}  // namespace

int av_open(fid_domain* domain, fi_av_attr* attr, fid_av** out, void* context) {
    return guarded([&]() -> int {
        auto* d = owner_of(domain, &domain_obj::fid);
        if (attr && attr->name) return -FI_ENOSYS;  // shared (named) AVs
        if (attr && attr->rx_ctx_bits) return -FI_EINVAL;
        if (attr && (attr->flags & ~(FI_EVENT | FI_SYMMETRIC))) return -FI_EBADFLAGS;
        auto av = std::make_unique<av_obj>();
        av->dom = d;
        av->type = attr && attr->type != FI_AV_UNSPEC ? attr->type : FI_AV_MAP;
        if (av->type != FI_AV_MAP && av->type != FI_AV_TABLE) return -FI_EINVAL;
        av->flags = attr ? attr->flags : 0;
        if (attr && attr->count) av->table.reserve(attr->count);
        av->fid.fid.fclass = FI_CLASS_AV;
        av->fid.fid.context = context;
        av->fid.fid.ops = &av_fi_ops;
        av->fid.ops = &av_ops;
        std::lock_guard lock(d->ctx->mutex());
        d->refs++;
        *out = &av.release()->fid;
        return 0;
    });
}

int cq_open(fid_domain* domain, fi_cq_attr* attr, fid_cq** out, void* context) {
    return guarded([&]() -> int {
        auto* d = owner_of(domain, &domain_obj::fid);
        auto cq = std::make_unique<cq_obj>();
        cq->dom = d;
        cq->format = attr && attr->format != FI_CQ_FORMAT_UNSPEC ? attr->format : FI_CQ_FORMAT_CONTEXT;
        if (!entry_size(cq->format)) return -FI_ENOSYS;
        cq->wait_obj = attr ? attr->wait_obj : FI_WAIT_NONE;
        if (!supported_wait(cq->wait_obj)) return -FI_ENOSYS;
        if (attr && attr->wait_cond != FI_CQ_COND_NONE && attr->wait_cond != FI_CQ_COND_THRESHOLD)
            return -FI_ENOSYS;
        cq->size = attr ? attr->size : 0;
        cq->fid.fid.fclass = FI_CLASS_CQ;
        cq->fid.fid.context = context;
        cq->fid.fid.ops = &cq_fi_ops;
        cq->fid.ops = &cq_ops;
        std::lock_guard lock(d->ctx->mutex());
        d->refs++;
        *out = &cq.release()->fid;
        return 0;
    });
}

int cntr_open(fid_domain* domain, fi_cntr_attr* attr, fid_cntr** out, void* context) {
    return guarded([&]() -> int {
        auto* d = owner_of(domain, &domain_obj::fid);
        if (attr && attr->events != FI_CNTR_EVENTS_COMP) return -FI_ENOSYS;
        auto c = std::make_unique<cntr_obj>();
        c->dom = d;
        c->wait_obj = attr ? attr->wait_obj : FI_WAIT_NONE;
        if (!supported_wait(c->wait_obj)) return -FI_ENOSYS;
        c->fid.fid.fclass = FI_CLASS_CNTR;
        c->fid.fid.context = context;
        c->fid.fid.ops = &cntr_fi_ops;
        c->fid.ops = &cntr_ops;
        std::lock_guard lock(d->ctx->mutex());
        d->refs++;
        *out = &c.release()->fid;
        return 0;
    });
}

int eq_open(fid_fabric* fabric, fi_eq_attr* attr, fid_eq** out, void* context) {
    return guarded([&]() -> int {
        auto eq = std::make_unique<eq_obj>();
        eq->fabric = owner_of(fabric, &fabric_obj::fid);
        eq->wait_obj = attr ? attr->wait_obj : FI_WAIT_NONE;
        if (!supported_wait(eq->wait_obj)) return -FI_ENOSYS;
        eq->size = attr ? attr->size : 0;
        eq->fid.fid.fclass = FI_CLASS_EQ;
        eq->fid.fid.context = context;
        eq->fid.fid.ops = &eq_fi_ops;
        eq->fid.ops = &eq_ops;
        eq->fabric->refs++;
        *out = &eq.release()->fid;
        return 0;
    });
}

int trywait_one(fid* f) {
    switch (f->fclass) {
    case FI_CLASS_CQ: {
        auto* cq = cq_of(owner_of(f, &fid_cq::fid));
        std::lock_guard lock(cq->dom->ctx->mutex());
        if (!cq->entries.empty() || !cq->errors.empty()) return -FI_EAGAIN;
        cq->dom->ctx->progress();
        if (!cq->entries.empty() || !cq->errors.empty()) return -FI_EAGAIN;
        cq->dom->ctx->prepare_to_wait();
        cq->wake.clear();
        return 0;
    }
    case FI_CLASS_CNTR: {
        auto* c = cntr_of(owner_of(f, &fid_cntr::fid));
        std::lock_guard lock(c->dom->ctx->mutex());
        c->dom->ctx->progress();
        c->dom->ctx->prepare_to_wait();
        c->wake.clear();
        return 0;
    }
    case FI_CLASS_EQ: {
        auto* eq = eq_of(owner_of(f, &fid_eq::fid));
        std::lock_guard lock(eq->mutex);
        return eq->events.empty() && eq->errors.empty() ? 0 : -FI_EAGAIN;
    }
    default: return -FI_EINVAL;
    }
}

}  // namespace vmrdma::fabric
