#include "fabric/messenger.hpp"

#include <algorithm>
#include <chrono>
#include <cstring>

#include "fabric/atomics.hpp"
#include "fabric/glue.hpp"
#include "fabric/info.hpp"

namespace vmrdma::fabric {

using namespace std::chrono_literals;

namespace {

constexpr std::uint32_t rx_slots = 32;
constexpr std::uint32_t tx_slots = 64;
// Slots only acknowledgements, FINs and offers may take, so that answers
// always find room when the application has filled the rest.
constexpr std::uint32_t control_reserve = 8;
constexpr std::size_t slot_size = sizeof(header) + max_pieces_per_message * sizeof(piece) + eager_max;
// Large transfers move in pieces of up to 512 KiB, at most two of a
// transfer out at a time, staged in (and landing in) runs of 64 KiB blocks.
constexpr std::size_t piece_max = 512 * 1024;
// A piece of the sender's own memory (registered in place) may be larger: no
// staging memory bounds it, and fewer pieces are fewer offers, reads and FINs.
constexpr std::size_t direct_piece_max = 4 * 1024 * 1024;
constexpr std::size_t block_size = 64 * 1024;
constexpr std::size_t blocks = 64;  // 4 MiB of staging, as much landing
constexpr std::size_t landing_base = (rx_slots + tx_slots) * slot_size;
constexpr std::size_t private_size = landing_base + blocks * block_size;
// A receiver that cannot read a piece into place lands it whole.
static_assert(direct_piece_max <= blocks * block_size);
// Reads in flight per endpoint, whatever the transfers: each answer is a
// burst of up to 512 KiB from one peer; more at once overran the receive
// path of a busy host (retransmissions, and the engine refusing reads for
// want of response slots).
constexpr std::uint32_t reads_max = 2;
constexpr auto connect_patience = 10s;
// A piece read straight into its destination (no landing block).
constexpr std::size_t no_landing = SIZE_MAX;

std::size_t total_of(const std::vector<iovec>& iov) {
    std::size_t n = 0;
    for (const auto& v : iov) n += v.iov_len;
    return n;
}

// Calls copy(iov bytes, position in the flat buffer, k) for each run of the
// iov's bytes [offset, offset + n) that lies in one element; returns how many
// bytes the iov had there.
template <class Copy>
std::size_t walk_iov(const std::vector<iovec>& iov, std::size_t offset, std::size_t n, Copy copy) {
    std::size_t done = 0;
    for (const auto& v : iov) {
        if (done == n) break;
        if (offset >= v.iov_len) {
            offset -= v.iov_len;
            continue;
        }
        std::size_t k = std::min(v.iov_len - offset, n - done);
        copy(static_cast<std::byte*>(v.iov_base) + offset, done, k);
        done += k;
        offset = 0;
    }
    return done;
}

// Copies n bytes of the iov, from `offset` on, to out.
void gather(const std::vector<iovec>& iov, std::size_t offset, std::byte* out, std::size_t n) {
    walk_iov(iov, offset, n,
             [out](const std::byte* at, std::size_t pos, std::size_t k) { std::memcpy(out + pos, at, k); });
}

// Copies up to n bytes into the iov from `offset` on; returns how many fit.
std::size_t scatter(const std::vector<iovec>& iov, std::size_t offset, const std::byte* in, std::size_t n) {
    return walk_iov(iov, offset, n,
                    [in](std::byte* at, std::size_t pos, std::size_t k) { std::memcpy(at, in + pos, k); });
}

// The part of an iov from `offset`, at most `n` bytes.
std::vector<iovec> slice(const std::vector<iovec>& iov, std::size_t offset, std::size_t n) {
    std::vector<iovec> out;
    for (const auto& v : iov) {
        if (n == 0) break;
        if (offset >= v.iov_len) {
            offset -= v.iov_len;
            continue;
        }
        std::size_t k = std::min(v.iov_len - offset, n);
        out.push_back({static_cast<std::byte*>(v.iov_base) + offset, k});
        n -= k;
        offset = 0;
    }
    return out;
}

std::uint64_t word_of(const peer_address& a) { return address_key(a); }

// Resumes the awaiting coroutine on the loop's next turn.
struct next_turn {
    event_loop& loop;
    bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<> h) { loop.make_ready(h); }
    void await_resume() const noexcept {}
};

}  // namespace

struct messenger::peer {
    peer_address addr;
    std::optional<vmrdma::connection> conn;
    bool connecting = false;
    bool broken = false;     // its connection failed: let go once nothing is in flight
    std::uint32_t in_flight = 0;
    std::deque<std::function<void(int)>> waiting;  // for the connection
    // The connection a peer with the lower address made while we made our
    // own (both connected at once): we move our sends to it once nothing of
    // ours is in flight (move_to_offered), so both directions share one.
    std::optional<vmrdma::connection> offered;
};

// What a receive completion reports about the message.
struct messenger::meta {
    fi_addr_t src = FI_ADDR_NOTAVAIL;
    bool tagged = false;
    std::uint64_t tag = 0;
    std::optional<std::uint64_t> data;
    std::size_t length = 0;
};

struct messenger::incoming {
    peer_address from;
    meta m;
    bool rendezvous = false;
    std::uint64_t bulk = 0;
    std::vector<piece> pieces;          // offered before it matched
    std::span<const std::byte> view;    // eager data, while in the slot
    std::vector<std::byte> kept;        // eager data, once it waits unmatched
    bool claimed = false;
    void* claimer = nullptr;
    std::span<const std::byte> bytes() const { return view.empty() ? std::span<const std::byte>(kept) : view; }
};

struct messenger::posted {
    std::vector<iovec> iov;
    std::size_t capacity = 0;
    fi_addr_t src = FI_ADDR_UNSPEC;
    void* context = nullptr;
    bool tagged = false;
    std::uint64_t tag = 0, ignore = 0;
    bool completion = true;
    bool multi = false;
    std::size_t used = 0;      // multi: bytes taken
    int outstanding = 0;       // multi: large messages still arriving into it
    bool released = false;     // multi: no more room; the last completion says FI_MULTI_RECV
    bool release_reported = false;
};

struct messenger::out_bulk {
    std::uint64_t id = 0;
    peer* to = nullptr;
    std::vector<iovec> src;
    std::size_t total = 0, staged = 0, acked = 0;
    std::uint32_t next_index = 0;
    std::map<std::uint32_t, std::pair<std::size_t, std::size_t>> out;  // index -> (staging offset, length)
    bool waiting = false;  // in bulks_waiting_for_staging_
    std::optional<vmrdma::region> direct;  // the source itself, registered: no staging
    std::function<void(int)> done;
};

