// One RDM endpoint's protocol over a vmrdma endpoint (docs/mpi.md,
// "Messages" and "RMA and atomics"): the receive slots it keeps posted, the
// connections it makes to peers, matching of posted receives and unexpected
// messages, large transfers as offers of staged pieces, and the target side
// of RMA and atomics. Everything runs on the device's loop with the
// device's mutex held.
#pragma once

#include <rdma/fabric.h>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <list>
#include <map>
#include <optional>
#include <span>
#include <stop_token>
#include <sys/uio.h>
#include <unordered_map>
#include <vector>

#include "fabric/block_pool.hpp"
#include "fabric/objects.hpp"
#include "fabric/wire_msg.hpp"
#include "vmrdma/registrable.hpp"

namespace vmrdma::fabric {

// A send as the application posted it (fi_send*, fi_tsend*, fi_inject*).
struct send_args {
    std::vector<iovec> iov;
    fi_addr_t dest = FI_ADDR_UNSPEC;
    void* context = nullptr;
    bool tagged = false;
    std::uint64_t tag = 0;
    std::optional<std::uint64_t> data;  // remote CQ data
    bool inject = false;                // no completion, buffer copied now
    bool completion = true;             // a CQ entry when done
};

// A receive (fi_recv*, fi_trecv*).
struct recv_args {
    std::vector<iovec> iov;
    fi_addr_t src = FI_ADDR_UNSPEC;
    void* context = nullptr;
    bool tagged = false;
    std::uint64_t tag = 0, ignore = 0;
    std::uint64_t flags = 0;  // FI_PEEK, FI_CLAIM, FI_DISCARD, FI_MULTI_RECV
    bool completion = true;
};

// fi_read*, fi_write*, fi_*atomic*.
struct rma_args {
    msg_kind kind = msg_kind::write;  // write, read_req or atomic
    std::vector<iovec> local;         // write/atomic: the source; read: the destination
    std::vector<iovec> result;        // fetching atomics: the previous values
    std::vector<iovec> compare;       // compare atomics
    fi_addr_t dest = FI_ADDR_UNSPEC;
    std::uint64_t addr = 0, key = 0;
    std::optional<std::uint64_t> data;  // fi_writedata
    int op = 0, datatype = 0;           // atomics
    std::size_t count = 0;              // atomics: elements
    void* context = nullptr;
    bool inject = false;
    bool completion = true;
};

class messenger {
public:
    messenger(ep_obj& owner, vmrdma::endpoint endpoint);
    ~messenger();
    messenger(const messenger&) = delete;
    messenger& operator=(const messenger&) = delete;

    fabric_address address() const;
    // Each returns 0, or a negative FI_ errno (-FI_EAGAIN: no room now).
    ssize_t send(send_args a);
    ssize_t recv(recv_args a);
    ssize_t rma(rma_args a);
    int cancel(void* context);
    std::size_t tx_room() const;
    std::size_t rx_room() const;
    // Stops everything and waits (turning the loop) until nothing runs.
    void shutdown();

private:
    struct peer;
    struct out_bulk;
    struct in_bulk;
    struct incoming;
    struct posted;
    struct pending_op;

    // memory
    std::span<std::byte> rx_slot(std::uint32_t i);
    std::span<std::byte> tx_slot(std::uint32_t i);
    std::uint64_t tx_slot_offset(std::uint32_t i) const;
    std::uint64_t landing_offset(std::size_t offset) const;
    std::optional<std::uint32_t> take_tx_slot(bool control);

    // connections and sending
    peer* peer_of(fi_addr_t addr);
    peer& peer_at(const peer_address& a);
    void when_connected(peer& p, std::function<void(int)> then);
    void connect(peer& p);
    void transmit(peer& p, std::uint32_t slot, std::size_t len, std::function<void(int)> done);
    void send_control(peer& p, const header& h, std::span<const piece> pieces, std::span<const std::byte> data);
    void flush_control();

