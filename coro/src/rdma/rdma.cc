// The public API: thin wrappers that describe each call as one ring request
// (proto/ring.h) and hand it to the device's transport (transport.hpp).
#include "vmrdma/rdma.hpp"

#include <cstdio>
#include <cstring>
#include <string.h>

#include "bounce_pool.hpp"
#include "device_core.hpp"
#include "vmrdma/timeout.hpp"
#include "engine_transport.hpp"
#include "ring_transport.hpp"
#include "unix_link.hpp"
#include "xen_link.hpp"

namespace vmrdma {

using detail::device_core;

mac_address mac_address::parse(std::string_view text) {
    mac_address m;
    unsigned b[6];
    char tail;
    std::string s(text);
    if (std::sscanf(s.c_str(), "%2x:%2x:%2x:%2x:%2x:%2x%c", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5],
                    &tail) != 6 ||
        s.size() != 17)
        throw error(errc::invalid_argument, "'" + s + "' is not a MAC address like 02:00:00:00:00:01");
    for (int i = 0; i < 6; ++i) m.bytes[i] = static_cast<std::uint8_t>(b[i]);
    return m;
}

std::string mac_address::to_string() const {
    char buf[18];
    std::snprintf(buf, sizeof buf, "%02x:%02x:%02x:%02x:%02x:%02x", bytes[0], bytes[1], bytes[2],
                  bytes[3], bytes[4], bytes[5]);
    return buf;
}

std::array<std::byte, remote_region::wire_size> remote_region::to_bytes() const {
    std::array<std::byte, wire_size> out{};
    for (int i = 0; i < 8; ++i) out[i] = static_cast<std::byte>(rkey >> (8 * i));
    for (int i = 0; i < 8; ++i) out[8 + i] = static_cast<std::byte>(length >> (8 * i));
    return out;
}

remote_region remote_region::from_bytes(std::span<const std::byte> bytes) {
    if (bytes.size() < wire_size)
        throw error(errc::invalid_argument, "a region descriptor is 16 bytes");
    remote_region r;
    for (int i = 0; i < 8; ++i) r.rkey |= std::uint64_t(std::to_integer<std::uint8_t>(bytes[i])) << (8 * i);
    for (int i = 0; i < 8; ++i)
        r.length |= std::uint64_t(std::to_integer<std::uint8_t>(bytes[8 + i])) << (8 * i);
    return r;
}

namespace {
std::uint32_t checked_length(std::uint32_t length, std::uint64_t offset, std::uint64_t size,
                             const char* what) {
    if (offset > size || length > size - offset)
        throw error(errc::invalid_argument, std::string(what) + ": range is outside the local region");
    return length;
}

// Atomics work on whole 64-bit words; the engine would refuse the post with
// a bare EINVAL, so the reason is given here, where the call is known.
void require_word_aligned(const char* what, std::uint64_t offset) {
    if (offset % 8 != 0)
        throw error(errc::invalid_argument, std::string(what) + ": remote offset " + std::to_string(offset) +
                                                " is not 8-byte aligned (atomics act on 64-bit words)");
}

// Every operation is one request in proto/ring.h's form, whatever the
// transport (transport.hpp).
vr_ring_req request(std::uint8_t opcode) {
    vr_ring_req r{};
    r.opcode = opcode;
    return r;
}

// The peer's address as completions carry it (vr_peer_word in engine.h).
peer_address peer_of_word(std::uint64_t word) {
    peer_address p;
    vr_peer_of_word(word, p.mac.bytes.data(), &p.endpoint);
    return p;
}

vr_ring_req rdma_request(std::uint8_t opcode, std::uint32_t conn, std::uint64_t lkey, std::uint64_t loff,
                         std::uint64_t rkey, std::uint64_t roff, std::uint32_t len) {
    auto r = request(opcode);
    r.conn = conn;
    r.lkey = lkey;
    r.loff = loff;
    r.rkey = rkey;
    r.roff = roff;
    r.len = len;
    return r;
}
}  // namespace

// --- device ---

