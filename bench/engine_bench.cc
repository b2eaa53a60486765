// engine_bench: what the protocol engine alone costs per frame.
//   Two engines are joined by a zero-cost in-memory link: frames one
//   engine hands to xmit are copied into a queue and fed to the other
//   engine's vr_engine_input on the next step (no recursion).  A fixed
//   virtual clock advances per step.  Engine A keeps --depth RDMA writes
//   outstanding to engine B; for each message size the program reports
//   messages/s, GiB/s and ns of CPU per frame (wall time of the loop over
//   all frames, both directions: everything is in-engine work plus memcpy),
//   the median of --repeats runs.  It then times vr_crc32c_update over the
//   same bytes the engines checksum to give CRC32C's share of that time.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

extern "C" {
#include "crc32c.h"
#include "engine.h"
}

namespace {

using clock_type = std::chrono::steady_clock;

const std::uint32_t all_sizes[] = {64,        256,        1024,        4096,       16384,
                                   65536,     256 * 1024, 1024 * 1024, 4096 * 1024};

struct options {
    std::uint32_t mtu = 9000;
    std::uint32_t depth = 16;
    std::uint64_t bytes = 64ull << 20;  // per size and run, unless -n
    long iterations = 0;                // messages per size and run (0: from bytes)
    int repeats = 3;
    bool json = false;
    bool crc = true;  // also time CRC32C alone
    bool link_integrity = false;  // both engines agree payloads rest on the link's FCS
    bool auth = false;            // both engines authenticate frames with one pre-shared key
    std::vector<std::uint32_t> sizes;
};

void usage(const char* argv0) {
    std::printf(
        "usage: %s [-a | -s SIZE]... [--mtu N] [--depth N] [-n N | -b BYTES] [--repeats N] [--json] [--no-crc]\n"
        "       [--integrity end-to-end|link] [--auth]\n"
        "Measures the vmrdma protocol engine alone: two engines joined by a zero-cost\n"
        "in-memory link, engine A keeping DEPTH RDMA writes outstanding to engine B.\n"
        "Prints messages/s, GiB/s and ns of engine CPU per frame (both directions) per\n"
        "message size, and CRC32C's share of that time.\n"
        "  -a            all sizes: 64 256 1K 4K 16K 64K 256K 1M 4M (the default)\n"
        "  -s SIZE       one message size in bytes (suffix K or M allowed); repeatable\n"
        "  --mtu N       Ethernet payload bytes per frame, 1500..65535 (default 9000)\n"
        "  --depth N     writes kept outstanding (default 16)\n"
        "  -n N          messages per size and run\n"
        "  -b BYTES      bytes per size and run when -n is not given (default 64M;\n"
        "                at least 64 and at most 500000 messages)\n"
        "  --repeats N   runs per size; the median is printed (default 3)\n"
        "  --json        print a JSON array instead of the table\n"
        "  --no-crc      skip timing CRC32C alone (e.g. to profile the engine only)\n"
        "  --integrity I end-to-end (default: the CRC covers every payload byte) or link\n"
        "                (headers only; docs/wire-format.md, Integrity)\n"
        "  --auth        both engines authenticate every frame (a ChaCha20-Poly1305 tag\n"
        "                over headers and payload; docs/wire-format.md, Authentication)\n",
        argv0);
}

// ------------------------------------------------------------ in-memory link

// Frames in flight one way: fixed slots of the largest frame, so that
// moving a frame costs its copy and nothing else (no zero-filling).
struct frame_queue {
    std::size_t slot_bytes = 0;
    std::vector<std::unique_ptr<std::uint8_t[]>> slots;
    std::vector<std::uint32_t> lens;
    std::size_t count = 0;
    std::uint8_t* next(std::uint32_t len) {
        if (count == slots.size()) {
            slots.push_back(std::make_unique_for_overwrite<std::uint8_t[]>(slot_bytes));
            lens.push_back(0);
        }
        lens[count] = len;
        return slots[count++].get();
    }
};

struct host {
    vr_engine* eng = nullptr;
    std::vector<std::uint64_t> mem;
    vr_host_ops ops{};
    frame_queue* out = nullptr;  // frames to the other engine
    std::uint32_t rng = 12345;
    long completed = 0;
    long failed = 0;
};

int on_xmit(void* ctx, const vr_frame* f) {
    auto* h = static_cast<host*>(ctx);
    std::uint8_t* b = h->out->next(f->len);
    std::memcpy(b, f->hdr, f->hdr_len);
    std::size_t at = f->hdr_len;
    for (std::uint32_t i = 0; i < f->nfrags; ++i) {
        std::memcpy(b + at, static_cast<const std::uint8_t*>(f->frag[i].mem) + f->frag[i].off,
                    f->frag[i].len);
        at += f->frag[i].len;
    }
    return 0;
}

void on_complete(void* ctx, const vr_completion* wc) {
    auto* h = static_cast<host*>(ctx);
    if (wc->op == VR_WC_WRITE) {
        ++h->completed;
        if (wc->status) ++h->failed;
    }
}

std::uint32_t on_random(void* ctx) {
    auto* h = static_cast<host*>(ctx);
    h->rng = h->rng * 1664525u + 1013904223u;
    return h->rng;
}

// The device's defaults (coro/include/vmrdma/rdma.hpp), with a small
// unexpected-message pool: tables are as large as a real host's, so scans
// over them show up.
vr_config make_config(const options& o, std::uint8_t last_mac_byte, host* h) {
    vr_config c{};
    std::uint8_t mac[6] = {0x02, 0, 0, 0, 0, last_mac_byte};
    std::memcpy(c.mac, mac, 6);
    c.mtu = o.mtu;
    c.max_endpoints = 64;
    c.max_conns = 256;
    c.max_regions = 4096;
    c.max_ops = std::max<std::uint32_t>(512, o.depth);
    c.max_recvs = 256;
    c.unexp_depth = 1;
    c.unexp_buf_size = 4096;
    c.integrity = o.link_integrity ? VR_INTEGRITY_LINK : VR_INTEGRITY_END_TO_END;
    if (o.auth) {
        c.auth = VR_AUTH_PSK;
        for (std::size_t i = 0; i < sizeof c.auth_key; ++i) c.auth_key[i] = static_cast<std::uint8_t>(i * 29 + 5);
    }
    // Tuning: the engine's profile (VR_DEFAULT_* in proto/engine.h), as
    // every host takes it.
    h->ops.xmit = on_xmit;
    h->ops.complete = on_complete;
    h->ops.random = on_random;
    c.host = &h->ops;
    c.ctx = h;
    return c;
}

void die(const char* what, int rc) {
    std::fprintf(stderr, "engine_bench: %s failed: %d\n", what, rc);
    std::exit(1);
}

struct result {
    std::uint32_t size = 0;
    long messages = 0;
    double seconds = 0;
    std::uint64_t frames = 0;      // both directions
    std::uint64_t data_frames = 0;
    std::uint64_t wire_bytes = 0;  // frame bytes, both directions
    std::uint64_t retransmits = 0;
    double crc_seconds = 0;
    double link_seconds = 0;
};

constexpr std::uint64_t step_ns = 100;  // virtual time per loop step

struct pair {
    host a, b;
    frame_queue ab, ba;
    std::uint32_t conn = 0;
    std::uint64_t src_key = 0, dst_key = 0;
    std::uint64_t now = 1;