struct messenger::in_bulk {
    peer_address from;
    std::uint64_t id = 0;
    std::vector<iovec> dest;
    std::size_t total = 0, received = 0;
    std::deque<piece> pending;
    std::uint32_t reading = 0;
    bool waiting = false;  // in reads_waiting_
    int status = 0;
    std::optional<vmrdma::region> direct;  // the destination itself, registered: no landing
    bool direct_tried = false;
    std::function<void(int)> done;
};

// An operation that waits for its peer's answer (RMA, atomics).
struct messenger::pending_op {
    peer* to = nullptr;
    void* context = nullptr;
    std::uint64_t flags = 0;
    std::size_t len = 0;
    bool completion = true;
    int cntr = cntr_write;
    std::vector<iovec> result;
};

// --- setup and teardown ---

messenger::messenger(ep_obj& owner, vmrdma::endpoint endpoint)
    : ep_(owner),
      ctx_(*owner.dom->ctx),
      vep_(std::move(endpoint)),
      private_mem_(private_size),
      staging_mem_(blocks * block_size),
      staging_pool_(blocks, block_size),
      landing_pool_(blocks, block_size) {
    private_ = vep_.register_memory(private_mem_.span(), vmrdma::access::local_write);
    staging_ = vep_.register_memory(staging_mem_.span(), vmrdma::access::remote_read);
    for (std::uint32_t i = tx_slots; i-- > 0;) free_tx_.push_back(i);
    ctx_.local_endpoints()[vep_.id()] = this;
    start_slots();
    start_accepting();
}

messenger::~messenger() { shutdown(); }

fabric_address messenger::address() const { return {ctx_.device().mac(), vep_.id()}; }

void messenger::shutdown() {
    if (shutting_down_) return;
    shutting_down_ = true;
    ctx_.local_endpoints().erase(vep_.id());
    stop_.request_stop();
    // Closing the connections ends what is in flight on them at once.
    for (auto& [word, p] : peers_) {
        p.conn.reset();
        p.offered.reset();
    }
    accepted_.clear();
    vep_.close();
    for (int i = 0; i < 10000 && scope_.running() > 0; ++i) ctx_.loop().run_once(1ms);
    private_ = {};
    staging_ = {};
}

// --- memory ---

std::span<std::byte> messenger::rx_slot(std::uint32_t i) { return private_mem_.span().subspan(i * slot_size, slot_size); }

std::uint64_t messenger::tx_slot_offset(std::uint32_t i) const { return (rx_slots + i) * slot_size; }

std::uint64_t messenger::landing_offset(std::size_t offset) const { return landing_base + offset; }

std::span<std::byte> messenger::tx_slot(std::uint32_t i) {
    return private_mem_.span().subspan(tx_slot_offset(i), slot_size);
}

std::optional<std::uint32_t> messenger::take_tx_slot(bool control) {
    if (free_tx_.size() <= (control ? 0 : control_reserve)) return std::nullopt;
    auto i = free_tx_.back();
    free_tx_.pop_back();
    return i;
}

std::size_t messenger::tx_room() const {
    return free_tx_.size() > control_reserve ? free_tx_.size() - control_reserve : 0;
}

std::size_t messenger::rx_room() const { return queue_size; }

// --- peers and sending ---

messenger::peer* messenger::peer_of(fi_addr_t addr) {
    auto a = ep_.av ? ep_.av->peer(addr) : std::nullopt;
    return a ? &peer_at(*a) : nullptr;
}

messenger::peer& messenger::peer_at(const peer_address& a) {
    auto [it, fresh] = peers_.try_emplace(word_of(a));
    if (fresh) it->second.addr = a;
    return it->second;
}

messenger* messenger::local_peer(const peer_address& a) const {
    if (!(a.mac == ctx_.device().mac())) return nullptr;
    auto it = ctx_.local_endpoints().find(a.endpoint);
    return it == ctx_.local_endpoints().end() ? nullptr : it->second;
}

void messenger::when_connected(peer& p, std::function<void(int)> then) {
    if (shutting_down_) {
        then(FI_ECANCELED);
        return;
    }
    move_to_offered(p);  // ours may have failed meanwhile: the peer's serves
    if (local_peer(p.addr) || (p.conn && !p.broken && p.conn->is_open())) {
        then(0);
        return;
    }
    if (p.conn && p.in_flight == 0) {
        log_warning("vmrdma: the connection to %s/%u has ended: connecting again",
                    p.addr.mac.to_string().c_str(), p.addr.endpoint);
        p.conn.reset();  // failed earlier: connect again
        p.broken = false;
    }
    p.waiting.push_back(std::move(then));
    if (!p.connecting && !p.conn) connect(p);
}

void messenger::connect(peer& p) {
    p.connecting = true;
    scope_.spawn([this, pp = &p]() -> task<void> {
        int status = 0;
        try {
            vmrdma::connect_options o;
            o.wait_for_listener = connect_patience;
            auto c = co_await vep_.connect(pp->addr, o, stop_.get_token());
            pp->conn.emplace(std::move(c));
        } catch (const std::exception& e) {
            status = fi_errno_of(e);
            if (!shutting_down_) log_warning("vmrdma: %s", e.what());
        }
        pp->connecting = false;
        if (shutting_down_) status = FI_ECANCELED;
        if (status == 0) move_to_offered(*pp);
        auto waiting = std::move(pp->waiting);
        pp->waiting.clear();
        for (auto& then : waiting) then(status);
    });
}

void messenger::transmit(peer& p, std::uint32_t slot, std::size_t len, std::function<void(int)> done) {
    if (auto* local = local_peer(p.addr)) {
        // In this process: the bytes go straight to the other endpoint, on
        // the next turn (as they would arrive from the wire).
        (void)local;  // looked up again when the bytes arrive: it may close meanwhile
        std::vector<std::byte> bytes(tx_slot(slot).begin(), tx_slot(slot).begin() + static_cast<std::ptrdiff_t>(len));
        free_tx_.push_back(slot);
        scope_.spawn([this, to = p.addr, bytes = std::move(bytes), done = std::move(done)]() -> task<void> {
            co_await next_turn{ctx_.loop()};
            auto* target = local_peer(to);
            if (target && !target->shutting_down_) target->handle(address().peer(), bytes);
            done(target ? 0 : FI_EHOSTUNREACH);
            flush_control();
        });
        return;
    }
    ++p.in_flight;
    scope_.spawn([this, pp = &p, slot, len, done = std::move(done)]() -> task<void> {
        int status = 0;
        try {
            co_await pp->conn->send(private_, tx_slot_offset(slot), static_cast<std::uint32_t>(len), 0);
        } catch (const std::exception& e) {
            status = fi_errno_of(e);
            if (!shutting_down_) log_warning("vmrdma: %s", e.what());
        }
        free_tx_.push_back(slot);
        ended_on(*pp, status);
        done(status);
        flush_control();
    });
}