std::unique_ptr<device> device::open(event_loop& loop, std::string_view uri, device_options options) {
    // unix: and xen: both reach their backend through a ring_link.
    auto open_ring = [&loop, &options](std::unique_ptr<detail::ring_link> link) {
        return std::unique_ptr<device>(new device(std::make_unique<device_core>(loop, [&](auto& sink) {
            return std::make_unique<detail::ring_transport>(loop, sink, std::move(link), options.receive_in_turns);
        })));
    };
    constexpr std::string_view eth = "eth:";
    if (uri.substr(0, eth.size()) == eth) {
        return std::unique_ptr<device>(new device(std::make_unique<device_core>(loop, [&](auto& sink) {
            return std::make_unique<detail::engine_transport>(loop, sink, uri.substr(eth.size()), options);
        })));
    }
    constexpr std::string_view unix_prefix = "unix:";
    if (uri.substr(0, unix_prefix.size()) == unix_prefix) {
        return open_ring(std::make_unique<detail::unix_link>(uri.substr(unix_prefix.size())));
    }
    constexpr std::string_view xen_prefix = "xen:";
    if (uri.substr(0, xen_prefix.size()) == xen_prefix) {
        return open_ring(std::make_unique<detail::xen_link>(uri.substr(xen_prefix.size())));
    }
    throw error(errc::invalid_argument, "unknown transport URI '" + std::string(uri) +
                                            "' (expected eth:IFNAME, unix:PATH or xen:DEVICE such as xen:/dev/vmrdma)");
}

device::device(std::unique_ptr<device_core> core) : core_(std::move(core)) {}
device::~device() = default;

mac_address device::mac() const noexcept { return core_->transport().mac(); }
std::uint32_t device::mtu() const noexcept { return core_->transport().mtu(); }

endpoint device::open_endpoint(std::uint16_t id, endpoint_options options) {
    core_->transport().open_endpoint(id, options);
    return endpoint(core_.get(), id);
}

counters device::stats() const { return core_->transport().device_stats(); }

// --- endpoint ---

endpoint::endpoint(endpoint&& o) noexcept : core_(std::exchange(o.core_, nullptr)), id_(o.id_) {}

endpoint& endpoint::operator=(endpoint&& o) noexcept {
    if (this != &o) {
        close();
        core_ = std::exchange(o.core_, nullptr);
        id_ = o.id_;
    }
    return *this;
}

endpoint::~endpoint() { close(); }

void endpoint::close() noexcept {
    if (!core_) return;
    auto* core = std::exchange(core_, nullptr);
    core->drop_bounce(id_);  // its memory goes once no operation uses it
    core->transport().close_endpoint(id_);
}

void endpoint::set_weight(std::uint32_t weight) {
    if (!core_) throw error(errc::invalid_argument, "endpoint is closed");
    core_->transport().set_weight(id_, weight);
}

region endpoint::register_memory(std::span<std::byte> memory, access rights) {
    if (!core_) throw error(errc::invalid_argument, "endpoint is closed");
    // The rights as given: without local_write the region is never written
    // by this side (no read lands in it, no receive), as its owner asked.
    auto key = core_->transport().register_memory(id_, memory, static_cast<std::uint32_t>(rights));
    return region(core_, key, memory);
}

// One CONNECT or ACCEPT: private data (ours out, the peer's back) travels
// through a slot of the endpoint's registered bounce memory.
task<connection> endpoint::handshake(vr_ring_req r, std::span<const std::byte> private_data,
                                     std::stop_token stop) {
    if (private_data.size() > connection::private_data_max)
        throw error(errc::invalid_argument, "connect: private data takes at most " +
                                                std::to_string(connection::private_data_max) + " bytes");
    auto* core = core_;
    const std::uint16_t ep_id = id_;
    auto pool = core->bounce(ep_id);
    detail::bounce_slot slot(pool, co_await pool->acquire());
    auto memory = pool->memory(slot.index());
    if (!private_data.empty()) std::memcpy(memory.data(), private_data.data(), private_data.size());
    r.ep = ep_id;
    r.lkey = pool->key();
    r.loff = pool->offset(slot.index());
    r.len = static_cast<std::uint32_t>(private_data.size());
    r.operand = connection::private_data_max;
    auto wc = co_await core->perform(r, std::move(stop));
    connection c(core, wc.conn, ep_id);
    c.peer_ = peer_of_word(wc.value);
    const auto n = std::min<std::size_t>(wc.bytes, connection::private_data_max);
    c.peer_data_.assign(memory.begin(), memory.begin() + static_cast<std::ptrdiff_t>(n));
    co_return c;
}

