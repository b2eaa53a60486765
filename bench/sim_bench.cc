// sim_bench: what loss costs the protocol, measured in the deterministic
// simulator (proto/sim) rather than on a noisy machine.  Two engines with
// the hosts' tuning profile (proto/engine.h VR_DEFAULT_*) are joined by a
// simulated link of a given rate, round-trip time and loss (both directions,
// so ACKs are lost too).  Engine A keeps DEPTH operations outstanding to
// engine B until BYTES have been moved, once per combination of size, depth,
// MTU and loss.  Everything runs on a virtual clock: a seed gives the same
// figures on every machine, and the figures are the protocol's (what it
// sends, what it waits for), not the CPU's (bench/engine_bench measures that).
#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "examples/support/netns_pair.hpp"
#include "sim/sim.h"

namespace {

enum class op_kind { write, read, send };

struct options {
    std::vector<std::uint32_t> sizes, depths, mtus;
    std::vector<double> losses;  // percent
    double rtt_us = 50;
    double drop_tail_us = 0;  // 0: the host queue pushes back (-EAGAIN)
    std::uint64_t gbps = 10;
    std::uint64_t bytes = 256ull << 20;
    std::uint64_t seed = 1;
    unsigned seeds = 1;
    op_kind op = op_kind::write;
    std::vector<std::uint32_t> recoveries;  // enum vr_recovery
    bool json = false;
};

void usage() {
    std::printf(
        "usage: sim_bench [-s SIZE]... [--depth N]... [--mtu N]... [--loss P]... [--rtt US]\n"
        "                 [--gbps N] [-b BYTES] [--op write|read|send] [--recovery sr|gbn]...\n"
        "                 [--seed N] [--seeds N] [--json]\n"
        "What loss costs the vmrdma protocol, on the simulator's virtual clock (proto/sim):\n"
        "two engines with the hosts' tuning profile (proto/engine.h) over a link of GBPS\n"
        "and round-trip time RTT, losing P %% of the frames in each direction. Engine A keeps\n"
        "DEPTH operations of SIZE bytes outstanding to B until BYTES have moved, once per\n"
        "combination of the lists. Deterministic: a seed gives the same figures anywhere.\n"
        "  -s SIZE      message size, K/M suffixes allowed; repeatable (default 64K 1M)\n"
        "  --depth N    operations in flight; repeatable (default 16 128)\n"
        "  --mtu N      1500..65535; repeatable (default 1500 9000)\n"
        "  --loss P     percent of frames lost per direction; repeatable\n"
        "               (default 0 0.01 0.1 1)\n"
        "  --rtt US     round-trip propagation time in microseconds (default 50)\n"
        "  --gbps N     link rate (default 10)\n"
        "  --drop-tail-us N  the link queue holds N us of frames and drops what does not\n"
        "               fit, as a switch port or a full receive ring (default: the host\n"
        "               queue, 1 ms, pushes back and nothing is dropped)\n"
        "  -b BYTES     bytes per run (default 256M)\n"
        "  --op O       write (default), read (B's data to A) or send (tagged, B posts\n"
        "               a receive for each)\n"
        "  --recovery R sr (selective repeat, the default) or gbn (go-back-N, to compare);\n"
        "               repeatable\n"
        "  --seed N     first seed (default 1); --seeds N runs per combination with\n"
        "               seeds N, N+1, ... and sums them (default 1)\n"
        "  --json       one JSON object per line instead of the table\n"
        "Columns: goodput (payload bytes delivered per virtual second, Gbit/s, and its\n"
        "share of the link rate), time to the last completion, data frames sent per data\n"
        "frame needed (1.00 = nothing resent), retransmissions, RTO expiries, ACK-only\n"
        "frames per data frame needed, NAKs, the longest time one operation took,\n"
        "frames the link lost (both ways).\n");
}

options parse(int argc, char** argv) {
    options o;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) throw std::runtime_error(a + " needs a value (try --help)");
            return argv[++i];
        };
        if (a == "-h" || a == "--help") {
            usage();
            std::exit(0);
        } else if (a == "-s") {
            o.sizes.push_back(static_cast<std::uint32_t>(
                vmrdma::examples::parse_size(value(), 64ull << 20, "-s: a size of 1 byte .. 64M")));
        } else if (a == "--depth") {
            unsigned long v = std::strtoul(value().c_str(), nullptr, 10);
            if (!v || v > 4096) throw std::runtime_error("--depth must be 1..4096");
            o.depths.push_back(static_cast<std::uint32_t>(v));
        } else if (a == "--mtu") {
            unsigned long v = std::strtoul(value().c_str(), nullptr, 10);
            if (v < VR_MTU_MIN || v > VR_MTU_MAX) throw std::runtime_error("--mtu must be 1500..65535");
            o.mtus.push_back(static_cast<std::uint32_t>(v));
        } else if (a == "--loss") {
            double v = std::strtod(value().c_str(), nullptr);
            if (v < 0 || v > 50) throw std::runtime_error("--loss is a percentage, 0..50");
            o.losses.push_back(v);
        } else if (a == "--rtt") {
            o.rtt_us = std::strtod(value().c_str(), nullptr);
            if (o.rtt_us <= 0 || o.rtt_us > 1e6) throw std::runtime_error("--rtt must be 0..1000000 us");
        } else if (a == "--drop-tail-us") {
            o.drop_tail_us = std::strtod(value().c_str(), nullptr);
            if (o.drop_tail_us <= 0 || o.drop_tail_us > 1e6) throw std::runtime_error("--drop-tail-us must be 0..1000000");
        } else if (a == "--gbps") {
            o.gbps = std::strtoull(value().c_str(), nullptr, 10);
            if (!o.gbps || o.gbps > 1000) throw std::runtime_error("--gbps must be 1..1000");
        } else if (a == "-b") {
            o.bytes = vmrdma::examples::parse_size(value(), 1ull << 40, "-b: 1 byte .. 1048576M");
        } else if (a == "--op") {
            std::string m = value();
            if (m == "write") o.op = op_kind::write;
            else if (m == "read") o.op = op_kind::read;
            else if (m == "send") o.op = op_kind::send;
            else throw std::runtime_error("--op must be write, read or send");
        } else if (a == "--recovery") {
            std::string m = value();
            if (m == "sr") o.recoveries.push_back(VR_RECOVERY_SELECTIVE);
            else if (m == "gbn") o.recoveries.push_back(VR_RECOVERY_GO_BACK_N);
            else throw std::runtime_error("--recovery must be sr or gbn");
        } else if (a == "--seed") {
            o.seed = std::strtoull(value().c_str(), nullptr, 10);
        } else if (a == "--seeds") {
            o.seeds = static_cast<unsigned>(std::strtoul(value().c_str(), nullptr, 10));
            if (!o.seeds || o.seeds > 1000) throw std::runtime_error("--seeds must be 1..1000");
        } else if (a == "--json") {
            o.json = true;
        } else {
            throw std::runtime_error("unknown option '" + a + "' (try --help)");
        }
    }
    if (o.sizes.empty()) o.sizes = {64 << 10, 1 << 20};
    if (o.depths.empty()) o.depths = {16, 128};
    if (o.mtus.empty()) o.mtus = {1500, 9000};
    if (o.losses.empty()) o.losses = {0, 0.01, 0.1, 1};
    if (o.recoveries.empty()) o.recoveries = {VR_RECOVERY_SELECTIVE};
    return o;
}