    void make(const options& o, std::vector<std::uint8_t>& src, std::vector<std::uint8_t>& dst) {
        a.out = &ab;
        b.out = &ba;
        ab.slot_bytes = ba.slot_bytes = VR_ETH_HLEN + o.mtu;
        b.rng = 777;
        for (host* h : {&a, &b}) {
            vr_config c = make_config(o, h == &a ? 1 : 2, h);
            std::size_t sz = vr_engine_mem_size(&c);
            if (!sz) die("vr_engine_mem_size", -EINVAL);
            h->mem.assign(sz / 8 + 1, 0);
            int rc = vr_engine_create(&c, h->mem.data(), h->mem.size() * 8, &h->eng);
            if (rc) die("vr_engine_create", rc);
            rc = vr_ep_open(h->eng, 0, 1, h == &b);
            if (rc) die("vr_ep_open", rc);
        }
        int rc = vr_reg_mr(a.eng, 0, src.data(), src.size(), 0, &src_key);
        if (rc) die("vr_reg_mr", rc);
        rc = vr_reg_mr(b.eng, 0, dst.data(), dst.size(), VR_ACCESS_REMOTE_WRITE, &dst_key);
        if (rc) die("vr_reg_mr", rc);
        std::uint8_t bmac[6] = {0x02, 0, 0, 0, 0, 2};
        rc = vr_connect(a.eng, 0, bmac, 0, 0, &conn);
        if (rc) die("vr_connect", rc);
        for (int i = 0; i < 100 && vr_conn_state(a.eng, conn) != VR_CONN_CONNECTED; ++i) step();
        if (vr_conn_state(a.eng, conn) != VR_CONN_CONNECTED) die("handshake", -ETIMEDOUT);
    }
    ~pair() {
        if (a.eng) vr_engine_destroy(a.eng);
        if (b.eng) vr_engine_destroy(b.eng);
    }
    static void deliver(frame_queue& q, vr_engine* to, std::uint64_t now) {
        for (std::size_t i = 0; i < q.count; ++i)
            vr_engine_input(to, q.slots[i].get(), q.lens[i], now);
        q.count = 0;
    }
    // One step: both engines transmit, the link delivers, time advances,
    // due timers run.  Returns the number of frames moved.
    int step() {
        int n = vr_engine_tx_poll(a.eng, now, 64);
        n += vr_engine_tx_poll(b.eng, now, 64);
        deliver(ab, b.eng, now);
        deliver(ba, a.eng, now);
        now += step_ns;
        if (!n) {  // idle: jump to the next deadline (delayed ACK, RTO)
            std::uint64_t t = std::min(vr_engine_next_timeout(a.eng), vr_engine_next_timeout(b.eng));
            if (t == VR_U64_MAX) return 0;
            now = std::max(now, t);
        }
        if (vr_engine_next_timeout(a.eng) <= now) vr_engine_on_timer(a.eng, now);
        if (vr_engine_next_timeout(b.eng) <= now) vr_engine_on_timer(b.eng, now);
        return n;
    }
};

long messages_for(const options& o, std::uint32_t size) {
    if (o.iterations) return o.iterations;
    long n = static_cast<long>(o.bytes / size);
    return std::clamp<long>(n, 64, 500'000);
}

result run_once(const options& o, std::uint32_t size, std::vector<std::uint8_t>& src,
                std::vector<std::uint8_t>& dst) {
    pair p;
    p.make(o, src, dst);
    result r;
    r.size = size;
    r.messages = messages_for(o, size);
    const vr_counters base_a = *vr_engine_counters(p.a.eng);
    const vr_counters base_b = *vr_engine_counters(p.b.eng);
    long posted = 0;
    int stuck = 0;
    auto start = clock_type::now();
    while (p.a.completed < r.messages) {
        while (posted - p.a.completed < static_cast<long>(o.depth) && posted < r.messages) {
            int rc = vr_post_write(p.a.eng, p.conn, p.src_key, 0, p.dst_key, 0, size,
                                   static_cast<std::uint64_t>(posted));
            if (rc) die("vr_post_write", rc);
            ++posted;
        }
        if (p.step() == 0 && ++stuck > 1000000) die("progress", -ETIMEDOUT);
    }
    r.seconds = std::chrono::duration<double>(clock_type::now() - start).count();
    if (p.a.failed) die("a write", -EIO);
    if (std::memcmp(src.data(), dst.data(), size)) die("data check", -EIO);
    const vr_counters& ca = *vr_engine_counters(p.a.eng);
    const vr_counters& cb = *vr_engine_counters(p.b.eng);
    r.frames = (ca.tx_frames - base_a.tx_frames) + (cb.tx_frames - base_b.tx_frames);
    r.data_frames = (ca.tx_data_frames - base_a.tx_data_frames) + (cb.tx_data_frames - base_b.tx_data_frames);
    r.wire_bytes = (ca.tx_bytes - base_a.tx_bytes) + (cb.tx_bytes - base_b.tx_bytes);
    r.retransmits = (ca.retransmits - base_a.retransmits) + (cb.retransmits - base_b.retransmits);
    return r;
}

volatile std::uint32_t crc_sink;

// CRC32C over what the engines checksum in run r: every frame whole, once
// by its sender (header, then payload) and once by its receiver.  Each call
// continues the previous call's CRC: in the engine the calls are far apart
// and never overlap, so independent chains here would run several at once
// in the CPU and understate the cost.  Even so this is a lower bound: perf
// on the engine loop alone (--no-crc) attributes more to CRC32C (~84% of
// the time at full 1500-byte frames against ~55% here).
double crc_seconds(const result& r, const options& o, const std::vector<std::uint8_t>& src) {
    const std::uint32_t hdr = VR_ETH_HLEN + VR_HDR_LEN, mps = o.mtu - VR_HDR_LEN;
    std::uint8_t h[VR_ETH_HLEN + VR_HDR_LEN] = {};
    std::uint64_t ctl = r.frames - r.data_frames;
    std::uint32_t per_msg = r.size / mps + (r.size % mps != 0);
    std::uint32_t crc = VR_CRC32C_INIT;
    auto start = clock_type::now();
    for (long m = 0; m < r.messages; ++m)
        for (std::uint32_t i = 0; i < per_msg; ++i) {
            std::uint32_t off = i * mps, len = std::min(mps, r.size - off);
            for (int side = 0; side < 2; ++side) {
                crc = vr_crc32c_update(crc, h, hdr);
                if (!o.link_integrity && !o.auth) crc = vr_crc32c_update(crc, src.data() + off, len);
            }
        }
    for (std::uint64_t i = 0; i < 2 * ctl; ++i) crc = vr_crc32c_update(crc, h, hdr);
    crc_sink = crc;
    return std::chrono::duration<double>(clock_type::now() - start).count();
}

// The in-memory link's own share of run r: the same copies into queue slots
// that on_xmit made (each frame's header, then its payload from the
// sender's memory), without the engines.  It is the host's cost of moving a
// frame (a kernel copies it into a socket buffer), not the engine's, so the
// engine's time per frame is the loop's minus this.
double link_seconds(const result& r, const options& o, const std::vector<std::uint8_t>& src) {
    const std::uint32_t hdr = VR_ETH_HLEN + VR_HDR_LEN, mps = o.mtu - VR_HDR_LEN;
    const std::uint8_t h[VR_ETH_HLEN + VR_HDR_LEN] = {};
    frame_queue q;
    q.slot_bytes = VR_ETH_HLEN + o.mtu;
    std::uint64_t ctl = r.frames - r.data_frames;
    std::uint32_t per_msg = r.size / mps + (r.size % mps != 0);
    auto send = [&](const std::uint8_t* payload, std::uint32_t len) {
        if (q.count == 64) q.count = 0;  // the engines deliver at most 64 frames a poll
        std::uint8_t* b = q.next(hdr + len);
        std::memcpy(b, h, hdr);
        std::memcpy(b + hdr, payload, len);
    };
    auto start = clock_type::now();
    for (long m = 0; m < r.messages; ++m)
        for (std::uint32_t i = 0; i < per_msg; ++i) {
            std::uint32_t off = i * mps;
            send(src.data() + off, std::min(mps, r.size - off));
        }
    for (std::uint64_t i = 0; i < ctl; ++i) send(h, 0);
    double t = std::chrono::duration<double>(clock_type::now() - start).count();
    crc_sink = q.slots.empty() ? 0 : q.slots[0][hdr];  // keep the copies
    return t;
}

std::string size_name(std::uint32_t s) {
    if (s >= (1u << 20) && s % (1u << 20) == 0) return std::to_string(s >> 20) + " MiB";
    if (s >= 1024 && s % 1024 == 0) return std::to_string(s >> 10) + " KiB";
    return std::to_string(s) + " B";
}

long parse_count(const char* s, const char* what) {
    char* end = nullptr;
    long v = std::strtol(s, &end, 10);
    if (end && (*end == 'k' || *end == 'K')) v <<= 10, ++end;
    else if (end && (*end == 'm' || *end == 'M')) v <<= 20, ++end;
    if (!end || *end || v <= 0) {
        std::fprintf(stderr, "engine_bench: %s must be a positive integer, got '%s'\n", what, s);
        std::exit(2);
    }
    return v;
}

}  // namespace

int main(int argc, char** argv) {
    options o;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        auto next = [&](const char* what) {
            if (i + 1 >= argc) {
                std::fprintf(stderr, "engine_bench: %s needs a value\n", a.c_str());
                std::exit(2);
            }
            return parse_count(argv[++i], what);
        };
        if (a == "-h" || a == "--help") {
            usage(argv[0]);
            return 0;
        } else if (a == "-a") {
            o.sizes.assign(std::begin(all_sizes), std::end(all_sizes));
        } else if (a == "-s") {
            long s = next("-s");
            if (s > (1l << 30)) {
                std::fprintf(stderr, "engine_bench: -s is at most 1G\n");
                return 2;
            }
            o.sizes.push_back(static_cast<std::uint32_t>(s));
        } else if (a == "--mtu") {
            o.mtu = static_cast<std::uint32_t>(next("--mtu"));
            if (o.mtu < VR_MTU_MIN || o.mtu > VR_MTU_MAX) {
                std::fprintf(stderr, "engine_bench: --mtu must be %d..%d\n", VR_MTU_MIN, VR_MTU_MAX);
                return 2;
            }
        } else if (a == "--depth") {
            o.depth = static_cast<std::uint32_t>(next("--depth"));
            if (o.depth > 32767) {
                std::fprintf(stderr, "engine_bench: --depth is at most 32767\n");
                return 2;
            }
        } else if (a == "-n") {
            o.iterations = next("-n");
        } else if (a == "-b") {
            o.bytes = static_cast<std::uint64_t>(next("-b"));
        } else if (a == "--repeats") {
            o.repeats = static_cast<int>(next("--repeats"));
        } else if (a == "--json") {
            o.json = true;
        } else if (a == "--no-crc") {
            o.crc = false;
        } else if (a == "--auth") {
            o.auth = true;
        } else if (a == "--integrity" && i + 1 < argc &&
                   (std::string(argv[i + 1]) == "link" || std::string(argv[i + 1]) == "end-to-end")) {
            o.link_integrity = std::string(argv[++i]) == "link";
        } else {
            std::fprintf(stderr, "engine_bench: unknown option '%s' (try --help)\n", a.c_str());
            return 2;
        }
    }
    if (o.sizes.empty()) o.sizes.assign(std::begin(all_sizes), std::end(all_sizes));
    std::uint32_t biggest = *std::max_element(o.sizes.begin(), o.sizes.end());
    std::vector<std::uint8_t> src(biggest), dst(biggest);
    for (std::size_t i = 0; i < src.size(); ++i) src[i] = static_cast<std::uint8_t>(i * 131 + 7);

