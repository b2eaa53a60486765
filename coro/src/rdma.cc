// The public API: thin wrappers that turn calls into engine posts.
#include "vmrdma/rdma.hpp"

#include <cstdio>
#include <cstring>

#include "device_core.hpp"
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
    for (int i = 0; i < 4; ++i) out[i] = static_cast<std::byte>(rkey >> (8 * i));
    for (int i = 0; i < 8; ++i) out[8 + i] = static_cast<std::byte>(length >> (8 * i));
    return out;
}

remote_region remote_region::from_bytes(std::span<const std::byte> bytes) {
    if (bytes.size() < wire_size)
        throw error(errc::invalid_argument, "a region descriptor is 16 bytes");
    remote_region r;
    for (int i = 0; i < 4; ++i) r.rkey |= std::uint32_t(std::to_integer<std::uint8_t>(bytes[i])) << (8 * i);
    for (int i = 0; i < 8; ++i)
        r.length |= std::uint64_t(std::to_integer<std::uint8_t>(bytes[8 + i])) << (8 * i);
    return r;
}

namespace {
counters to_counters(const vr_counters& c) {
    counters out;
    out.tx_frames = c.tx_frames;
    out.tx_bytes = c.tx_bytes;
    out.rx_frames = c.rx_frames;
    out.rx_bytes = c.rx_bytes;
    out.retransmits = c.retransmits;
    out.timeouts = c.timeouts;
    out.duplicates = c.dups;
    std::uint64_t dropped = c.drop_not_for_us + c.drop_no_ep + c.drop_no_conn + c.drop_bad_state +
                            c.drop_bad_ack;
    for (auto d : c.drop_parse) dropped += d;
    out.rx_dropped = dropped;
    for (auto n : c.naks_tx) out.naks_sent += n;
    for (auto n : c.naks_rx) out.naks_received += n;
    out.bundles_received = c.rx_bundles;
    return out;
}

std::uint32_t checked_length(std::uint32_t length, std::uint64_t offset, std::uint64_t size,
                             const char* what) {
    if (offset > size || length > size - offset)
        throw error(errc::invalid_argument, std::string(what) + ": range is outside the local region");
    return length;
}

// unix: and xen: transports: one ring request (proto/ring.h).
vr_ring_req ring_req(std::uint8_t opcode, std::uint64_t cookie) {
    vr_ring_req r{};
    r.opcode = opcode;
    r.cookie = cookie;
    return r;
}

vr_ring_req ring_rdma(std::uint8_t opcode, std::uint64_t cookie, std::uint32_t conn, std::uint32_t lkey,
                      std::uint64_t loff, std::uint32_t rkey, std::uint64_t roff, std::uint32_t len) {
    auto r = ring_req(opcode, cookie);
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
    constexpr std::string_view eth = "eth:";
    if (uri.substr(0, eth.size()) == eth) {
        auto port = std::make_unique<detail::eth_port>(uri.substr(eth.size()), options.ethertype);
        return std::unique_ptr<device>(
            new device(std::make_unique<device_core>(loop, std::move(port), options)));
    }
    constexpr std::string_view unix_prefix = "unix:";
    if (uri.substr(0, unix_prefix.size()) == unix_prefix) {
        auto link = std::make_unique<detail::unix_link>(uri.substr(unix_prefix.size()));
        return std::unique_ptr<device>(new device(std::make_unique<device_core>(loop, std::move(link))));
    }
    constexpr std::string_view xen_prefix = "xen:";
    if (uri.substr(0, xen_prefix.size()) == xen_prefix) {
        auto link = std::make_unique<detail::xen_link>(uri.substr(xen_prefix.size()));
        return std::unique_ptr<device>(new device(std::make_unique<device_core>(loop, std::move(link))));
    }
    throw error(errc::invalid_argument, "unknown transport URI '" + std::string(uri) +
                                            "' (expected eth:IFNAME, unix:PATH or xen:DEVICE such as xen:/dev/vmrdma)");
}

device::device(std::unique_ptr<device_core> core) : core_(std::move(core)) {}
device::~device() = default;

mac_address device::mac() const noexcept { return core_->mac(); }
std::uint32_t device::mtu() const noexcept { return core_->mtu(); }

endpoint device::open_endpoint(std::uint16_t id, endpoint_options options) {
    core_->open_endpoint(id, options);
    return endpoint(core_.get(), id);
}

counters device::stats() const {
    if (auto* link = core_->link()) {
        // The engine is the backend's: its device counters where the
        // transport can ask for them (unix:), else zeros (xen:).
        auto c = link->device_counters();
        return c ? *c : counters{};
    }
    auto c = to_counters(*vr_engine_counters(core_->engine()));
    c.bundles_sent = core_->port().bundles_sent();
    return c;
}

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
    if (core_) std::exchange(core_, nullptr)->close_endpoint(id_);
}