// An operation on p's connection has ended: a failure fails the peer, and
// the last one in flight may let our sends move to the peer's connection.
void messenger::ended_on(peer& p, int status) {
    --p.in_flight;
    if (status)
        fail_peer(p, status);
    else
        move_to_offered(p);
}

// A peer whose connection failed: what waits on it fails too, and the
// connection goes once nothing is in flight on it.
void messenger::fail_peer(peer& p, int status) {
    if (!shutting_down_)
        log_warning("vmrdma: the connection to %s/%u failed: %s", p.addr.mac.to_string().c_str(), p.addr.endpoint,
                    fi_strerror(status));
    p.broken = true;
    if (p.in_flight == 0 && !shutting_down_) {
        p.conn.reset();
        p.broken = false;
    }
    std::vector<std::uint64_t> ops;
    for (auto& [id, op] : ops_)
        if (op->to == &p) ops.push_back(id);
    for (auto id : ops) finish_op(id, status);
    std::vector<std::uint64_t> bulks;
    for (auto& [id, b] : out_bulks_)
        if (b->to == &p) bulks.push_back(id);
    for (auto id : bulks) {
        auto node = out_bulks_.extract(id);
        release_staging(*node.mapped());
        if (node.mapped()->done) node.mapped()->done(status);
    }
    if (!bulks.empty()) restage();
}

void messenger::send_control(peer& p, const header& h, std::span<const piece> pieces,
                             std::span<const std::byte> data) {
    auto slot = take_tx_slot(true);
    if (!slot) {
        // Every slot is busy: it waits for one (answers are never dropped).
        control_waiting_.push_back([this, pp = &p, h, ps = std::vector<piece>(pieces.begin(), pieces.end()),
                                    bytes = std::vector<std::byte>(data.begin(), data.end())] {
            send_control(*pp, h, ps, bytes);
        });
        return;
    }
    const std::size_t n = encode(tx_slot(*slot), h, pieces, data);
    when_connected(p, [this, pp = &p, s = *slot, n](int status) {
        if (status) {
            free_tx_.push_back(s);
            return;
        }
        transmit(*pp, s, n, [](int) {});
    });
}

void messenger::flush_control() {
    while (!control_waiting_.empty() && !free_tx_.empty() && !shutting_down_) {
        auto next = std::move(control_waiting_.front());
        control_waiting_.pop_front();
        next();
    }
}

// --- completions ---

void messenger::tx_done(void* context, std::uint64_t flags, std::size_t len, int status, bool completion,
                        int cntr) {
    if (shutting_down_) return;  // closed: it reports nothing more
    if (status) {
        // An injected operation has no context to report against (and a
        // consumer such as Open MPI takes every entry's context as its own
        // request): only its counter and the log hear of it.
        if (!context) log_warning("vmrdma: an injected operation failed: %s", fi_strerror(status));
        if (ep_.tx_cq && context) {
            fi_cq_err_entry err{};
            err.op_context = context;
            err.flags = flags;
            err.err = status;
            err.prov_errno = status;
            ep_.tx_cq->push_error(err);
        }
        if (auto* c = ep_.cntrs[cntr]) c->add_error(1);
        return;
    }
    if (completion && ep_.tx_cq) {
        cq_entry e;
        e.e.op_context = context;
        e.e.flags = flags;
        e.e.len = len;
        ep_.tx_cq->push(e);
    }
    if (auto* c = ep_.cntrs[cntr]) c->add(1);
}

// --- sends ---

ssize_t messenger::send(send_args a) {
    const std::size_t len = total_of(a.iov);
    if (len > max_message || (a.inject && len > inject_max)) return -FI_EINVAL;
    peer* p = peer_of(a.dest);
    if (!p) return -FI_EINVAL;
    auto slot = take_tx_slot(false);
    if (!slot) return -FI_EAGAIN;
    const std::uint64_t flags = FI_SEND | (a.tagged ? FI_TAGGED : FI_MSG);
    const bool completion = a.completion && !a.inject;
    header h{};
    h.flags = static_cast<std::uint8_t>((a.tagged ? msg_tagged : 0) | (a.data ? msg_has_data : 0));
    h.tag = a.tag;
    h.data = a.data.value_or(0);
    h.length = len;
    auto done = [this, context = a.context, flags, len, completion](int status) {
        tx_done(context, flags, len, status, completion, cntr_send);
    };
    if (len <= eager_max) {
        h.kind = msg_kind::eager;
        auto out = tx_slot(*slot);
        const std::size_t n = encode(out, h, {}, {});
        gather(a.iov, 0, out.data() + n, len);
        when_connected(*p, [this, p, s = *slot, n = n + len, done](int status) {
            if (status) {
                free_tx_.push_back(s);
                done(status);
                return;
            }
            transmit(*p, s, n, done);
        });
        return 0;
    }
    // Large: the header now, the data as offers the receiver reads once it
    // has matched; the send completes when the last piece is read.
    h.kind = msg_kind::rts;
    auto& b = start_out_bulk(*p, std::move(a.iov), len, done);
    h.id = b.id;
    auto pieces = stage_pieces(b);
    const std::size_t n = encode(tx_slot(*slot), h, pieces, {});
    when_connected(*p, [this, p, s = *slot, n, id = b.id](int status) {
        if (status) {
            free_tx_.push_back(s);
            if (auto it = out_bulks_.find(id); it != out_bulks_.end()) {
                auto node = out_bulks_.extract(it);
                release_staging(*node.mapped());
                node.mapped()->done(status);
                restage();
            }
            return;
        }
        transmit(*p, s, n, [](int) {});
    });
    return 0;
}

// --- large transfers: the sending side ---

messenger::out_bulk& messenger::start_out_bulk(peer& p, std::vector<iovec> src, std::size_t total,
                                               std::function<void(int)> done, std::uint64_t id) {
    auto b = std::make_unique<out_bulk>();
    b->id = id ? id : next_id_++;
    b->to = &p;
    b->src = std::move(src);
    b->total = total;
    b->done = std::move(done);
    b->direct = register_directly(p.addr, b->src, total, vmrdma::access::remote_read);
    auto& ref = *b;
    out_bulks_.emplace(ref.id, std::move(b));
    return ref;
}

