// The vmrdma API: a device (one transport, chosen by URI), endpoints on it,
// registered memory regions, connections between endpoints, and awaitable
// RDMA operations. Every operation is a lazy task: nothing is posted until it
// is awaited, so `co_await when_all(c.write(...), c.write(...))` posts both
// before waiting for either.
//
//   auto dev = vmrdma::device::open(loop, "eth:veth0");
//   auto ep = dev->open_endpoint(1);
//   auto mr = ep.register_memory(buffer, vmrdma::access::remote_write);
//   auto conn = co_await ep.connect(peer_mac, 1);
//   co_await conn.write(mr, 0, peer_region, 0, buffer.size());
//
// Errors are thrown as vmrdma::error (see error.hpp): errc::timeout when the
// peer stops answering within the retry limit, errc::peer_gone when the
// connection closed, the NAK reasons (errc::bad_key, out_of_bounds,
// access_denied, no_such_endpoint, receiver_not_ready, resources_exhausted)
// when the peer refused, errc::cancelled when a stop token fired. A
// cancelled operation may already be on the wire: the peer may still see it,
// and a cancelled read may still land in the local region.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <stop_token>
#include <string>
#include <string_view>
#include <vector>

#include "vmrdma/event_loop.hpp"
#include "vmrdma/task.hpp"

struct vr_ring_req;
struct vr_completion;