void endpoint::set_weight(std::uint32_t weight) {
    if (!core_) throw error(errc::invalid_argument, "endpoint is closed");
    if (auto* link = core_->link())
        throw error(errc::invalid_argument,
                    std::string("on a ") + link->transport() + " device the weight is the driver domain's to set (" +
                        link->weight_admin() + ")");
    if (int rc = vr_ep_set_weight(core_->engine(), id_, weight); rc < 0)
        throw error(detail::code_from_status(rc), "cannot set the weight (1..1024)");
}

region endpoint::register_memory(std::span<std::byte> memory, access rights) {
    if (!core_) throw error(errc::invalid_argument, "endpoint is closed");
    if (auto* link = core_->link()) {
        auto key = link->register_memory(id_, memory, static_cast<std::uint32_t>(rights) | VR_ACCESS_LOCAL_WRITE);
        return region(core_, key, memory);
    }
    std::uint32_t key = 0;
    int rc = vr_reg_mr(core_->engine(), id_, memory.data(), memory.size(),
                       static_cast<std::uint32_t>(rights) | VR_ACCESS_LOCAL_WRITE, &key);
    if (rc < 0) throw error(detail::code_from_status(rc), "memory registration failed");
    return region(core_, key, memory);
}

task<connection> endpoint::connect(mac_address peer, std::uint16_t peer_endpoint, std::stop_token stop) {
    if (!core_) throw error(errc::invalid_argument, "endpoint is closed");
    auto* core = core_;
    std::uint16_t ep = id_;
    std::uint32_t conn = 0;
    auto wc = co_await core->perform(
        0,
        [&](std::uint64_t cookie) {
            if (auto* link = core->link()) {
                auto r = ring_req(VR_RING_CONNECT, cookie);
                r.ep = ep;
                r.peer_ep = peer_endpoint;
                std::memcpy(r.peer_mac, peer.bytes.data(), 6);
                return link->post(r);
            }
            return vr_connect(core->engine(), ep, peer.bytes.data(), peer_endpoint, cookie, &conn);
        },
        std::move(stop));
    co_return connection(core, wc.conn ? wc.conn : conn);
}

task<connection> endpoint::accept(std::stop_token stop) {
    if (!core_) throw error(errc::invalid_argument, "endpoint is closed");
    auto* core = core_;
    if (auto* link = core->link()) {  // vmrdmad holds the accepted connections
        std::uint16_t ep = id_;
        auto wc = co_await core->perform(
            0,
            [&](std::uint64_t cookie) {
                auto r = ring_req(VR_RING_ACCEPT, cookie);
                r.ep = ep;
                return link->post(r);
            },
            std::move(stop));
        co_return connection(core, wc.conn);
    }
    std::uint32_t conn = co_await core->next_accepted(id_, std::move(stop));
    co_return connection(core, conn);
}

task<recv_result> endpoint::recv(const region& into, std::uint64_t offset, std::uint32_t length,
                                 std::uint64_t tag, std::uint64_t mask, std::stop_token stop) {
    if (!core_) throw error(errc::invalid_argument, "endpoint is closed");
    checked_length(length, offset, into.memory().size(), "recv");
    auto* core = core_;
    std::uint16_t ep = id_;
    std::uint32_t key = into.key();
    auto wc = co_await core->perform(
        0,
        [&](std::uint64_t cookie) {
            if (auto* link = core->link()) {
                auto r = ring_rdma(VR_RING_RECV, cookie, 0, key, offset, 0, 0, length);
                r.ep = ep;
                r.tag = tag;
                r.mask = mask;
                return link->post(r);
            }
            return vr_post_recv(core->engine(), ep, key, offset, length, tag, mask, cookie);
        },
        std::move(stop));
    co_return recv_result{wc.tag, wc.bytes};
}