task<connection> endpoint::connect_once(peer_address peer, std::span<const std::byte> private_data,
                                        std::stop_token stop) {
    auto r = request(VR_RING_CONNECT);
    r.peer_ep = peer.endpoint;
    std::memcpy(r.peer_mac, peer.mac.bytes.data(), 6);
    return handshake(r, private_data, std::move(stop));
}

task<connection> endpoint::connect(peer_address peer, connect_options options, std::stop_token stop) {
    if (!core_) throw error(errc::invalid_argument, "endpoint is closed");
    // Copied as the task starts: retries below outlive nothing of the caller's.
    std::vector<std::byte> data(options.private_data.begin(), options.private_data.end());
    if (options.wait_for_listener <= std::chrono::nanoseconds::zero())
        co_return co_await connect_once(peer, data, std::move(stop));
    event_loop& loop = core_->loop();
    const auto deadline = options.wait_for_listener;
    const auto until = std::chrono::steady_clock::now() + deadline;
    for (;;) {
        auto left = std::chrono::duration_cast<std::chrono::nanoseconds>(until - std::chrono::steady_clock::now());
        bool retry = false;
        if (left > std::chrono::nanoseconds::zero()) {
            try {
                // One attempt may itself take its retries' time (no answer
                // at all): it is stopped at the deadline.
                co_return co_await with_timeout(
                    loop, left, [&](std::stop_token st) { return connect_once(peer, data, st); }, stop);
            } catch (const error& e) {
                if (e.code() != errc::no_such_endpoint && e.code() != errc::timeout) throw;
                retry = true;
            }
        }
        left = std::chrono::duration_cast<std::chrono::nanoseconds>(until - std::chrono::steady_clock::now());
        if (!retry || left <= std::chrono::nanoseconds::zero()) {
            char what[96];
            std::snprintf(what, sizeof what, "connect: no listener at %s endpoint %u within %.3g s",
                          peer.mac.to_string().c_str(), peer.endpoint,
                          std::chrono::duration<double>(deadline).count());
            throw error(errc::timeout, what);
        }
        co_await loop.sleep_for(std::min<std::chrono::nanoseconds>(left, std::chrono::milliseconds(100)), stop);
    }
}

task<connection> endpoint::connect(mac_address peer, std::uint16_t peer_endpoint, std::stop_token stop) {
    return connect(peer_address{peer, peer_endpoint}, connect_options{}, std::move(stop));
}

task<connection> endpoint::connect(mac_address peer, std::uint16_t peer_endpoint,
                                   std::chrono::nanoseconds deadline, std::stop_token stop) {
    connect_options options;
    options.wait_for_listener = deadline;
    return connect(peer_address{peer, peer_endpoint}, options, std::move(stop));
}

task<connection> endpoint::accept(std::stop_token stop) {
    if (!core_) throw error(errc::invalid_argument, "endpoint is closed");
    return handshake(request(VR_RING_ACCEPT), {}, std::move(stop));
}

// ACCEPT_DATA, NAME and RESOLVE name their bytes in a bounce slot.
task<vr_completion> endpoint::with_bytes(std::uint8_t opcode, std::vector<std::byte> bytes,
                                         std::stop_token stop) {
    auto* core = core_;
    const std::uint16_t ep_id = id_;
    auto pool = core->bounce(ep_id);
    detail::bounce_slot slot(pool, co_await pool->acquire());
    if (!bytes.empty()) std::memcpy(pool->memory(slot.index()).data(), bytes.data(), bytes.size());
    auto r = request(opcode);
    r.ep = ep_id;
    r.lkey = pool->key();
    r.loff = pool->offset(slot.index());
    r.len = static_cast<std::uint32_t>(bytes.size());
    co_return co_await core->perform(r, std::move(stop));
}

task<void> endpoint::set_accept_data(std::span<const std::byte> data) {
    if (!core_) throw error(errc::invalid_argument, "endpoint is closed");
    if (data.size() > connection::private_data_max)
        throw error(errc::invalid_argument, "set_accept_data: at most " +
                                                std::to_string(connection::private_data_max) + " bytes");
    co_await with_bytes(VR_RING_ACCEPT_DATA, std::vector<std::byte>(data.begin(), data.end()), {});
}