    std::vector<result> rows;
    for (std::uint32_t size : o.sizes) {
        std::fprintf(stderr, "size %s: %d runs of %ld messages...\n", size_name(size).c_str(), o.repeats,
                     messages_for(o, size));
        std::vector<result> runs;
        for (int i = 0; i < o.repeats; ++i) runs.push_back(run_once(o, size, src, dst));
        std::sort(runs.begin(), runs.end(), [](const result& x, const result& y) { return x.seconds < y.seconds; });
        result r = runs[runs.size() / 2];
        std::vector<double> crc;
        for (int i = 0; o.crc && i < o.repeats; ++i) crc.push_back(crc_seconds(r, o, src));
        std::sort(crc.begin(), crc.end());
        r.crc_seconds = crc.empty() ? 0 : crc[crc.size() / 2];
        std::vector<double> link;
        for (int i = 0; i < o.repeats; ++i) link.push_back(link_seconds(r, o, src));
        std::sort(link.begin(), link.end());
        r.link_seconds = link[link.size() / 2];
        rows.push_back(r);
    }

    if (o.json) {
        std::printf("[\n");
        for (std::size_t i = 0; i < rows.size(); ++i) {
            const result& r = rows[i];
            std::printf(
                "  {\"size\": %u, \"mtu\": %u, \"depth\": %u, \"messages\": %ld, \"frames\": %llu, "
                "\"seconds\": %.6f, \"messages_per_s\": %.1f, \"gib_per_s\": %.4f, \"ns_per_frame\": %.2f, "
                "\"link_ns_per_frame\": %.2f, \"engine_ns_per_frame\": %.2f, "
                "\"crc_ns_per_frame\": %.2f, \"crc_share\": %.4f, \"retransmits\": %llu}%s\n",
                r.size, o.mtu, o.depth, r.messages, static_cast<unsigned long long>(r.frames), r.seconds,
                r.messages / r.seconds, r.messages * double(r.size) / r.seconds / double(1u << 30),
                r.seconds * 1e9 / double(r.frames), r.link_seconds * 1e9 / double(r.frames),
                (r.seconds - r.link_seconds) * 1e9 / double(r.frames), r.crc_seconds * 1e9 / double(r.frames),
                r.crc_seconds / r.seconds, static_cast<unsigned long long>(r.retransmits),
                i + 1 < rows.size() ? "," : "");
        }
        std::printf("]\n");
        return 0;
    }
    std::printf("# engine_bench: MTU %u, depth %u, median of %d runs; frames = both directions\n", o.mtu,
                o.depth, o.repeats);
    std::printf("# ns/frame = the loop's time per frame; link = what moving the frames alone costs "
                "(on_xmit's copies, timed without the engines); engine = ns/frame - link\n");
    std::printf("%8s %9s %10s %12s %9s %10s %9s %10s %11s %10s %6s\n", "size", "messages", "frames", "messages/s",
                "GiB/s", "ns/frame", "link ns", "engine ns", "crc ns/fr", "crc share", "rexmit");
    for (const result& r : rows)
        std::printf("%8s %9ld %10llu %12.0f %9.3f %10.1f %9.1f %10.1f %11.1f %9.1f%% %6llu\n",
                    size_name(r.size).c_str(), r.messages, static_cast<unsigned long long>(r.frames),
                    r.messages / r.seconds, r.messages * double(r.size) / r.seconds / double(1u << 30),
                    r.seconds * 1e9 / double(r.frames), r.link_seconds * 1e9 / double(r.frames),
                    (r.seconds - r.link_seconds) * 1e9 / double(r.frames), r.crc_seconds * 1e9 / double(r.frames),
                    100.0 * r.crc_seconds / r.seconds, static_cast<unsigned long long>(r.retransmits));
    return 0;
}