counters endpoint::stats() const {
    if (!core_ || core_->link()) return {};
    vr_counters c{};
    vr_ep_counters(core_->engine(), id_, &c);
    return to_counters(c);
}

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
    if (core_ && core_->link()) {
        core_->link()->deregister(key_);
    } else if (core_) {
        vr_dereg_mr(core_->engine(), key_);
        core_->want_flush();
    }
}

// --- connection ---

connection::connection(connection&& o) noexcept : core_(std::exchange(o.core_, nullptr)), id_(o.id_) {}

connection& connection::operator=(connection&& o) noexcept {
    if (this != &o) {
        close();
        core_ = std::exchange(o.core_, nullptr);
        id_ = o.id_;
    }
    return *this;
}

connection::~connection() { close(); }

void connection::close() noexcept {
    if (!core_) return;
    if (auto* link = core_->link()) {
        auto r = ring_req(VR_RING_DISCONNECT, ~std::uint64_t{0});  // nobody awaits its response
        r.conn = id_;
        link->post_detached(r);
    } else {
        vr_disconnect(core_->engine(), id_);
    }
    core_->forget_connection(id_);
    core_->want_flush();
    core_ = nullptr;
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
    auto* core = core_;
    auto conn = id_;
    auto lkey = local.key();
    co_await core->perform(
        conn,
        [&](std::uint64_t cookie) {
            if (auto* link = core->link())
                return link->post(ring_rdma(read ? VR_RING_READ : VR_RING_WRITE, cookie, conn, lkey, local_offset,
                                            remote.rkey, remote_offset, length));
            return read ? vr_post_read(core->engine(), conn, lkey, local_offset, remote.rkey, remote_offset,
                                       length, cookie)
                        : vr_post_write(core->engine(), conn, lkey, local_offset, remote.rkey, remote_offset,
                                        length, cookie);
        },
        std::move(stop));
}

task<void> connection::send(const region& local, std::uint64_t offset, std::uint32_t length,
                            std::uint64_t tag, std::stop_token stop) {
    if (!core_) throw error(errc::peer_gone, "connection is closed");
    checked_length(length, offset, local.memory().size(), "send");
    auto* core = core_;
    auto conn = id_;
    auto lkey = local.key();
    co_await core->perform(
        conn,
        [&](std::uint64_t cookie) {
            if (auto* link = core->link()) {
                auto r = ring_rdma(VR_RING_SEND, cookie, conn, lkey, offset, 0, 0, length);
                r.tag = tag;
                return link->post(r);
            }
            return vr_post_send(core->engine(), conn, lkey, offset, length, tag, cookie);
        },
        std::move(stop));
}

task<std::uint64_t> connection::fetch_add(remote_region remote, std::uint64_t offset, std::uint64_t add,
                                          std::stop_token stop) {
    if (!core_) throw error(errc::peer_gone, "connection is closed");
    auto* core = core_;
    auto conn = id_;
    auto wc = co_await core->perform(
        conn,
        [&](std::uint64_t cookie) {
            if (auto* link = core->link()) {
                auto r = ring_rdma(VR_RING_FADD, cookie, conn, 0, 0, remote.rkey, offset, 8);
                r.operand = add;
                return link->post(r);
            }
            return vr_post_fadd(core->engine(), conn, remote.rkey, offset, add, cookie);
        },
        std::move(stop));
    co_return wc.value;
}

task<std::uint64_t> connection::compare_swap(remote_region remote, std::uint64_t offset,
                                             std::uint64_t expected, std::uint64_t desired,
                                             std::stop_token stop) {
    if (!core_) throw error(errc::peer_gone, "connection is closed");
    auto* core = core_;
    auto conn = id_;
    auto wc = co_await core->perform(
        conn,
        [&](std::uint64_t cookie) {
            if (auto* link = core->link()) {
                auto r = ring_rdma(VR_RING_CSWAP, cookie, conn, 0, 0, remote.rkey, offset, 8);
                r.operand = expected;
                r.swap = desired;
                return link->post(r);
            }
            return vr_post_cswap(core->engine(), conn, remote.rkey, offset, expected, desired, cookie);
        },
        std::move(stop));
    co_return wc.value;
}

task<void> connection::fence() {
    if (!core_) co_return;
    co_await core_->drained(id_);
}

}  // namespace vmrdma