// A transfer's own memory, registered for its duration, where that is cheap
// (the engine in this process) and the memory is one run; else nullopt and
// the transfer goes through staging or landing memory, as on unix: and
// xen:, and to endpoints in this process (which read staging directly).
std::optional<vmrdma::region> messenger::register_directly(const peer_address& peer, const std::vector<iovec>& iov,
                                                           std::size_t total, vmrdma::access rights) {
    if (!ctx_.in_process_engine() || local_peer(peer) || iov.size() != 1 || iov[0].iov_len < total) return {};
    try {
        return vep_.register_memory(std::span(static_cast<std::byte*>(iov[0].iov_base), total), rights);
    } catch (const std::exception& e) {
        log_warning("vmrdma: staging a transfer (registering it failed: %s)", e.what());
        return {};
    }
}

// Gives back the staging memory a transfer's pieces hold.
void messenger::release_staging(out_bulk& b) {
    if (!b.direct)
        for (auto& [index, run] : b.out) staging_pool_.give(run.first, run.second);
    b.out.clear();
}

// Copies the next pieces into free staging memory (at most two out at a
// time, smaller when memory is short); the bulk waits when there is none.
std::vector<piece> messenger::stage_pieces(out_bulk& b) {
    std::vector<piece> pieces;
    if (b.direct) {  // the pieces are the source's own bytes
        while (b.out.size() < max_pieces_per_message && b.staged < b.total) {
            const std::size_t n = std::min(direct_piece_max, b.total - b.staged);
            piece pc{b.direct->key(), b.staged, b.staged, static_cast<std::uint32_t>(n), b.next_index++};
            b.out[pc.index] = {0, n};
            b.staged += n;
            pieces.push_back(pc);
        }
        return pieces;
    }
    while (b.out.size() < max_pieces_per_message && b.staged < b.total) {
        auto run = staging_pool_.take(std::min(piece_max, b.total - b.staged), true);
        if (!run) break;
        const auto [offset, n] = *run;
        gather(b.src, b.staged, staging_mem_.data() + offset, n);
        piece pc{staging_.key(), offset, b.staged, static_cast<std::uint32_t>(n), b.next_index++};
        b.out[pc.index] = {offset, n};
        b.staged += n;
        pieces.push_back(pc);
    }
    if (b.staged < b.total && b.out.size() < max_pieces_per_message && !b.waiting) {
        b.waiting = true;
        bulks_waiting_for_staging_.push_back(b.id);
    }
    return pieces;
}

void messenger::restage() {
    while (!bulks_waiting_for_staging_.empty() && staging_pool_.any_free()) {
        auto id = bulks_waiting_for_staging_.front();
        bulks_waiting_for_staging_.pop_front();
        auto it = out_bulks_.find(id);
        if (it == out_bulks_.end()) continue;
        auto& b = *it->second;
        b.waiting = false;
        auto pieces = stage_pieces(b);
        for (const auto& pc : pieces) {
            header h{};
            h.kind = msg_kind::offer;
            h.id = b.id;
            send_control(*b.to, h, std::span(&pc, 1), {});
        }
    }
}

void messenger::on_fin(const peer_address& from, const decoded& d) {
    auto it = out_bulks_.find(d.h.id);
    if (it == out_bulks_.end() || !(it->second->to->addr == from)) return;  // not theirs
    auto& b = *it->second;
    if (d.h.status == FI_ECANCELED) {
        // Discarded by the receiver: nothing more to send.
        b.acked = b.total;
        release_staging(b);
    } else {
        auto pos = b.out.find(static_cast<std::uint32_t>(d.h.addr));
        if (pos == b.out.end()) return;
        if (!b.direct) staging_pool_.give(pos->second.first, pos->second.second);
        b.acked += pos->second.second;
        b.out.erase(pos);
    }
    if (b.acked >= b.total) {
        auto done = std::move(b.done);
        out_bulks_.erase(it);
        if (done) done(d.h.status == FI_ECANCELED ? 0 : static_cast<int>(d.h.status));
    } else {
        for (const auto& pc : stage_pieces(b)) {
            header h{};
            h.kind = msg_kind::offer;
            h.id = b.id;
            send_control(*b.to, h, std::span(&pc, 1), {});
        }
    }
    restage();
}

// --- large transfers: the receiving side ---

messenger::in_bulk& messenger::start_in_bulk(const peer_address& from, std::uint64_t id, std::vector<iovec> dest,
                                             std::size_t total, std::function<void(int)> done) {
    auto b = std::make_unique<in_bulk>();
    b->from = from;
    b->id = id;
    b->dest = std::move(dest);
    b->total = total;
    b->done = std::move(done);
    auto& ref = *b;
    in_bulks_[{word_of(from), id}] = std::move(b);
    return ref;
}

void messenger::offer(in_bulk& b, const piece& p) {
    if (p.message_offset > b.total || p.length > b.total - p.message_offset) return;  // not part of it
    b.pending.push_back(p);
    pump(b);
}

// Starts reads of offered pieces while landing blocks are free (two per
// transfer at a time, so several transfers share them).
void messenger::pump(in_bulk& b) {
    if (!b.direct_tried) {
        b.direct_tried = true;
        b.direct = register_directly(b.from, b.dest, std::min(b.total, b.dest.empty() ? 0 : b.dest[0].iov_len),
                                     vmrdma::access::local_write);
    }
    while (!b.pending.empty() && b.reading < max_pieces_per_message && reads_in_flight_ < reads_max) {
        auto p = b.pending.front();
        // Straight into place when the piece lies inside the destination
        // (a truncated receive's tail goes through landing, to be cut); a
        // piece too large for any path is refused without landing memory.
        if ((b.direct && p.message_offset + p.length <= b.direct->memory().size()) || p.length > direct_piece_max) {
            b.pending.pop_front();
            read_piece(b, p, no_landing);
            continue;
        }
        auto run = landing_pool_.take(p.length, false);
        if (!run) break;
        b.pending.pop_front();
        read_piece(b, p, run->first);
    }
    if (!b.pending.empty() && !b.waiting) {
        b.waiting = true;
        reads_waiting_.push_back({word_of(b.from), b.id});
    }
}