task<void> endpoint::listen() {
    if (!core_) throw error(errc::invalid_argument, "endpoint is closed");
    auto r = request(VR_RING_LISTEN);
    r.ep = id_;
    co_await core_->perform(r, {});
}

task<protection_domain> endpoint::allocate_protection_domain() {
    if (!core_) throw error(errc::invalid_argument, "endpoint is closed");
    auto r = request(VR_RING_PD_ALLOC);
    r.ep = id_;
    auto wc = co_await core_->perform(r, {});
    co_return protection_domain{static_cast<std::uint32_t>(wc.value)};
}

task<void> endpoint::free_protection_domain(protection_domain pd) {
    if (!core_) throw error(errc::invalid_argument, "endpoint is closed");
    auto r = request(VR_RING_PD_FREE);
    r.ep = id_;
    r.operand = pd.id;
    co_await core_->perform(r, {});
}

task<void> endpoint::bind(const connection& conn, protection_domain pd) {
    if (!core_) throw error(errc::invalid_argument, "endpoint is closed");
    if (conn.core_ != core_ || conn.ep_ != id_)
        throw error(errc::invalid_argument, "bind: not a connection of this endpoint");
    auto r = request(VR_RING_PD_BIND);
    r.ep = id_;
    r.conn = conn.id_;
    r.operand = pd.id;
    co_await core_->perform(r, {});
}

task<void> endpoint::bind(const region& mr, protection_domain pd) {
    if (!core_) throw error(errc::invalid_argument, "endpoint is closed");
    if (mr.core_ != core_ || !mr.key_) throw error(errc::invalid_argument, "bind: not a region of this device");
    auto r = request(VR_RING_PD_BIND);
    r.ep = id_;
    r.lkey = mr.key_;
    r.operand = pd.id;
    co_await core_->perform(r, {});
}

task<void> endpoint::set_auth_key(const std::optional<device_options::auth_key_bytes>& key) {
    if (!core_) throw error(errc::invalid_argument, "endpoint is closed");
    auto* core = core_;
    auto pool = core->bounce(id_);
    detail::bounce_slot slot(pool, co_await pool->acquire());
    auto bytes = pool->memory(slot.index());
    if (key) std::memcpy(bytes.data(), key->data(), key->size());
    auto r = request(VR_RING_AUTH_KEY);
    r.ep = id_;
    r.lkey = pool->key();
    r.loff = pool->offset(slot.index());
    r.len = key ? static_cast<std::uint32_t>(key->size()) : 0;
    try {
        co_await core->perform(r, {});
    } catch (...) {
        ::explicit_bzero(bytes.data(), key ? key->size() : 0);
        throw;
    }
    ::explicit_bzero(bytes.data(), key ? key->size() : 0);  // no copy of a key left behind
}

namespace {
std::vector<std::byte> name_bytes(std::string_view name) {
    auto* p = reinterpret_cast<const std::byte*>(name.data());
    return {p, p + name.size()};
}
}  // namespace

task<void> endpoint::announce(std::string_view name) {
    if (!core_) throw error(errc::invalid_argument, "endpoint is closed");
    if (name.size() > name_max)
        throw error(errc::invalid_argument, "announce: a name has at most " + std::to_string(name_max) + " bytes");
    const std::string copy(name);
    try {
        co_await with_bytes(VR_RING_NAME, name_bytes(copy), {});
    } catch (const error& e) {
        if (e.code() == errc::name_in_use)
            throw error(errc::name_in_use, "announce '" + copy + "'");
        throw;
    }
}