struct result {
    std::uint64_t ops = 0, bytes = 0, ns = 0;
    std::uint64_t needed = 0;  // data frames the transfer needs (each sent once)
    std::uint64_t data_tx = 0, retx = 0, rtos = 0, acks = 0, naks = 0, cc_events = 0;
    std::uint64_t wire_lost = 0;  // frames the link lost, both ways (random or overflow)
    std::uint64_t max_op_ns = 0;
    result& operator+=(const result& r) {
        ops += r.ops, bytes += r.bytes, ns += r.ns, needed += r.needed, data_tx += r.data_tx;
        retx += r.retx, rtos += r.rtos, acks += r.acks, naks += r.naks, cc_events += r.cc_events;
        wire_lost += r.wire_lost;
        max_op_ns = std::max(max_op_ns, r.max_op_ns);
        return *this;
    }
};

[[noreturn]] void die(const std::string& what) {
    std::fprintf(stderr, "sim_bench: %s\n", what.c_str());
    std::exit(1);
}

vr_config make_config(std::uint32_t mtu, std::uint32_t depth, std::uint32_t recovery) {
    vr_config c{};
    c.recovery = recovery;
    c.mtu = mtu;
    c.max_endpoints = 4;
    c.max_conns = 8;
    c.max_regions = 16;
    c.max_ops = std::max<std::uint32_t>(512, depth);  // the eth: device's default
    c.max_recvs = std::max<std::uint32_t>(256, depth);
    c.unexp_depth = 1;
    c.unexp_buf_size = 4096;
    // Tuning fields stay 0: the profile every host takes.
    return c;
}