void messenger::read_piece(in_bulk& b, piece p, std::size_t landing) {
    ++b.reading;
    ++reads_in_flight_;
    const auto key = std::make_pair(word_of(b.from), b.id);
    // After the piece: copy it into place, give back the block, tell the
    // sender, and finish the transfer with its last piece.
    auto landed = [this, key, p, landing](int status) {
        auto it = in_bulks_.find(key);
        if (landing != no_landing) landing_pool_.give(landing, p.length);
        --reads_in_flight_;
        if (it != in_bulks_.end()) {
            auto& bulk = *it->second;
            --bulk.reading;
            if (status)
                bulk.status = status;
            else if (landing != no_landing)
                scatter(bulk.dest, p.message_offset, private_mem_.data() + landing_offset(landing), p.length);
            bulk.received += p.length;
            header h{};
            h.kind = msg_kind::fin;
            h.id = bulk.id;
            h.addr = p.index;
            h.status = static_cast<std::uint32_t>(status);
            send_control(peer_at(bulk.from), h, {}, {});
            if (bulk.received >= bulk.total && bulk.reading == 0) {
                auto done = std::move(bulk.done);
                const int st = bulk.status;
                in_bulks_.erase(it);
                if (done) done(st);
            } else {
                pump(bulk);
            }
        }
        // Another transfer may be waiting for the block.
        while (!reads_waiting_.empty() && landing_pool_.any_free() && reads_in_flight_ < reads_max) {
            auto next = reads_waiting_.front();
            reads_waiting_.pop_front();
            if (auto w = in_bulks_.find(next); w != in_bulks_.end()) {
                w->second->waiting = false;
                pump(*w->second);
            }
        }
    };
    if (auto* local = local_peer(b.from)) {
        // Its staging memory is in this process.
        int status = 0;
        if (p.rkey != local->staging_.key() || p.region_offset > local->staging_mem_.size() ||
            p.length > local->staging_mem_.size() - p.region_offset || p.length > piece_max)
            status = FI_EACCES;
        else
            std::memcpy(private_mem_.data() + landing_offset(landing),
                        local->staging_mem_.data() + p.region_offset, p.length);
        landed(status);
        return;
    }
    if (p.length > direct_piece_max) {  // more than any sender offers, or landing memory holds
        landed(FI_EINVAL);
        return;
    }
    // Into landing memory, or straight into place (the destination's region
    // lives as long as the transfer, which waits for this read).
    const vmrdma::region* into = landing == no_landing ? &*b.direct : &private_;
    const std::uint64_t at = landing == no_landing ? p.message_offset : landing_offset(landing);
    auto& to = peer_at(b.from);
    when_connected(to, [this, pp = &to, p, into, at, landed](int status) {
        if (status) {
            landed(status);
            return;
        }
        ++pp->in_flight;
        scope_.spawn([this, pp, p, into, at, landed]() -> task<void> {
            int st = 0;
            try {
                co_await pp->conn->read(*into, at, vmrdma::remote_region{p.rkey, 0}, p.region_offset, p.length);
            } catch (const std::exception& e) {
                st = fi_errno_of(e);
                if (!shutting_down_) log_warning("vmrdma: %s", e.what());
            }
            ended_on(*pp, st);
            landed(st);
        });
    });
}

// --- receives ---

void messenger::start_slots() {
    for (std::uint32_t i = 0; i < rx_slots; ++i) {
        scope_.spawn([this, i]() -> task<void> {
            while (!stop_.stop_requested()) {
                vmrdma::recv_result r;
                bool failed = false;
                try {
                    r = co_await vep_.recv(private_, i * slot_size, static_cast<std::uint32_t>(slot_size), 0, 0,
                                           stop_.get_token());
                } catch (const std::exception&) {
                    failed = true;
                }
                if (stop_.stop_requested()) co_return;
                if (failed) {
                    // Every peer of the endpoint has gone (its connections
                    // are being let go), or the message was bad: post again
                    // a little later.
                    try {
                        co_await ctx_.loop().sleep_for(10ms, stop_.get_token());
                    } catch (const std::exception&) {
                        co_return;
                    }
                    continue;
                }
                handle(r.source, rx_slot(i).first(std::min<std::size_t>(r.length, slot_size)));
            }
        });
    }
}

// Sends move to the peer's connection only when nothing of ours is in flight
// on our own, so that the peer receives our messages in the order sent.
// Ours is closed then: the peer only ever received from it.
void messenger::move_to_offered(peer& p) {
    if (!p.offered || p.connecting || p.in_flight > 0 || shutting_down_) return;
    p.conn = std::move(p.offered);
    p.offered.reset();
    p.broken = false;
}

void messenger::start_accepting() {
    scope_.spawn([this]() -> task<void> {
        while (!stop_.stop_requested()) {
            std::optional<vmrdma::connection> c;
            try {
                c.emplace(co_await vep_.accept(stop_.get_token()));
            } catch (const std::exception&) {
            }
            if (stop_.stop_requested()) co_return;
            if (!c) {
                try {
                    co_await ctx_.loop().sleep_for(10ms, stop_.get_token());
                } catch (const std::exception&) {
                    co_return;
                }
                continue;
            }
            // The peer's messages come on it; ours to the peer go on it too
            // unless we already have a connection of our own, so that an
            // answer carries the engine's ACK of the request it answers
            // (instead of an ACK frame each way: docs/mpi.md, Connections).
            auto& p = peer_at(c->peer());
            if (!p.connecting && p.in_flight == 0 && (!p.conn || p.broken || !p.conn->is_open())) {
                p.conn.emplace(std::move(*c));
                p.broken = false;
                continue;
            }
            // Both connected at once: the connection the lower address made
            // is the one both send on (the other side keeps it, we move).
            if (address_key(p.addr) < address_key(address().peer()) && !p.offered) {
                p.offered.emplace(std::move(*c));
                move_to_offered(p);
                continue;
            }
            accepted_.push_back(std::move(*c));
            auto it = std::prev(accepted_.end());
            // Received from only; let go when the peer ends it.
            scope_.spawn([this, it]() -> task<void> {
                try {
                    co_await it->closed(stop_.get_token());
                } catch (const std::exception&) {
                    co_return;  // we are closing
                }
                if (!shutting_down_) accepted_.erase(it);
            });
        }
    });
}