task<peer_address> endpoint::resolve(std::string_view name, std::chrono::nanoseconds deadline,
                                     std::stop_token stop) {
    if (!core_) throw error(errc::invalid_argument, "endpoint is closed");
    if (name.empty() || name.size() > name_max)
        throw error(errc::invalid_argument, "resolve: a name has 1.." + std::to_string(name_max) + " bytes");
    const std::string copy(name);
    event_loop& loop = core_->loop();
    const auto until = std::chrono::steady_clock::now() + deadline;
    for (;;) {
        auto left = std::chrono::duration_cast<std::chrono::nanoseconds>(until - std::chrono::steady_clock::now());
        if (left > std::chrono::nanoseconds::zero()) {
            try {
                // One question is asked a few times over about 1.6 s; the
                // deadline stops it early, or asks again after it.
                auto wc = co_await with_timeout(
                    loop, left,
                    [&](std::stop_token st) { return with_bytes(VR_RING_RESOLVE, name_bytes(copy), st); }, stop);
                peer_address found = peer_of_word(wc.value);  // the MAC; the endpoint is in tag
                found.endpoint = static_cast<std::uint16_t>(wc.tag);
                co_return found;
            } catch (const error& e) {
                // Nobody answered yet, or the engine is asking too many
                // questions at once: ask again while there is time.
                if (e.code() != errc::not_found && e.code() != errc::timeout &&
                    e.code() != errc::resources_exhausted)
                    throw;
            }
        }
        left = std::chrono::duration_cast<std::chrono::nanoseconds>(until - std::chrono::steady_clock::now());
        if (left <= std::chrono::nanoseconds::zero()) {
            char what[160];
            std::snprintf(what, sizeof what, "resolve '%s' (asked for %.3g s)", copy.c_str(),
                          std::chrono::duration<double>(deadline).count());
            throw error(errc::not_found, what);
        }
        co_await loop.sleep_for(std::min<std::chrono::nanoseconds>(left, std::chrono::milliseconds(100)), stop);
    }
}

task<recv_result> endpoint::recv(const region& into, std::uint64_t offset, std::uint32_t length,
                                 std::uint64_t tag, std::uint64_t mask, std::stop_token stop) {
    if (!core_) throw error(errc::invalid_argument, "endpoint is closed");
    checked_length(length, offset, into.memory().size(), "recv");
    auto* core = core_;
    auto r = rdma_request(VR_RING_RECV, 0, into.key(), offset, 0, 0, length);
    r.ep = id_;
    r.tag = tag;
    r.mask = mask;
    auto wc = co_await core->perform(r, std::move(stop));
    co_return recv_result{wc.tag, wc.bytes, peer_of_word(wc.value)};
}

task<recv_result> endpoint::recv(std::span<std::byte> into, std::uint64_t tag, std::uint64_t mask,
                                 std::stop_token stop) {
    if (!core_) throw error(errc::invalid_argument, "endpoint is closed");
    if (into.size() > connection::inline_max)
        throw error(errc::invalid_argument, "recv: into ordinary memory takes at most " +
                                                std::to_string(connection::inline_max) +
                                                " bytes; register a region for more");
    auto* core = core_;
    const std::uint16_t ep = id_;
    auto pool = core->bounce(ep);
    detail::bounce_slot slot(pool, co_await pool->acquire());
    auto r = rdma_request(VR_RING_RECV, 0, pool->key(), pool->offset(slot.index()), 0, 0,
                          static_cast<std::uint32_t>(into.size()));
    r.ep = ep;
    r.tag = tag;
    r.mask = mask;
    auto wc = co_await core->perform(r, std::move(stop));
    std::memcpy(into.data(), pool->memory(slot.index()).data(), std::min<std::size_t>(wc.bytes, into.size()));
    co_return recv_result{wc.tag, wc.bytes, peer_of_word(wc.value)};
}

counters endpoint::stats() const { return core_ ? core_->transport().endpoint_stats(id_) : counters{}; }

// --- region ---

region::region(region&& o) noexcept
    : core_(std::exchange(o.core_, nullptr)), key_(o.key_), memory_(o.memory_) {}

region& region::operator=(region&& o) noexcept {
    if (this != &o) {
        this->~region();
        core_ = std::exchange(o.core_, nullptr);
        key_ = o.key_;
        memory_ = o.memory_;
    }
    return *this;
}

region::~region() {
    if (core_) core_->transport().deregister(key_);
}

// --- connection ---

connection::connection(connection&& o) noexcept
    : core_(std::exchange(o.core_, nullptr)),
      id_(o.id_),
      ep_(o.ep_),
      peer_data_(std::move(o.peer_data_)),
      peer_(o.peer_) {}

connection& connection::operator=(connection&& o) noexcept {
    if (this != &o) {
        close();
        core_ = std::exchange(o.core_, nullptr);
        id_ = o.id_;
        ep_ = o.ep_;
        peer_data_ = std::move(o.peer_data_);
        peer_ = o.peer_;
    }
    return *this;
}