namespace vmrdma {

enum class access : std::uint32_t {
    none = 0,
    local_write = 0x1,
    remote_read = 0x2,
    remote_write = 0x4,
    remote_atomic = 0x8,
    all = 0xF,
};
constexpr access operator|(access a, access b) {
    return static_cast<access>(static_cast<std::uint32_t>(a) | static_cast<std::uint32_t>(b));
}

struct mac_address {
    std::array<std::uint8_t, 6> bytes{};
    // "02:00:00:00:00:01"; throws errc::invalid_argument otherwise.
    static mac_address parse(std::string_view text);
    std::string to_string() const;
    friend bool operator==(const mac_address&, const mac_address&) = default;
};

// What a peer needs to address one of our regions: exchange it with
// send/recv (to_bytes/from_bytes give a fixed 16-byte little-endian form).
struct remote_region {
    std::uint64_t rkey = 0;
    std::uint64_t length = 0;
    static constexpr std::size_t wire_size = 16;
    std::array<std::byte, wire_size> to_bytes() const;
    static remote_region from_bytes(std::span<const std::byte> bytes);
};

// Where a peer's endpoint is on the link: what connect() needs, what
// endpoint::resolve() finds.
struct peer_address {
    mac_address mac;
    std::uint16_t endpoint = 0;
    friend bool operator==(const peer_address&, const peer_address&) = default;
};

// How connect() goes about it.
struct connect_options {
    // Handed to the accepting side with the connection (connection::peer_data
    // there); at most connection::private_data_max bytes. Copied when the
    // connect starts (when it is awaited): the bytes must live until then.
    std::span<const std::byte> private_data{};
    // A peer that is not listening yet (no such endpoint, or no answer at
    // all) is asked again every 100 ms until this much time has passed; then
    // errc::timeout, "no listener at ...". 0: one attempt.
    std::chrono::nanoseconds wait_for_listener{0};
};

struct recv_result {
    std::uint64_t tag = 0;
    std::uint64_t length = 0;
    // Who sent it: the peer endpoint at the other end of the connection it
    // came on (as that connection's peer() says), recorded by the engine
    // when it arrived, so it holds even if the peer has gone since.
    peer_address source;
};

// Capacities are reserved when the device opens (the engine allocates
// nothing afterwards): the defaults take about 20 MiB.
struct device_options {
    std::uint16_t ethertype = 0x88B5;
    std::uint32_t max_endpoints = 16;
    std::uint32_t max_connections = 64;
    std::uint32_t max_regions = 4096;
    std::uint32_t max_ops_per_connection = 512;
    std::uint32_t max_posted_recvs = 256;
    // Sends that arrive before a matching receive wait here, per endpoint;
    // a larger or further one is refused (receiver not ready) and retried.
    std::uint32_t unexpected_messages = 16;
    std::uint32_t unexpected_message_size = 64 * 1024;
    // Reliability tuning; 0 takes the protocol's profile (VR_DEFAULT_* in
    // proto/engine.h: 256 frames, 20 ms doubling to 16x, 7 expiries), the
    // same one vmrdmad and the Xen backend run with.
    std::uint32_t window_frames = 0;        // unacknowledged data frames per connection
    std::uint64_t rto_ns = 0;               // first retransmission timeout
    // A peer is declared gone (errc::timeout) when data it has not
    // acknowledged made no progress for peer_timeout_ns (0: 8 s) and at
    // least retry_limit retransmission timeouts expired (0: 7). The time is
    // the budget, so a peer whose thread is busy for a few seconds survives.
    std::uint32_t retry_limit = 0;
    std::uint64_t peer_timeout_ns = 0;
    // Liveness: a connection that has heard nothing for this long is probed
    // (0: 1 s, and at least four probes per peer_timeout_ns); one silent for
    // peer_timeout_ns fails, so every waiter, a posted receive included,
    // learns of a dead peer. ~0ull turns probing off.
    std::uint64_t keepalive_ns = 0;
    // A send that finds no posted receive (and no room in the peer's
    // unexpected queue) is retried; it fails with errc::receiver_not_ready
    // once the peer has refused it for this long (0: 1 s).
    std::uint64_t receiver_not_ready_timeout_ns = 0;
    // The ACK a message's last frame asks for goes at once (0), or within
    // this long, so that a reply sent meanwhile carries it instead of an ACK
    // frame of its own: for request/reply traffic, where each ACK frame is a
    // system call and a wake-up on the round trip's path. A peer that gets
    // no reply waits this much longer for its send's or write's completion.
    // eth: only (vmrdmad and the Xen backend answer at once).
    std::uint64_t ack_request_delay_ns = 0;
    // Loss recovery (docs/proto.md, "Reliability"): a connection between two
    // devices that both offer it resends only the frames lost (selective
    // repeat); true offers only go-back-N, which resends everything from a
    // gap (the protocol before it; kept to compare, vmrdma-bench --go-back-n).
    bool go_back_n = false;
    // eth: consecutive small frames (up to half the MTU) bound for one peer
    // leave as one bundle frame (docs/wire-format.md). Every vmrdma receiver
    // unpacks bundles; off only to compare.
    bool bundle_small_frames = true;
    // For a loop that polls: every turn of the loop also takes what has
    // arrived, not only when io_uring reports it. On unix: and xen: the
    // responses already in the ring. An eth: device reads its socket's
    // mapped receive ring in every turn anyway (docs/eth-transport.md,
    // "Receive"); this keeps that ring small enough to stay in cache as a
    // poller drains it (2 MiB instead of 8). For a loop
    // turned by a polling thread (MPI progress) while another thread
    // submits: what arrived is taken by the polling thread's next turn,
    // without the wake-up of the submitting thread that io_uring's
    // completion would need. A loop with loop_options::busy_poll takes it
    // too (its spin is turns), but keeps the 8 MiB ring: it sleeps once its
    // poll window passes idle, and the peer's window may arrive meanwhile.
    bool receive_in_turns = false;
    // What each frame's CRC32C covers (docs/wire-format.md, "Integrity").
    // end_to_end: every byte, the payload included, from the sender's memory
    // to the receiver's. link: a connection whose two ends both allow it
    // leaves payloads to the link's own frame check (Ethernet's FCS) and
    // checks only the headers, which saves reading every payload byte once
    // on each side; it gives up detecting corruption inside switches and
    // NICs, as TCP with checksum offload does. Either end left at
    // end_to_end keeps the connection end to end.
    enum class integrity_mode { end_to_end, link };
    integrity_mode integrity = integrity_mode::end_to_end;
    // Authenticated frames (docs/wire-format.md, "Authentication"): with a
    // pre-shared key, every connection of this device derives a key of its
    // own from it and every frame carries a ChaCha20-Poly1305 tag over its
    // headers and payload, so a host on the path that lacks the key can
    // neither forge, alter nor replay one. A device with a key connects only
    // to peers with the same key, one without only to peers without. Costs
    // 24 bytes per frame and a pass over each payload (vmrdma-bench --auth).
    // eth: only: on unix: and xen: the driver domain decides (vmrdmad
    // --auth-key-file, backend_kmod auth_key=).
    using auth_key_bytes = std::array<std::byte, 32>;
    std::optional<auth_key_bytes> auth_key;
};

// A pre-shared key from a file of 64 hex digits (a newline may follow) or 32
// raw bytes, which only its owner may read; errc::invalid_argument says
// what is wrong otherwise.
device_options::auth_key_bytes read_auth_key(const std::string& path);

struct endpoint_options {
    std::uint32_t weight = 1;   // share of transmit bandwidth against other endpoints
    bool listen = false;        // accept incoming connections
};

// Counters of one device (all endpoints) or one endpoint.
struct counters {
    std::uint64_t tx_frames = 0, tx_bytes = 0, rx_frames = 0, rx_bytes = 0;
    std::uint64_t retransmits = 0, timeouts = 0, duplicates = 0;
    std::uint64_t rx_dropped = 0;   // malformed, forged or unaddressed frames
    std::uint64_t naks_sent = 0, naks_received = 0;
    // Bundles of small frames (eth: device only); their frames count in
    // tx_frames and rx_frames one by one.
    std::uint64_t bundles_sent = 0, bundles_received = 0;
    // Frames taken from the mapped receive ring (eth:, unless VMRDMA_ETH_RX
    // chose io_uring or recvmmsg, or the kernel refused the ring; 0 there):
    // docs/eth-transport.md, "Receive".
    std::uint64_t rx_ring_frames = 0;
    // Refused as hostile (docs/wire-format.md, "Handshake", "Windows",
    // "Authentication"; each also counts in rx_dropped where it is a frame):
    // connection requests with a wrong or expired cookie, requests that would
    // have replaced a live connection, requests over the per-MAC or total
    // limit, from an offending MAC or without the authentication this side
    // needs; frames outside a connection's windows, with a wrong or missing
    // tag, or replayed; requests that drew a fatal NAK (a forged key, an
    // out-of-bounds offset: the connection closed).
    std::uint64_t cookies_refused = 0, challenges = 0, connections_refused = 0;
    std::uint64_t out_of_window = 0, auth_failed = 0, replays = 0, offences = 0;
};

namespace detail {
class device_core;
}

class region;
class connection;

// A protection domain of an endpoint (docs/api.md, "Protection domains"):
// a region bound to one serves only the connections bound to it, so a key
// that reached another peer of the same endpoint is refused (bad_key). By
// default (no domain) a region serves every connection of its endpoint.
struct protection_domain {
    std::uint32_t id = 0;  // 0: none
    friend bool operator==(const protection_domain&, const protection_domain&) = default;
};

// An open endpoint; closes when destroyed (see close()).
class endpoint {
public:
    endpoint() = default;
    endpoint(endpoint&& other) noexcept;
    endpoint& operator=(endpoint&& other) noexcept;
    endpoint(const endpoint&) = delete;
    endpoint& operator=(const endpoint&) = delete;
    ~endpoint();