void messenger::handle(const peer_address& from, std::span<const std::byte> bytes) {
    auto d = decode(bytes);
    if (!d) return;  // malformed: dropped
    switch (d->h.kind) {
    case msg_kind::eager:
    case msg_kind::rts: {
        incoming msg;
        msg.from = from;
        msg.m.src = ep_.av ? ep_.av->lookup(from) : FI_ADDR_NOTAVAIL;
        msg.m.tagged = d->h.flags & msg_tagged;
        msg.m.tag = d->h.tag;
        if (d->h.flags & msg_has_data) msg.m.data = d->h.data;
        msg.m.length = d->h.length;
        if (d->h.kind == msg_kind::rts) {
            if (d->h.length <= eager_max || d->h.length > max_message) return;
            msg.rendezvous = true;
            msg.bulk = d->h.id;
            msg.pieces.assign(d->pieces, d->pieces + d->h.pieces);
        } else {
            if (d->inline_data.size() != d->h.length) return;
            msg.view = d->inline_data;
        }
        on_incoming(std::move(msg));
        return;
    }
    case msg_kind::offer: {
        if (d->h.pieces != 1) return;
        if (auto it = in_bulks_.find({word_of(from), d->h.id}); it != in_bulks_.end()) {
            offer(*it->second, d->pieces[0]);
            return;
        }
        // A large message still waiting for its receive keeps its offers.
        for (auto* list : {&unexpected_tagged_, &unexpected_msg_})
            for (auto& m : *list)
                if (m.rendezvous && m.bulk == d->h.id && m.from == from) {
                    m.pieces.push_back(d->pieces[0]);
                    return;
                }
        return;
    }
    case msg_kind::fin: on_fin(from, *d); return;
    case msg_kind::write:
    case msg_kind::read_req:
    case msg_kind::atomic: on_rma_request(from, *d); return;
    case msg_kind::write_ack:
    case msg_kind::read_resp:
    case msg_kind::atomic_resp: {
        auto it = ops_.find(d->h.id);
        if (it == ops_.end() || !(it->second->to->addr == from)) return;  // not one of ours to them
        on_rma_answer(*d);
        return;
    }
    }
}

bool messenger::matches(const posted& r, const incoming& msg) const {
    if (r.tagged && ((msg.m.tag ^ r.tag) & ~r.ignore) != 0) return false;
    const bool directed = ep_.info && (ep_.info->caps & FI_DIRECTED_RECV);
    return !directed || r.src == FI_ADDR_UNSPEC || r.src == msg.m.src;
}

void messenger::on_incoming(incoming msg) {
    auto& list = posted_list(msg.m.tagged);
    for (auto it = list.begin(); it != list.end(); ++it) {
        if (!matches(**it, msg)) continue;
        auto r = *it;
        if (deliver(r, msg)) list.erase(std::find(list.begin(), list.end(), r));
        return;
    }
    if (!msg.view.empty()) {
        msg.kept.assign(msg.view.begin(), msg.view.end());
        msg.view = {};
    }
    unexpected_list(msg.m.tagged).push_back(std::move(msg));
}

// Places a matched message into receive r; true when r is used up.
bool messenger::deliver(const std::shared_ptr<posted>& r, incoming& msg) {
    const std::size_t room = r->capacity - r->used;
    const std::size_t placed = std::min(msg.m.length, room);
    auto dest = slice(r->iov, r->used, placed);
    void* buf = dest.empty() ? (r->iov.empty() ? nullptr : static_cast<std::byte*>(r->iov[0].iov_base) + r->used)
                             : dest[0].iov_base;
    bool used_up = true;
    if (r->multi) {
        r->used += placed;
        if (r->capacity - r->used < ep_.min_multi_recv) r->released = true;
        used_up = r->released;
    }
    if (!msg.rendezvous) {
        auto bytes = msg.bytes();
        scatter(dest, 0, bytes.data(), placed);
        complete_recv(*r, msg.m, placed, buf, 0);
        return used_up;
    }
    ++r->outstanding;
    auto& b = start_in_bulk(msg.from, msg.bulk, std::move(dest), msg.m.length,
                            [this, r, m = msg.m, placed, buf](int status) {
                                --r->outstanding;
                                complete_recv(*r, m, placed, buf, status);
                            });
    for (const auto& pc : msg.pieces) offer(b, pc);
    return used_up;
}

void messenger::complete_recv(posted& r, const meta& m, std::size_t placed, void* buf, int status) {
    if (shutting_down_) return;
    std::uint64_t flags = FI_RECV | (m.tagged ? FI_TAGGED : FI_MSG) | (m.data ? FI_REMOTE_CQ_DATA : 0);
    if (r.multi && r.released && r.outstanding == 0 && !r.release_reported) {
        flags |= FI_MULTI_RECV;
        r.release_reported = true;
    }
    if (!status && m.length > placed) status = FI_ETRUNC;
    if (status) {
        if (ep_.rx_cq) {
            fi_cq_err_entry err{};
            err.op_context = r.context;
            err.flags = flags;
            err.len = placed;
            err.buf = buf;
            err.data = m.data.value_or(0);
            err.tag = m.tag;
            err.olen = m.length > placed ? m.length - placed : 0;
            err.err = status;
            err.prov_errno = status;
            ep_.rx_cq->push_error(err);
        }
        if (auto* c = ep_.cntrs[cntr_recv]) c->add_error(1);
        return;
    }
    if (ep_.rx_cq && (r.completion || (flags & FI_MULTI_RECV))) {
        cq_entry e;
        e.e.op_context = r.context;
        e.e.flags = flags;
        e.e.len = placed;
        e.e.buf = buf;
        e.e.data = m.data.value_or(0);
        e.e.tag = m.tag;
        e.src = m.src;
        ep_.rx_cq->push(e);
    }
    if (auto* c = ep_.cntrs[cntr_recv]) c->add(1);
}

void messenger::discard(incoming& msg) {
    if (!msg.rendezvous) return;
    // The sender is told to stop: its send completes.
    header h{};
    h.kind = msg_kind::fin;
    h.id = msg.bulk;
    h.status = FI_ECANCELED;
    send_control(peer_at(msg.from), h, {}, {});
}

ssize_t messenger::peek(const recv_args& a) {
    posted probe;
    probe.tagged = a.tagged;
    probe.tag = a.tag;
    probe.ignore = a.ignore;
    probe.src = a.src;
    auto& list = unexpected_list(a.tagged);
    auto it = std::find_if(list.begin(), list.end(),
                           [&](const incoming& m) { return !m.claimed && matches(probe, m); });
    const std::uint64_t base = FI_RECV | (a.tagged ? FI_TAGGED : FI_MSG);
    if (it == list.end()) {
        if (ep_.rx_cq) {
            fi_cq_err_entry err{};
            err.op_context = a.context;
            err.flags = base;
            err.tag = a.tag;
            err.err = FI_ENOMSG;
            ep_.rx_cq->push_error(err);
        }
        return 0;
    }
    if (ep_.rx_cq) {
        cq_entry e;
        e.e.op_context = a.context;
        e.e.flags = base | (it->m.data ? FI_REMOTE_CQ_DATA : 0);
        e.e.len = it->m.length;
        e.e.data = it->m.data.value_or(0);
        e.e.tag = it->m.tag;
        e.src = it->m.src;
        ep_.rx_cq->push(e);
    }
    if (a.flags & FI_DISCARD) {
        discard(*it);
        list.erase(it);
    } else if (a.flags & FI_CLAIM) {
        it->claimed = true;
        it->claimer = a.context;
    }
    return 0;
}