connection::~connection() { close(); }

void connection::close() noexcept {
    if (core_) std::exchange(core_, nullptr)->close_connection(id_);
}

bool connection::is_open() const noexcept { return core_ && core_->connection_open(id_); }

task<void> connection::write(const region& local, std::uint64_t local_offset, remote_region remote,
                             std::uint64_t remote_offset, std::uint32_t length, std::stop_token stop) {
    return one_sided(false, local, local_offset, remote, remote_offset, length, std::move(stop));
}

task<void> connection::read(const region& local, std::uint64_t local_offset, remote_region remote,
                            std::uint64_t remote_offset, std::uint32_t length, std::stop_token stop) {
    return one_sided(true, local, local_offset, remote, remote_offset, length, std::move(stop));
}

task<void> connection::one_sided(bool read, const region& local, std::uint64_t local_offset,
                                 remote_region remote, std::uint64_t remote_offset, std::uint32_t length,
                                 std::stop_token stop) {
    if (!core_) throw error(errc::peer_gone, "connection is closed");
    checked_length(length, local_offset, local.memory().size(), read ? "read" : "write");
    co_await core_->perform(rdma_request(read ? VR_RING_READ : VR_RING_WRITE, id_, local.key(), local_offset,
                                         remote.rkey, remote_offset, length),
                            std::move(stop));
}

task<void> connection::send(const region& local, std::uint64_t offset, std::uint32_t length,
                            std::uint64_t tag, std::stop_token stop) {
    if (!core_) throw error(errc::peer_gone, "connection is closed");
    checked_length(length, offset, local.memory().size(), "send");
    auto r = rdma_request(VR_RING_SEND, id_, local.key(), offset, 0, 0, length);
    r.tag = tag;
    co_await core_->perform(r, std::move(stop));
}

task<void> connection::send(std::span<const std::byte> data, std::uint64_t tag, std::stop_token stop) {
    if (!core_) throw error(errc::peer_gone, "connection is closed");
    if (data.size() > inline_max)
        throw error(errc::invalid_argument, "send: from ordinary memory takes at most " +
                                                std::to_string(inline_max) + " bytes; register a region for more");
    auto* core = core_;
    const std::uint32_t id = id_;
    auto pool = core->bounce(ep_);
    detail::bounce_slot slot(pool, co_await pool->acquire());
    // Copied now: the caller's bytes may change as soon as this returns.
    std::memcpy(pool->memory(slot.index()).data(), data.data(), data.size());
    auto r = rdma_request(VR_RING_SEND, id, pool->key(), pool->offset(slot.index()), 0, 0,
                          static_cast<std::uint32_t>(data.size()));
    r.tag = tag;
    co_await core->perform(r, std::move(stop));
}

task<std::uint64_t> connection::fetch_add(remote_region remote, std::uint64_t offset, std::uint64_t add,
                                          std::stop_token stop) {
    if (!core_) throw error(errc::peer_gone, "connection is closed");
    require_word_aligned("fetch_add", offset);
    auto r = rdma_request(VR_RING_FADD, id_, 0, 0, remote.rkey, offset, 8);
    r.operand = add;
    auto wc = co_await core_->perform(r, std::move(stop));
    co_return wc.value;
}

task<std::uint64_t> connection::compare_swap(remote_region remote, std::uint64_t offset,
                                             std::uint64_t expected, std::uint64_t desired,
                                             std::stop_token stop) {
    if (!core_) throw error(errc::peer_gone, "connection is closed");
    require_word_aligned("compare_swap", offset);
    auto r = rdma_request(VR_RING_CSWAP, id_, 0, 0, remote.rkey, offset, 8);
    r.operand = expected;
    r.swap = desired;
    auto wc = co_await core_->perform(r, std::move(stop));
    co_return wc.value;
}

task<std::error_code> connection::closed(std::stop_token stop) {
    if (!core_) throw error(errc::cancelled, "closed: the connection is closed");
    auto r = request(VR_RING_CLOSED);
    r.conn = id_;
    r.ep = ep_;
    auto wc = co_await core_->perform(r, std::move(stop));
    co_return detail::code_from_status(-static_cast<int>(wc.value));
}

task<void> connection::fence() {
    if (!core_) co_return;
    co_await core_->drained(id_);
}

}  // namespace vmrdma