    std::uint16_t id() const noexcept { return id_; }
    bool is_open() const noexcept { return core_ != nullptr; }
    // Closes the endpoint: its connections disconnect (operations on them
    // fail with errc::cancelled), its posted receives and a waiting accept
    // fail with errc::cancelled, and its regions are deregistered, so peers
    // can no longer reach them. The id can be opened again once the last
    // DISCONNECT has gone out.
    void close() noexcept;
    // Changes the endpoint's transmit weight (1..1024) from now on. On a
    // unix: device the daemon's administrator sets weights (vmrdmactl), on a
    // xen: device dom0's (the backend's xenstore weight node), so this throws
    // invalid_argument there.
    void set_weight(std::uint32_t weight);

    // Registers `memory` for the given remote access (local read is always
    // allowed). The memory must stay valid until the region is destroyed.
    region register_memory(std::span<std::byte> memory, access rights);

    task<connection> connect(peer_address peer, connect_options options = {}, std::stop_token stop = {});
    task<connection> connect(mac_address peer, std::uint16_t peer_endpoint, std::stop_token stop = {});
    // As connect, waiting up to `deadline` for a listener (connect_options::
    // wait_for_listener): for a client started beside its server.
    task<connection> connect(mac_address peer, std::uint16_t peer_endpoint, std::chrono::nanoseconds deadline,
                             std::stop_token stop = {});
    // Waits for a peer's connect (the endpoint must listen: opened to
    // listen, or listen() done). The connection's peer_data() is the
    // connecting side's private data.
    task<connection> accept(std::stop_token stop = {});
    // A listening endpoint's accept data: every connection it accepts from
    // now on hands these bytes (at most connection::private_data_max) to the
    // connecting side, as its connection::peer_data(). For example the
    // descriptors of the regions a server offers. Empty: none.
    // An endpoint opened to listen accepts connections at once, before
    // this is done; for every connection to carry the data, open without
    // listen, set it, then listen().
    task<void> set_accept_data(std::span<const std::byte> data);
    // The endpoint listens from now on (connects to it before get "no
    // listener", which connect's wait_for_listener waits out). Done again,
    // or on an endpoint opened to listen: nothing changes.
    task<void> listen();

