#include "bench/support/fairness.hpp"

#include <cstdio>
#include <memory>

namespace vmrdma::bench {

namespace {

// Reads "min default max" from a sysctl file inside netns; false if unreadable.
bool read_triple(const std::string& netns, const char* file, long& dflt, long& max) {
    std::string cmd = "ip netns exec " + netns + " cat /proc/sys/net/ipv4/" + file + " 2>/dev/null";
    std::unique_ptr<FILE, int (*)(FILE*)> p(popen(cmd.c_str(), "r"), pclose);
    long min = 0;
    return p && std::fscanf(p.get(), "%ld %ld %ld", &min, &dflt, &max) == 3;
}

std::string mib(long bytes) {
    char b[32];
    std::snprintf(b, sizeof b, "%.1f MiB", static_cast<double>(bytes) / (1 << 20));
    return b;
}

}  // namespace

tcp_buffers tcp_budget(const std::string& netns) {
    tcp_buffers b;
    if (!read_triple(netns, "tcp_wmem", b.wmem_default, b.wmem_max)) b.wmem_default = b.wmem_max = 0;
    if (!read_triple(netns, "tcp_rmem", b.rmem_default, b.rmem_max)) b.rmem_default = b.rmem_max = 0;
    return b;
}

std::string fairness_statement(const workload& w, const tcp_buffers& b) {
    std::string s = "fair comparison: ";
    if (w.kind == mode::lat) {
        s += "one message in flight on every path; each round trip timed by the side that starts it.";
        return s;
    }
    s += "vmrdma keeps " + std::to_string(w.depth) + " operations in flight";
    s += " (" + std::to_string(static_cast<unsigned long long>(w.depth) * w.size) + " bytes)";
    s += ", TCP as much as its socket buffers take (autotuned up to ";
    s += b.wmem_max ? mib(b.wmem_max) + " to send, " + mib(b.rmem_max) + " to receive" : "limits not readable";
    s += "); a message counts when it is delivered: vmrdma's when its completion says the peer has placed it";
    s += w.kind == mode::read ? " (read: when it is in the reader's memory)" : "";
    s += ", TCP's when the receiver has read all of it, raw frames' when the receiver's ring has them";
    s += " (sendmmsg + TPACKET_V3, the fastest raw path measured here; a message's bytes in frames of";
    s += " at most the MTU, the last one shorter, gathered from the message-sized buffer as vmrdma's";
    s += " are; bytes count without the frames' Ethernet headers, as every path counts message bytes). Memory: ";
    s += w.distinct_buffers ? "each vmrdma operation in flight has its own message-sized bytes at each end "
                              "(--distinct-buffers), TCP one buffer per side"
                            : "every path sends from one message-sized buffer and receives into one, as "
                              "perftest's ib_write_bw does";
    s += ". vmrdma's CRC: ";
    s += w.link_integrity ? "headers only, payloads on the link's FCS (--integrity link); TCP over veth checks no "
                            "checksum at all"
                          : "every payload byte (end-to-end); TCP over veth checks no checksum at all";
    s += w.auth ? "; every vmrdma frame also carries a ChaCha20-Poly1305 tag over headers and payload (--auth), "
                  "TCP's frames nothing of the kind"
                : "; no frame authenticated (vmrdma: --auth to compare)";
    s += w.go_back_n ? ". vmrdma recovers losses by go-back-N (--go-back-n)"
                     : ". vmrdma recovers losses by selective repeat";
    s += w.ack_delay_us ? ", and ACKs a message within " + std::to_string(w.ack_delay_us) +
                              " us, on an answer if one leaves meanwhile (--ack-delay; TCP delays its ACKs too)"
                        : ", and ACKs a message at once (TCP delays its ACKs, on its replies)";
    if (!w.relay.empty())
        s += ". Both run through tools/faultrelay (" + w.relay +
             ") in a namespace between the hosts, TCP with segmentation offload off so that both "
             "lose wire frames, not TCP's 64 KiB super-frames";
    s += ".";
    return s;
}

}  // namespace vmrdma::bench