    // in-process delivery (to oneself, or another endpoint of this device here)
    messenger* local_peer(const peer_address& a) const;
    void handle(const peer_address& from, std::span<const std::byte> bytes);
    void fail_peer(peer& p, int status);

    // the receive side
    void start_slots();
    void start_accepting();
    void move_to_offered(peer& p);
    void ended_on(peer& p, int status);
    void on_message(std::uint32_t slot, std::size_t len, const peer_address& from);
    void on_incoming(incoming msg);
    struct meta;
    bool matches(const posted& r, const incoming& msg) const;
    bool deliver(const std::shared_ptr<posted>& r, incoming& msg);
    void complete_recv(posted& r, const meta& m, std::size_t placed, void* buf, int status);
    std::list<std::shared_ptr<posted>>& posted_list(bool tagged) { return tagged ? posted_tagged_ : posted_msg_; }
    std::list<incoming>& unexpected_list(bool tagged) { return tagged ? unexpected_tagged_ : unexpected_msg_; }
    ssize_t peek(const recv_args& a);
    void discard(incoming& msg);

    // large transfers
    out_bulk& start_out_bulk(peer& p, std::vector<iovec> src, std::size_t total, std::function<void(int)> done,
                             std::uint64_t id = 0);
    std::optional<vmrdma::region> register_directly(const peer_address& peer, const std::vector<iovec>& iov,
                                                    std::size_t total, vmrdma::access rights);
    void release_staging(out_bulk& b);
    std::vector<piece> stage_pieces(out_bulk& b);
    void restage();
    void on_fin(const peer_address& from, const decoded& d);
    in_bulk& start_in_bulk(const peer_address& from, std::uint64_t id, std::vector<iovec> dest, std::size_t total,
                           std::function<void(int)> done);
    void offer(in_bulk& b, const piece& p);
    void pump(in_bulk& b);
    void read_piece(in_bulk& b, piece p, std::size_t landing);

    // RMA and atomics
    void on_rma_request(const peer_address& from, const decoded& d);
    void on_rma_answer(const decoded& d);
    void finish_op(std::uint64_t id, int status);

    // completions
    void tx_done(void* context, std::uint64_t flags, std::size_t len, int status, bool completion, int cntr);

    ep_obj& ep_;
    device_context& ctx_;
    vmrdma::endpoint vep_;
    vmrdma::registrable_buffer private_mem_;
    vmrdma::registrable_buffer staging_mem_;
    vmrdma::region private_;
    vmrdma::region staging_;
    std::vector<std::uint32_t> free_tx_;
    block_pool staging_pool_;
    block_pool landing_pool_;
    std::stop_source stop_;
    vmrdma::async_scope scope_;
    bool shutting_down_ = false;

    std::unordered_map<std::uint64_t, peer> peers_;  // by address_key
    std::list<vmrdma::connection> accepted_;
    std::list<std::shared_ptr<posted>> posted_tagged_, posted_msg_;
    std::list<incoming> unexpected_tagged_, unexpected_msg_;
    std::deque<std::function<void()>> control_waiting_;  // control messages waiting for a slot
    std::uint64_t next_id_ = 1;
    std::unordered_map<std::uint64_t, std::unique_ptr<out_bulk>> out_bulks_;
    std::deque<std::uint64_t> bulks_waiting_for_staging_;
    std::map<std::pair<std::uint64_t, std::uint64_t>, std::unique_ptr<in_bulk>> in_bulks_;  // (peer, id)
    std::deque<std::pair<std::uint64_t, std::uint64_t>> reads_waiting_;  // in_bulks waiting to read
    std::uint32_t reads_in_flight_ = 0;
    std::unordered_map<std::uint64_t, std::unique_ptr<pending_op>> ops_;  // RMA, atomics, rendezvous sends
};

}  // namespace vmrdma::fabric