    // Protection domains: at most 16 per endpoint (resources_exhausted
    // beyond). A domain is freed explicitly (busy while regions are bound
    // to it) or with the endpoint.
    task<protection_domain> allocate_protection_domain();
    task<void> free_protection_domain(protection_domain pd);
    // Puts one of this endpoint's connections or regions in domain pd (a
    // domain of this endpoint; {} takes it out: a region then serves every
    // connection again, a connection only regions without a domain).
    task<void> bind(const connection& conn, protection_domain pd);
    task<void> bind(const region& mr, protection_domain pd);

    // A key of the application's own (e.g. from a key exchange it made with
    // its peer) for this endpoint's connections from now on, instead of the
    // device's auth_key (nullopt goes back to it): both ends need the same
    // key, or the connection is refused (docs/wire-format.md, Authentication).
    task<void> set_auth_key(const std::optional<device_options::auth_key_bytes>& key);

    // Names. announce: this endpoint answers for `name` (1..name_max
    // bytes, compared exactly) on the link, so that resolve() on any host
    // of the segment, or another frontend of the same backend, finds it;
    // one name per endpoint, "" withdraws it. errc::name_in_use if another
    // endpoint of the same engine has the name. Names are not
    // authenticated: like ARP, anyone on the segment can answer for any
    // name (docs/wire-format.md).
    static constexpr std::size_t name_max = 64;
    task<void> announce(std::string_view name);
    // Who announces `name`: asks the segment, again and again until
    // `deadline` from now (a server may not be up yet); then errc::not_found.
    task<peer_address> resolve(std::string_view name,
                               std::chrono::nanoseconds deadline = std::chrono::seconds(2),
                               std::stop_token stop = {});
    // Posts a receive for a tagged send whose (tag & mask) == (expected & mask),
    // from any connection of this endpoint; matched in posting order.
    task<recv_result> recv(const region& into, std::uint64_t offset, std::uint32_t length,
                           std::uint64_t tag, std::uint64_t mask = ~0ull, std::stop_token stop = {});
    // A small receive into ordinary memory (at most connection::inline_max
    // bytes): the message lands in library-registered memory and is copied
    // into `into` when it completes.
    task<recv_result> recv(std::span<std::byte> into, std::uint64_t tag, std::uint64_t mask = ~0ull,
                           std::stop_token stop = {});
    counters stats() const;

private:
    friend class detail::device_core;
    friend class device;
    endpoint(detail::device_core* core, std::uint16_t id) : core_(core), id_(id) {}
    task<connection> connect_once(peer_address peer, std::span<const std::byte> private_data,
                                  std::stop_token stop);
    task<connection> handshake(vr_ring_req request, std::span<const std::byte> private_data,
                               std::stop_token stop);
    task<vr_completion> with_bytes(std::uint8_t opcode, std::vector<std::byte> bytes, std::stop_token stop);
    detail::device_core* core_ = nullptr;
    std::uint16_t id_ = 0;
};

// A registration; deregisters when destroyed (operations still using it
// complete with an error first).
class region {
public:
    region() = default;
    region(region&& other) noexcept;
    region& operator=(region&& other) noexcept;
    region(const region&) = delete;
    region& operator=(const region&) = delete;
    ~region();

    std::span<std::byte> memory() const noexcept { return memory_; }
    std::uint64_t key() const noexcept { return key_; }
    remote_region remote() const noexcept { return {key_, memory_.size()}; }

private:
    friend class endpoint;
    friend class detail::device_core;
    region(detail::device_core* core, std::uint64_t key, std::span<std::byte> memory)
        : core_(core), key_(key), memory_(memory) {}
    detail::device_core* core_ = nullptr;
    std::uint64_t key_ = 0;
    std::span<std::byte> memory_;
};

class connection {
public:
    connection() = default;
    connection(connection&& other) noexcept;
    connection& operator=(connection&& other) noexcept;
    connection(const connection&) = delete;
    connection& operator=(const connection&) = delete;
    ~connection();  // disconnects; outstanding operations fail with errc::cancelled

