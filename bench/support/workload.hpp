// What one benchmark point asks of every path (vmrdma, TCP, raw frames).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace vmrdma::bench {

enum class mode { write, read, send, lat };

struct workload {
    mode kind = mode::write;
    std::size_t size = 65536;   // message size in bytes
    // Messages in flight (bandwidth modes). 128, as perftest's ib_write_bw
    // keeps: TCP's own in-flight budget is its socket buffer (megabytes, see
    // tcp_budget), so a depth of 16 would tie vmrdma's hands, not TCP's.
    unsigned depth = 128;
    double seconds = 1.0;       // how long to run, unless iterations is set
    std::uint64_t iterations = 0;
    unsigned mtu = 9000;
    unsigned busy_poll_us = 0;  // poll for completions this long before blocking (both paths)
    // --transport unix: how long vmrdmad's loop polls before it sleeps
    // (vmrdmad --poll-us; at least busy_poll_us; vmrdma-bench starts from
    // vmrdmad's default).
    unsigned daemon_poll_us = 0;
    bool bundle = true;         // eth: small frames to one peer leave bundled
    bool coalesce = true;       // loop_options::coalesce_wakeups on vmrdma's loops
    bool link_integrity = false; // vmrdma: payloads rest on the link's FCS (device_options::integrity)
    bool auth = false;          // vmrdma: frames authenticated with a pre-shared key (device_options::auth_key)
    bool go_back_n = false;     // vmrdma: go-back-N instead of selective repeat (device_options::go_back_n)
    unsigned ack_delay_us = 0;  // vmrdma: a message's ACK may wait this long for an answer (device_options::ack_request_delay_ns)
    std::string relay;          // not empty: faultrelay's options, both paths run through it
    // vmrdma's operations all move one message-sized buffer at each end, as
    // the TCP loop here (one buffer each side) and perftest's ib_write_bw do,
    // so every path copies from and to the same amount of memory; true gives
    // each in-flight operation bytes of its own (depth x size per side).
    bool distinct_buffers = false;
};

inline const char* mode_name(mode m) {
    switch (m) {
    case mode::write: return "write";
    case mode::read: return "read";
    case mode::send: return "send";
    case mode::lat: return "lat";
    }
    return "?";
}

}  // namespace vmrdma::bench