ssize_t messenger::recv(recv_args a) {
    if (a.flags & FI_PEEK) return peek(a);
    auto r = std::make_shared<posted>();
    r->capacity = total_of(a.iov);
    r->iov = std::move(a.iov);
    r->src = a.src;
    r->context = a.context;
    r->tagged = a.tagged;
    r->tag = a.tag;
    r->ignore = a.ignore;
    r->completion = a.completion;
    r->multi = !a.tagged && (a.flags & FI_MULTI_RECV);
    auto& list = unexpected_list(a.tagged);
    if (a.flags & FI_CLAIM) {
        // The message an earlier FI_PEEK|FI_CLAIM reserved for this context.
        auto it = std::find_if(list.begin(), list.end(),
                               [&](const incoming& m) { return m.claimed && m.claimer == a.context; });
        if (it == list.end()) return -FI_EINVAL;
        if (a.flags & FI_DISCARD) {
            discard(*it);
            const meta m = it->m;
            list.erase(it);
            r->capacity = 0;
            meta none = m;
            none.length = 0;
            complete_recv(*r, none, 0, nullptr, 0);
            return 0;
        }
        deliver(r, *it);
        list.erase(it);
        return 0;
    }
    for (auto it = list.begin(); it != list.end();) {
        if (it->claimed || !matches(*r, *it)) {
            ++it;
            continue;
        }
        const bool used_up = deliver(r, *it);
        it = list.erase(it);
        if (used_up) return 0;
    }
    posted_list(r->tagged).push_back(std::move(r));
    return 0;
}

int messenger::cancel(void* context) {
    for (auto* list : {&posted_tagged_, &posted_msg_}) {
        for (auto it = list->begin(); it != list->end(); ++it) {
            auto& r = **it;
            if (r.context != context) continue;
            if (ep_.rx_cq) {
                fi_cq_err_entry err{};
                err.op_context = context;
                err.flags = FI_RECV | (r.tagged ? FI_TAGGED : FI_MSG) | (r.multi ? FI_MULTI_RECV : 0);
                err.tag = r.tag;
                err.err = FI_ECANCELED;
                ep_.rx_cq->push_error(err);
            }
            list->erase(it);
            return 0;
        }
    }
    return 0;  // nothing posted under it (it may have completed already)
}

// --- RMA and atomics: the initiator ---

ssize_t messenger::rma(rma_args a) {
    peer* p = peer_of(a.dest);
    if (!p) return -FI_EINVAL;
    header h{};
    h.kind = a.kind;
    h.key = a.key;
    h.addr = a.addr;
    auto op = std::make_unique<pending_op>();
    op->to = p;
    op->context = a.context;
    op->completion = a.completion && !a.inject;
    std::vector<std::byte> inline_data;
    std::size_t len = total_of(a.local);
    bool large = false;
    switch (a.kind) {
    case msg_kind::write:
        if (len > max_message || (a.inject && len > inject_max)) return -FI_EINVAL;
        op->flags = FI_RMA | FI_WRITE;
        op->cntr = cntr_write;
        h.length = len;
        if (a.data) {
            h.flags |= msg_has_data;
            h.data = *a.data;
        }
        large = len > eager_max;
        if (large) h.flags |= msg_offered;
        if (!large) {
            inline_data.resize(len);
            gather(a.local, 0, inline_data.data(), len);
        }
        break;
    case msg_kind::read_req:
        if (len > max_message) return -FI_EINVAL;
        op->flags = FI_RMA | FI_READ;
        op->cntr = cntr_read;
        h.length = len;
        op->result = std::move(a.local);
        break;
    case msg_kind::atomic: {
        const std::size_t size = atomic_size(a.datatype);
        const std::size_t bytes = size * a.count;
        if (!size || a.count == 0 || 2 * bytes > inject_max) return -FI_EINVAL;
        const bool compare = a.op >= FI_CSWAP && a.op <= FI_MSWAP;
        const bool fetch = !a.result.empty() || compare;
        const auto kind = compare ? atomic_kind::compare : fetch ? atomic_kind::fetch : atomic_kind::base;
        if (!atomic_valid(kind, a.op, a.datatype)) return -FI_EOPNOTSUPP;
        if ((a.op != FI_ATOMIC_READ && total_of(a.local) < bytes) || (compare && total_of(a.compare) < bytes) ||
            (fetch && total_of(a.result) < bytes))
            return -FI_EINVAL;
        op->flags = FI_ATOMIC | (fetch ? FI_READ : FI_WRITE);
        op->cntr = fetch ? cntr_read : cntr_write;
        h.atomic_op = static_cast<std::uint8_t>(a.op);
        h.datatype = static_cast<std::uint8_t>(a.datatype);
        h.length = a.count;
        if (fetch) h.flags |= msg_fetch;
        inline_data.resize((a.op != FI_ATOMIC_READ ? bytes : 0) + (compare ? bytes : 0));
        if (a.op != FI_ATOMIC_READ) gather(a.local, 0, inline_data.data(), bytes);
        if (compare) gather(a.compare, 0, inline_data.data() + (a.op != FI_ATOMIC_READ ? bytes : 0), bytes);
        op->result = std::move(a.result);
        len = bytes;
        break;
    }
    default: return -FI_EINVAL;
    }
    op->len = len;
    auto slot = take_tx_slot(false);
    if (!slot) return -FI_EAGAIN;
    const std::uint64_t id = next_id_++;
    h.id = id;
    std::vector<piece> pieces;
    if (large) {
        // The target reads the data as offers; the write completes on its answer.
        auto& b = start_out_bulk(*p, std::move(a.local), len,
                                 [this, id](int status) {
                                     if (status) finish_op(id, status);
                                 },
                                 id);
        pieces = stage_pieces(b);
    }
    ops_.emplace(id, std::move(op));
    const std::size_t n = encode(tx_slot(*slot), h, pieces, inline_data);
    when_connected(*p, [this, p, s = *slot, n, id](int status) {
        if (status) {
            free_tx_.push_back(s);
            finish_op(id, status);
            return;
        }
        transmit(*p, s, n, [this, id](int st) {
            if (st) finish_op(id, st);
        });
    });
    return 0;
}

void messenger::finish_op(std::uint64_t id, int status) {
    auto node = ops_.extract(id);
    if (node.empty()) return;
    auto& op = *node.mapped();
    if (auto b = out_bulks_.find(id); b != out_bulks_.end()) {
        release_staging(*b->second);
        out_bulks_.erase(b);
        restage();
    }
    tx_done(op.context, op.flags, op.len, status, op.completion, op.cntr);
}