result run_one(const options& o, std::uint32_t recovery, std::uint32_t size, std::uint32_t depth,
               std::uint32_t mtu, double loss_pct, std::uint64_t seed) {
    vrsim::Sim s(seed);
    vr_config cfg = make_config(mtu, depth, recovery);
    if (s.add_node(cfg) != 0 || s.add_node(cfg) != 1) die("cannot create the engines");
    vrsim::LinkCfg lc;
    lc.delay_ns = static_cast<std::uint64_t>(o.rtt_us * 1000 / 2);
    lc.gbps = o.gbps;
    lc.loss_ppm = static_cast<std::uint32_t>(loss_pct * 10000 + 0.5);
    if (o.drop_tail_us > 0) {
        lc.drop_tail = true;
        lc.queue_ns = static_cast<std::uint64_t>(o.drop_tail_us * 1000);
    }
    s.link(0, 1) = lc;
    s.link(1, 0) = lc;
    vrsim::Node &a = s.node(0), &b = s.node(1);
    if (vr_ep_open(a.eng, 0, 1, false) || vr_ep_open(b.eng, 0, 1, true)) die("vr_ep_open failed");

    // One message-sized buffer per side, as perftest's ib_write_bw and
    // vmrdma-bench by default: this measures the protocol, not memory.
    std::vector<std::uint8_t> abuf(size, 0xA5), bbuf(size, 0x5A);
    std::uint64_t akey = 0, bkey = 0;
    if (vr_reg_mr(a.eng, 0, abuf.data(), size, VR_ACCESS_LOCAL_WRITE, &akey) ||
        vr_reg_mr(b.eng, 0, bbuf.data(), size,
                  VR_ACCESS_REMOTE_WRITE | VR_ACCESS_REMOTE_READ | VR_ACCESS_LOCAL_WRITE, &bkey))
        die("vr_reg_mr failed");

    std::uint32_t ca = 0;
    std::size_t base_a = a.comps.size();
    if (vr_connect(a.eng, 0, b.mac, 0, 1, &ca)) die("vr_connect failed");
    bool up = s.run([&] {
        for (std::size_t i = base_a; i < a.comps.size(); ++i)
            if (a.comps[i].op == VR_WC_CONNECT) return true;
        return false;
    }, s.now + 10'000'000'000ull);
    if (!up || a.comps.back().status) die("connect failed");

    const std::uint64_t total_ops = std::max<std::uint64_t>(1, o.bytes / size);
    std::uint64_t posted = 0, done = 0, failed = 0, recvs_posted = 0;
    std::vector<std::uint64_t> post_time;
    post_time.reserve(total_ops);
    result r;
    const vr_counters ka0 = *vr_engine_counters(a.eng), kb0 = *vr_engine_counters(b.eng);
    const std::uint64_t t0 = s.now;

    auto post_recv = [&] {
        if (vr_post_recv(b.eng, 0, bkey, 0, size, 0, 0, recvs_posted) == 0) ++recvs_posted;
    };
    auto post_one = [&]() -> bool {
        int rc = 0;
        switch (o.op) {
        case op_kind::write:
            rc = vr_post_write(a.eng, ca, akey, 0, bkey, 0, size, posted);
            break;
        case op_kind::read:
            rc = vr_post_read(a.eng, ca, akey, 0, bkey, 0, size, posted);
            break;
        case op_kind::send:
            rc = vr_post_send(a.eng, ca, akey, 0, size, 0, posted);
            break;
        }
        if (rc == -EAGAIN) return false;
        if (rc) die("post failed: " + std::to_string(rc));
        post_time.push_back(s.now);
        ++posted;
        return true;
    };
    auto top_up = [&] {
        while (posted < total_ops && posted - done < depth && post_one()) {
        }
    };
    a.on_complete = [&](const vr_completion& wc) {
        if (wc.op != VR_WC_WRITE && wc.op != VR_WC_READ && wc.op != VR_WC_SEND) return;
        if (wc.status) ++failed;
        r.max_op_ns = std::max(r.max_op_ns, s.now - post_time[wc.cookie]);
        ++done;
        s.at(s.now, top_up);  // post from the host's loop, not from inside the engine
    };
    b.on_complete = [&](const vr_completion& wc) {
        if (wc.op == VR_WC_RECV && recvs_posted < total_ops) s.at(s.now, post_recv);
    };
    if (o.op == op_kind::send)
        for (std::uint32_t i = 0; i < depth && recvs_posted < total_ops; ++i) post_recv();
    top_up();
    // Virtual-time budget: 100x the time at the link rate, and at least 10 s.
    std::uint64_t limit = std::max<std::uint64_t>(10'000'000'000ull, 100 * o.bytes * 8 / o.gbps);
    if (!s.run([&] { return done == total_ops; }, s.now + limit))
        die("the transfer did not finish within " + std::to_string(limit / 1000000) +
            " ms of virtual time (" + std::to_string(done) + " of " + std::to_string(total_ops) +
            " operations)");
    if (failed) die(std::to_string(failed) + " operations failed");

    const vr_counters &ka = *vr_engine_counters(a.eng), &kb = *vr_engine_counters(b.eng);
    // The side that sends the payload: A for write and send, B for read.
    const bool a_sends = o.op != op_kind::read;
    const vr_counters &ds = a_sends ? ka : kb, &ds0 = a_sends ? ka0 : kb0;
    const vr_counters &rs = a_sends ? kb : ka, &rs0 = a_sends ? kb0 : ka0;
    const std::uint32_t mps = mtu - VR_HDR_LEN;
    r.ops = total_ops;
    r.bytes = total_ops * size;
    r.ns = s.now - t0;
    r.needed = total_ops * ((size + mps - 1) / mps);
    r.data_tx = ds.tx_data_frames - ds0.tx_data_frames;
    r.retx = ds.retransmits - ds0.retransmits;
    r.rtos = ds.timeouts - ds0.timeouts;
    r.acks = rs.acks_tx - rs0.acks_tx;
    for (int i = 0; i < VR_NAK_MAX; ++i) r.naks += rs.naks_tx[i] - rs0.naks_tx[i];
    r.cc_events = ds.congestion_events - ds0.congestion_events;
    r.wire_lost = s.stats(0, 1).lost + s.stats(1, 0).lost;  // handshake: none lost here

    return r;
}

const char* op_name(op_kind k) {
    return k == op_kind::write ? "write" : k == op_kind::read ? "read" : "send";
}

std::string size_name(std::uint64_t v) {
    if (v % (1 << 20) == 0) return std::to_string(v >> 20) + "M";
    if (v % 1024 == 0) return std::to_string(v >> 10) + "K";
    return std::to_string(v);
}

}  // namespace

int main(int argc, char** argv) {
    options o;
    try {
        o = parse(argc, argv);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "sim_bench: %s\n", e.what());
        return 2;
    }
    if (!o.json) {
        std::printf("# sim_bench: %s, %llu Gbit/s, RTT %.0f us, %s per run, %u seed(s) from %llu\n",
                    op_name(o.op), (unsigned long long)o.gbps, o.rtt_us,
                    size_name(o.bytes).c_str(), o.seeds, (unsigned long long)o.seed);
        std::printf("%-3s %-5s %5s %5s %6s | %8s %5s %9s | %7s %8s %5s %6s %6s %9s %7s\n",
                    "rec", "size", "depth", "mtu", "loss%", "Gbit/s", "link%", "time ms", "tx/need", "retx", "RTOs",
                    "acks/f", "naks", "max op ms", "lost");
    }
    for (std::uint32_t mtu : o.mtus)
        for (std::uint32_t size : o.sizes)
            for (std::uint32_t depth : o.depths)
                for (double loss : o.losses)
                for (std::uint32_t rec : o.recoveries) {
                    const char* rec_name = rec == VR_RECOVERY_SELECTIVE ? "sr" : "gbn";
                    result sum;
                    for (unsigned k = 0; k < o.seeds; ++k)
                        sum += run_one(o, rec, size, depth, mtu, loss, o.seed + k);
                    double gbit = sum.ns ? sum.bytes * 8.0 / sum.ns : 0;
                    double tx_need = sum.needed ? double(sum.data_tx) / sum.needed : 0;
                    double acks = sum.needed ? double(sum.acks) / sum.needed : 0;
                    if (o.json) {
                        std::printf(
                            "{\"op\":\"%s\",\"recovery\":\"%s\",\"size\":%u,\"depth\":%u,\"mtu\":%u,\"loss_pct\":%g,"
                            "\"rtt_us\":%g,\"gbps\":%llu,\"seeds\":%u,\"bytes\":%llu,\"ns\":%llu,"
                            "\"goodput_gbit\":%.4f,\"data_frames_needed\":%llu,"
                            "\"data_frames_sent\":%llu,\"retransmits\":%llu,\"rtos\":%llu,"
                            "\"acks\":%llu,\"naks\":%llu,\"congestion_events\":%llu,"
                            "\"max_op_ns\":%llu,\"wire_lost\":%llu}\n",
                            op_name(o.op), rec_name, size, depth, mtu, loss, o.rtt_us,
                            (unsigned long long)o.gbps, o.seeds, (unsigned long long)sum.bytes,
                            (unsigned long long)sum.ns, gbit, (unsigned long long)sum.needed,
                            (unsigned long long)sum.data_tx, (unsigned long long)sum.retx,
                            (unsigned long long)sum.rtos, (unsigned long long)sum.acks,
                            (unsigned long long)sum.naks, (unsigned long long)sum.cc_events,
                            (unsigned long long)sum.max_op_ns, (unsigned long long)sum.wire_lost);
                    } else {
                        std::printf("%-3s %-5s %5u %5u %6g | %8.3f %4.0f%% %9.2f | %7.3f %8llu %5llu "
                                    "%6.3f %6llu %9.2f %7llu\n",
                                    rec_name, size_name(size).c_str(), depth, mtu, loss, gbit,
                                    100.0 * gbit / o.gbps, sum.ns / 1e6, tx_need,
                                    (unsigned long long)sum.retx, (unsigned long long)sum.rtos,
                                    acks, (unsigned long long)sum.naks, sum.max_op_ns / 1e6,
                                    (unsigned long long)sum.wire_lost);
                    }
                    std::fflush(stdout);
                }
    return 0;
}
