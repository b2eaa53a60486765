#include "engine_transport.hpp"

#include <cerrno>

#include "engine_status.hpp"

extern "C" {
#include "proto/service.h"
}

namespace vmrdma::detail {
namespace {
// What an ACCEPT or CONNECT needs when its connection is made: where the
// peer's private data goes (proto/service.h).
vr_svc_pending pending_of(const vr_ring_req& req) {
    vr_svc_pending p{};
    p.cookie = req.cookie;
    p.opcode = req.opcode;
    p.ep = req.ep;
    p.lkey = req.lkey;
    p.loff = req.loff;
    p.room = req.operand;
    return p;
}
}  // namespace

engine_transport::engine_transport(event_loop& loop, completion_sink& sink, std::string_view ifname,
                                   const device_options& options)
    : sink_(sink), host_(loop, *this, ifname, options) {}

engine_transport::~engine_transport() {
    // ACCEPTs no connection came for end like the engine's operations.
    for (auto& [ep, l] : listeners_)
        for (auto& a : std::exchange(l.accepts, {})) end_accept(ep, a.cookie);
    host_.destroy();  // every operation completes (with -ECANCELED) here
}

void engine_transport::open_endpoint(std::uint16_t id, const endpoint_options& options) {
    if (int rc = vr_ep_open(host_.engine(), id, options.weight, options.listen); rc < 0) {
        if (rc == -EEXIST) throw error(errc::invalid_argument, "endpoint " + std::to_string(id) + " is already open");
        if (rc == -EBUSY)
            throw error(errc::resources_exhausted,
                        "endpoint " + std::to_string(id) + " is still closing (its DISCONNECTs are not out yet)");
        throw error(code_from_status(rc), "cannot open endpoint " + std::to_string(id));
    }
    if (options.listen) listeners_[id] = {};
}

void engine_transport::close_endpoint(std::uint16_t id) noexcept {
    vr_ep_close(host_.engine(), id);  // fails its operations and disconnects its connections
    if (auto it = listeners_.find(id); it != listeners_.end()) {
        auto accepts = std::move(it->second.accepts);
        listeners_.erase(it);
        for (auto& a : accepts) end_accept(id, a.cookie);
    }
    host_.want_flush();  // the DISCONNECTs
}

void engine_transport::set_weight(std::uint16_t ep, std::uint32_t weight) {
    if (int rc = vr_ep_set_weight(host_.engine(), ep, weight); rc < 0)
        throw error(code_from_status(rc), "cannot set the weight (1.." + std::to_string(VR_WEIGHT_MAX) + ")");
}

std::uint64_t engine_transport::register_memory(std::uint16_t ep, std::span<std::byte> memory,
                                                std::uint32_t access) {
    std::uint64_t key = 0;
    if (int rc = vr_reg_mr(host_.engine(), ep, memory.data(), memory.size(), access, &key); rc < 0)
        throw error(code_from_status(rc), "memory registration failed");
    return key;
}

void engine_transport::deregister(std::uint64_t key) noexcept {
    vr_dereg_mr(host_.engine(), key);
    host_.want_flush();
}

int engine_transport::post(const vr_ring_req& req) noexcept {
    if (req.opcode == VR_RING_CLOSED) {
        int state = vr_conn_state(host_.engine(), req.conn);
        if (state == VR_CONN_CONNECTED || state == VR_CONN_CONNECTING) {
            closed_waiters_[req.conn].push_back(req.cookie);
        } else {
            // Already over: the engine failed it (or it is gone).
            auto why = ended_.find(req.conn);
            complete_closed(req.cookie, req.conn, 0, why != ended_.end() ? why->second : ECONNRESET);
        }
        return 0;
    }
    if (req.opcode == VR_RING_ACCEPT) {
        auto it = listeners_.find(req.ep);
        if (it == listeners_.end()) return -EINVAL;  // not open, or not listening
        auto& l = it->second;
        if (!l.backlog.empty()) {
            auto arrival = l.backlog.front();
            l.backlog.pop_front();
            hand_over(pending_of(req), arrival);
        } else {
            l.accepts.push_back(pending_of(req));
        }
        return 0;
    }
    // Kept before the post: the completion may come from inside it.
    if (req.opcode == VR_RING_CONNECT) connects_[req.cookie] = pending_of(req);
    std::uint32_t new_conn = 0;
    int rc = vr_svc_post(host_.engine(), &req, req.conn, req.cookie, &new_conn);
    if (rc != 0) {
        connects_.erase(req.cookie);
        return rc;
    }
    host_.want_flush();
    if (req.opcode == VR_RING_LISTEN) listeners_.try_emplace(req.ep);  // its ACCEPTs are taken from now on
    if (req.opcode == VR_RING_ACCEPT_DATA || req.opcode == VR_RING_NAME || req.opcode == VR_RING_PD_ALLOC ||
        req.opcode == VR_RING_PD_FREE || req.opcode == VR_RING_PD_BIND || req.opcode == VR_RING_AUTH_KEY ||
        req.opcode == VR_RING_LISTEN) {
        vr_completion wc{};  // done: the engine answers these at once
        wc.cookie = req.cookie;
        wc.ep = req.ep;
        if (req.opcode == VR_RING_PD_ALLOC) wc.value = new_conn;  // the domain
        sink_.completed(wc);
    }
    return 0;
}

// device_core posts one from inside the engine's CONNECT or ACCEPT
// completion too: the engine raises those as its last step, so disconnecting
// there is safe (proto/frontend.c does the same).
void engine_transport::post_detached(const vr_ring_req& req) {
    if (req.opcode != VR_RING_DISCONNECT) return;  // nothing else is posted detached
    end_closed(req.conn, -ECANCELED, 0);  // closed here: nothing left to wait for
    ended_.erase(req.conn);
    vr_disconnect(host_.engine(), req.conn);
    host_.want_flush();
}

// The engine's pools: operations per connection, posted receives per endpoint.
std::uint64_t engine_transport::room_of(const vr_ring_req& req) const noexcept {
    if (req.opcode == VR_RING_RECV) return (std::uint64_t{1} << 32) | req.ep;
    if (req.opcode == VR_RING_CLOSED) return (std::uint64_t{2} << 32) | req.conn;  // takes no pool's place
    if (req.opcode == VR_RING_RESOLVE) return std::uint64_t{3} << 32;  // the engine's few questions at a time
    return req.conn;
}

// Only a waiting ACCEPT or CLOSED can end early; the engine's operations are on the wire.
void engine_transport::cancel(std::uint64_t cookie) noexcept {
    for (auto& [conn, cookies] : closed_waiters_)
        for (auto it = cookies.begin(); it != cookies.end(); ++it)
            if (*it == cookie) {
                cookies.erase(it);
                complete_closed(cookie, conn, -ECANCELED, 0);
                return;
            }
    for (auto& [ep, l] : listeners_)
        for (auto it = l.accepts.begin(); it != l.accepts.end(); ++it)
            if (it->cookie == cookie) {
                l.accepts.erase(it);
                end_accept(ep, cookie);
                return;
            }
}

void engine_transport::end_accept(std::uint16_t ep, std::uint64_t cookie) {
    vr_completion wc{};
    wc.cookie = cookie;
    wc.op = VR_WC_CONNECT;
    wc.ep = ep;
    wc.status = -ECANCELED;
    sink_.completed(wc);
}

void engine_transport::engine_completion(const vr_completion& wc) {
    if (wc.op == VR_WC_ACCEPT) {
        accepted(wc.ep, wc.conn, wc.value);
    } else if (wc.op == VR_WC_DISCONNECT) {
        failed(wc.conn, wc.status);
    } else if (wc.op == VR_WC_CONNECT) {
        auto it = connects_.find(wc.cookie);
        vr_completion c = wc;
        if (it != connects_.end()) {
            if (c.status == 0) {
                c.status = vr_svc_peer_data(host_.engine(), &it->second, wc.conn, &c.bytes);
                if (c.status != 0) vr_disconnect(host_.engine(), wc.conn);  // its buffer is gone
            }
            connects_.erase(it);
        }
        sink_.completed(c);
    } else {
        sink_.completed(wc);
    }
}

// A listening endpoint's new connection: the oldest waiting ACCEPT takes it,
// else it waits for one.
void engine_transport::accepted(std::uint16_t ep, std::uint32_t conn, std::uint64_t peer) {
    auto& l = listeners_[ep];
    if (l.accepts.empty()) {
        l.backlog.push_back({conn, peer, false});
        return;
    }
    auto accept = l.accepts.front();
    l.accepts.pop_front();
    hand_over(accept, {conn, peer, false});
}

void engine_transport::complete_closed(std::uint64_t cookie, std::uint32_t conn, int status, std::uint64_t why) {
    vr_completion wc{};
    wc.cookie = cookie;
    wc.op = VR_WC_DISCONNECT;
    wc.conn = conn;
    wc.status = status;
    wc.value = why;
    sink_.completed(wc);
}

void engine_transport::end_closed(std::uint32_t conn, int status, std::uint64_t why) {
    auto it = closed_waiters_.find(conn);
    if (it == closed_waiters_.end()) return;
    auto cookies = std::move(it->second);
    closed_waiters_.erase(it);
    for (auto cookie : cookies) complete_closed(cookie, conn, status, why);
}

void engine_transport::failed(std::uint32_t conn, int status) {
    const auto why = static_cast<std::uint64_t>(status < 0 ? -status : ECONNRESET);
    ended_[conn] = why;
    end_closed(conn, 0, why);
    for (auto& [ep, l] : listeners_)
        for (auto& a : l.backlog)
            if (a.conn == conn) {
                a.failed = true;  // its ACCEPT gets it, already closed
                return;
            }
    sink_.connection_failed(conn);
}

void engine_transport::hand_over(const vr_svc_pending& accept, listener::arrival arrival) {
    vr_completion wc{};
    wc.cookie = accept.cookie;
    wc.op = VR_WC_CONNECT;
    wc.ep = accept.ep;
    wc.conn = arrival.conn;
    wc.value = arrival.peer;
    wc.status = vr_svc_peer_data(host_.engine(), &accept, arrival.conn, &wc.bytes);
    if (wc.status != 0) {
        vr_disconnect(host_.engine(), arrival.conn);  // its buffer is gone: nobody gets it
        host_.want_flush();
    }
    sink_.completed(wc);
    if (arrival.failed) sink_.connection_failed(arrival.conn);
}

}  // namespace vmrdma::detail