    // One-sided: copies `length` bytes at `local`+`local_offset` to the
    // peer's `remote`+`remote_offset`.
    task<void> write(const region& local, std::uint64_t local_offset, remote_region remote,
                     std::uint64_t remote_offset, std::uint32_t length, std::stop_token stop = {});
    task<void> read(const region& local, std::uint64_t local_offset, remote_region remote,
                    std::uint64_t remote_offset, std::uint32_t length, std::stop_token stop = {});
    // Two-sided: delivered to a receive posted on the peer endpoint.
    task<void> send(const region& local, std::uint64_t offset, std::uint32_t length,
                    std::uint64_t tag, std::stop_token stop = {});
    // A small send from ordinary memory (at most inline_max bytes): copied
    // into memory the library registered, so nothing needs registering.
    static constexpr std::size_t inline_max = 4096;
    task<void> send(std::span<const std::byte> data, std::uint64_t tag, std::stop_token stop = {});
    // Atomics on an 8-byte aligned remote word; return the previous value.
    task<std::uint64_t> fetch_add(remote_region remote, std::uint64_t offset, std::uint64_t add,
                                  std::stop_token stop = {});
    task<std::uint64_t> compare_swap(remote_region remote, std::uint64_t offset,
                                     std::uint64_t expected, std::uint64_t desired,
                                     std::stop_token stop = {});
    // Completes when every operation posted before it on this connection has.
    task<void> fence();
    // Completes when the connection ends from the other side, saying why:
    // errc::peer_gone (the peer disconnected or reset it) or errc::timeout
    // (it went silent: keepalives, device_options::peer_timeout_ns). On every
    // transport. Throws errc::cancelled if this side closes the connection
    // or `stop` fires first.
    task<std::error_code> closed(std::stop_token stop = {});
    void close() noexcept;
    bool is_open() const noexcept;

    // What the peer handed over as the connection was made: on an accepted
    // connection the connecting side's private data, on a connected one the
    // listening endpoint's accept data. Empty if it sent none.
    static constexpr std::size_t private_data_max = 192;
    std::span<const std::byte> peer_data() const noexcept { return peer_data_; }
    // The endpoint at the other end, as the engine saw it: for a connected
    // connection the address it was made to, for an accepted one where
    // the connect came from (a receive's recv_result::source names it).
    peer_address peer() const noexcept { return peer_; }

private:
    friend class endpoint;
    friend class detail::device_core;
    connection(detail::device_core* core, std::uint32_t id, std::uint16_t ep) : core_(core), id_(id), ep_(ep) {}
    // write and read: the same checks and post, in one direction or the other.
    task<void> one_sided(bool read, const region& local, std::uint64_t local_offset, remote_region remote,
                         std::uint64_t remote_offset, std::uint32_t length, std::stop_token stop);
    detail::device_core* core_ = nullptr;
    std::uint32_t id_ = 0;
    std::uint16_t ep_ = 0;  // the endpoint it belongs to
    std::vector<std::byte> peer_data_;
    peer_address peer_;
};

class device {
public:
    // URIs: "eth:IFNAME" (in-process engine on a raw socket; needs
    // CAP_NET_RAW), "unix:PATH" (a frontend of vmrdmad, the user-space driver
    // domain: docs/split-driver.md; register only memory of a
    // vmrdma::registrable_buffer or registrable_arena), "xen:DEVICE" (e.g.
    // xen:/dev/vmrdma: frontend_kmod's device in a Xen guest, docs/xen.md;
    // any memory). Throws vmrdma::error with a message that says what is wrong.
    static std::unique_ptr<device> open(event_loop& loop, std::string_view uri,
                                        device_options options = {});
    ~device();
    device(const device&) = delete;
    device& operator=(const device&) = delete;

    mac_address mac() const noexcept;
    std::uint32_t mtu() const noexcept;
    endpoint open_endpoint(std::uint16_t id, endpoint_options options = {});
    counters stats() const;

private:
    explicit device(std::unique_ptr<detail::device_core> core);
    std::unique_ptr<detail::device_core> core_;
};

}  // namespace vmrdma