void messenger::on_rma_answer(const decoded& d) {
    auto it = ops_.find(d.h.id);
    if (it == ops_.end()) return;
    auto& op = *it->second;
    if (d.h.status) {
        finish_op(d.h.id, static_cast<int>(d.h.status));
        return;
    }
    switch (d.h.kind) {
    case msg_kind::write_ack: finish_op(d.h.id, 0); return;
    case msg_kind::atomic_resp:
        scatter(op.result, 0, d.inline_data.data(), d.inline_data.size());
        finish_op(d.h.id, 0);
        return;
    case msg_kind::read_resp: {
        if (!(d.h.flags & msg_offered)) {
            scatter(op.result, 0, d.inline_data.data(), d.inline_data.size());
            finish_op(d.h.id, 0);
            return;
        }
        const auto id = d.h.id;
        auto& b = start_in_bulk(op.to->addr, d.h.key, op.result, d.h.length,
                                [this, id](int status) { finish_op(id, status); });
        for (unsigned i = 0; i < d.h.pieces; ++i) offer(b, d.pieces[i]);
        return;
    }
    default: return;
    }
}

// --- RMA and atomics: the target ---

void messenger::on_rma_request(const peer_address& from, const decoded& d) {
    auto& p = peer_at(from);
    header answer{};
    answer.id = d.h.id;
    auto refuse = [&](msg_kind kind, int err) {
        log_warning("vmrdma: refused %s of %llu bytes at %#llx with key %#llx: %s",
                    d.h.kind == msg_kind::write ? "a write" : d.h.kind == msg_kind::read_req ? "a read" : "an atomic",
                    static_cast<unsigned long long>(d.h.length), static_cast<unsigned long long>(d.h.addr),
                    static_cast<unsigned long long>(d.h.key), fi_strerror(err));
        answer.kind = kind;
        answer.status = static_cast<std::uint32_t>(err);
        send_control(p, answer, {}, {});
    };
    int err = 0;
    mr_obj* mr = nullptr;
    switch (d.h.kind) {
    case msg_kind::write: {
        std::byte* mem = ep_.dom->target(d.h.key, d.h.addr, d.h.length, FI_REMOTE_WRITE, err, &mr);
        if (!mem) return refuse(msg_kind::write_ack, err);
        const std::size_t len = d.h.length;
        const std::optional<std::uint64_t> data =
            (d.h.flags & msg_has_data) ? std::optional<std::uint64_t>(d.h.data) : std::nullopt;
        // Placed: counted, reported with its data, answered.
        auto placed = [this, pp = &p, len, data, id = d.h.id, cntr = mr ? mr->cntr : nullptr](int status) {
            if (!status) {
                if (auto* c = ep_.cntrs[cntr_remote_write]) c->add(1);
                if (cntr) cntr->add(1);
                if (data && ep_.rx_cq) {
                    cq_entry e;
                    e.e.flags = FI_RMA | FI_REMOTE_WRITE | FI_REMOTE_CQ_DATA;
                    e.e.len = len;
                    e.e.data = *data;
                    ep_.rx_cq->push(e);
                }
            }
            header ack{};
            ack.kind = msg_kind::write_ack;
            ack.id = id;
            ack.status = static_cast<std::uint32_t>(status);
            send_control(*pp, ack, {}, {});
        };
        if (!(d.h.flags & msg_offered)) {
            if (d.inline_data.size() != len) return refuse(msg_kind::write_ack, FI_EINVAL);
            std::memcpy(mem, d.inline_data.data(), len);
            placed(0);
            return;
        }
        auto& b = start_in_bulk(from, d.h.id, {iovec{mem, len}}, len, placed);
        for (unsigned i = 0; i < d.h.pieces; ++i) offer(b, d.pieces[i]);
        return;
    }
    case msg_kind::read_req: {
        std::byte* mem = ep_.dom->target(d.h.key, d.h.addr, d.h.length, FI_REMOTE_READ, err, &mr);
        if (!mem) return refuse(msg_kind::read_resp, err);
        if (auto* c = ep_.cntrs[cntr_remote_read]) c->add(1);
        if (mr && mr->cntr) mr->cntr->add(1);
        answer.kind = msg_kind::read_resp;
        answer.length = d.h.length;
        if (d.h.length <= eager_max) {
            send_control(p, answer, {}, std::span<const std::byte>(mem, d.h.length));
            return;
        }
        auto& b = start_out_bulk(p, {iovec{mem, d.h.length}}, d.h.length, nullptr);
        answer.key = b.id;
        answer.flags = msg_offered;
        auto pieces = stage_pieces(b);
        send_control(p, answer, pieces, {});
        return;
    }
    case msg_kind::atomic: {
        const int op = d.h.atomic_op, dt = d.h.datatype;
        const std::size_t size = atomic_size(dt), count = d.h.length;
        const bool compare = op >= FI_CSWAP && op <= FI_MSWAP;
        const bool fetch = d.h.flags & msg_fetch;
        const auto kind = compare ? atomic_kind::compare : fetch ? atomic_kind::fetch : atomic_kind::base;
        if (!size || !count || count > inject_max || !atomic_valid(kind, op, dt))
            return refuse(msg_kind::atomic_resp, FI_EOPNOTSUPP);
        const std::size_t bytes = size * count;
        const std::size_t operand_bytes = op == FI_ATOMIC_READ ? 0 : bytes;
        if (d.inline_data.size() != operand_bytes + (compare ? bytes : 0))
            return refuse(msg_kind::atomic_resp, FI_EINVAL);
        const std::uint64_t access = op == FI_ATOMIC_READ ? FI_REMOTE_READ
                                     : fetch            ? FI_REMOTE_READ | FI_REMOTE_WRITE
                                                        : FI_REMOTE_WRITE;
        std::byte* mem = ep_.dom->target(d.h.key, d.h.addr, bytes, access, err, &mr);
        if (!mem) return refuse(msg_kind::atomic_resp, err);
        std::vector<std::byte> previous(fetch ? bytes : 0);
        atomic_apply(op, dt, mem, operand_bytes ? d.inline_data.data() : nullptr,
                     compare ? d.inline_data.data() + operand_bytes : nullptr, fetch ? previous.data() : nullptr,
                     count);
        if (auto* c = ep_.cntrs[op == FI_ATOMIC_READ ? cntr_remote_read : cntr_remote_write]) c->add(1);
        if (mr && mr->cntr) mr->cntr->add(1);
        answer.kind = msg_kind::atomic_resp;
        answer.length = count;
        send_control(p, answer, {}, previous);
        return;
    }
    default: return;
    }
}

}  // namespace vmrdma::fabric
