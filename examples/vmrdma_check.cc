// vmrdma-check: a two-sided end-to-end check of one transport, small enough
// to copy into a minimal initramfs (the Xen harness runs it in dom0 and in
// the guests, tests/xen/). The server offers one region; the client writes a
// pattern into it, reads it back, compares byte for byte and counts with
// fetch_add on the region's last 8-byte word, round after round.
//
//   vmrdma-check serve  --device URI [--ep N] [--size BYTES] [--name NAME]
//   vmrdma-check client --device URI --peer MAC --peer-ep N --rkey KEY --size BYTES
//                       [--ep N] [--rounds R | --forever]
//   vmrdma-check client --device URI --name NAME [--ep N] [--rounds R | --forever]
//
// serve prints one line to stdout, `READY mac=.. ep=N rkey=0xKEY size=BYTES`,
// whose values are the client's arguments; progress goes to stderr, and the
// verdict (`vmrdma-check: OK: ...` or `vmrdma-check: FAIL: ...`) to stdout.
#include <signal.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "examples/support/netns_pair.hpp"
#include "vmrdma/rdma.hpp"
#include "vmrdma/registrable.hpp"
#include "vmrdma/runtime.hpp"

using vmrdma::task;

namespace {

constexpr const char* usage_text =
    "usage: vmrdma-check serve  --device URI [--ep N] [--size BYTES] [--name NAME]\n"
    "       vmrdma-check client --device URI --peer MAC --peer-ep N --rkey KEY --size BYTES\n"
    "                           [--ep N] [--rounds R | --forever]\n"
    "       vmrdma-check client --device URI --name NAME [--ep N] [--rounds R | --forever]\n"
    "An end-to-end check of a vmrdma transport (eth:IFNAME, unix:PATH, xen:/dev/vmrdma).\n"
    "'vmrdma-check serve --help' and 'vmrdma-check client --help' say more.\n";

constexpr const char* serve_help =
    "usage: vmrdma-check serve --device URI [--ep N] [--size BYTES] [--name NAME]\n"
    "Opens listening endpoint N (default 1) on the device, registers a zeroed region of\n"
    "BYTES (default 1M; K and M suffixes; a multiple of 8, at least 16) for remote write,\n"
    "read and atomics, hands the region's descriptor to every client in the accept\n"
    "(private data), announces NAME on the link if given, and prints one line to stdout:\n"
    "  READY mac=XX:XX:XX:XX:XX:XX ep=N rkey=0xKEY size=BYTES\n"
    "Then accepts connections until SIGTERM or SIGINT (exit 0). Connections are kept until\n"
    "their peer disconnects (at most 32: a newcomer beyond that is closed, the clients\n"
    "being served are kept). Progress goes\n"
    "to stderr; on an error 'vmrdma-check: FAIL: <what>' goes to stdout and it exits 1.\n";

constexpr const char* client_help =
    "usage: vmrdma-check client --device URI --peer MAC --peer-ep N --rkey KEY --size BYTES\n"
    "                           [--ep N] [--rounds R | --forever]\n"
    "       vmrdma-check client --device URI --name NAME [--ep N] [--rounds R | --forever]\n"
    "With --name, finds the server that announces NAME (waiting up to 10 s for it) and\n"
    "takes the region's key and size from what the server hands over in the accept.\n"
    "Connects from local endpoint N (default 1) to the server's endpoint and, per round,\n"
    "fills a buffer with a pattern of that round, RDMA-writes it to the server's region at\n"
    "offset 0 (all of it but the last 8 bytes), RDMA-reads it back into a second buffer,\n"
    "compares byte for byte, reads up to 16 spots of 64 bytes at once and compares them\n"
    "too (small responses that an eth: peer sends as one bundle), and does fetch_add 1 on\n"
    "the region's last 8-byte word (at\n"
    "BYTES-8), whose old value must go up by one each round. KEY and the sizes are what the\n"
    "server's READY line says. R defaults to 3; --forever runs until killed and prints a\n"
    "line about once a second. Prints\n"
    "  vmrdma-check: OK: R rounds of N bytes written, read back and verified; fetch_add ok\n"
    "and exits 0, or 'vmrdma-check: FAIL: <what>' and exits 1. Bad arguments exit 2.\n";

struct usage_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// --name value or --name=value; flags without a value.
class options {
public:
    options(int argc, char** argv, int first, const std::set<std::string>& valued,
            const std::set<std::string>& flags) {
        for (int i = first; i < argc; ++i) {
            std::string a = argv[i];
            if (a.rfind("--", 0) != 0) throw usage_error("unexpected argument '" + a + "'");
            std::string name = a.substr(2), value;
            bool has_value = false;
            if (auto eq = name.find('='); eq != std::string::npos) {
                value = name.substr(eq + 1);
                name = name.substr(0, eq);
                has_value = true;
            }
            if (flags.count(name)) {
                if (has_value) throw usage_error("--" + name + " takes no value");
                values_[name] = "";
                continue;
            }
            if (!valued.count(name)) throw usage_error("unknown option --" + name);
            if (!has_value) {
                if (i + 1 >= argc) throw usage_error("--" + name + " needs a value");
                value = argv[++i];
            }
            if (values_.count(name)) throw usage_error("--" + name + " given twice");
            values_[name] = value;
        }
    }
    bool has(const std::string& name) const { return values_.count(name) != 0; }
    std::string get(const std::string& name, const std::string& fallback = {}) const {
        auto it = values_.find(name);
        return it == values_.end() ? fallback : it->second;
    }
    std::string required(const std::string& name) const {
        if (!has(name)) throw usage_error("--" + name + " is required");
        return get(name);
    }

private:
    std::map<std::string, std::string> values_;
};

unsigned long long parse_number(const std::string& text, unsigned long long max, const std::string& what) {
    char* end = nullptr;
    errno = 0;
    unsigned long long v = std::strtoull(text.c_str(), &end, 0);  // decimal or 0x...
    if (text.empty() || text[0] == '-' || errno != 0 || *end != '\0' || v > max)
        throw usage_error(what + ", got '" + text + "'");
    return v;
}

std::uint16_t parse_ep(const std::string& text, const std::string& option) {
    return static_cast<std::uint16_t>(parse_number(text, 65535, option + " must be an endpoint id 0..65535"));
}

std::size_t parse_region_size(const std::string& text) {
    const std::string what = "--size must be 16 bytes to 1G and a multiple of 8 (e.g. 1M or 1048576)";
    std::size_t size;
    try {
        size = vmrdma::examples::parse_size(text, 1ull << 30, what);
    } catch (const std::runtime_error& e) {
        throw usage_error(e.what());
    }
    if (size < 16 || size % 8 != 0) throw usage_error(what + ", got " + text);
    return size;
}

// SIGTERM and SIGINT, blocked in every thread and taken by one that stops
// the loop's work through `stop`. Declared after the loop it posts to, so
// it is gone first: its destructor wakes the thread with SIGUSR1 and joins
// it, so no post can reach a destroyed loop.
class signal_watcher {
public:
    signal_watcher(vmrdma::event_loop& loop, std::stop_source& stop) {
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGTERM);
        sigaddset(&set, SIGINT);
        sigaddset(&set, SIGUSR1);
        pthread_sigmask(SIG_BLOCK, &set, nullptr);
        thread_ = std::thread([&loop, &stop, set] {
            int sig = 0;
            sigwait(&set, &sig);
            if (sig == SIGUSR1) return;  // the watcher is going away
            std::fprintf(stderr, "vmrdma-check: %s: stopping\n", sig == SIGTERM ? "SIGTERM" : "SIGINT");
            loop.post([&stop] { stop.request_stop(); });
        });
    }
    ~signal_watcher() {
        pthread_kill(thread_.native_handle(), SIGUSR1);  // harmless if it already returned
        thread_.join();
    }
    signal_watcher(const signal_watcher&) = delete;
    signal_watcher& operator=(const signal_watcher&) = delete;

private:
    std::thread thread_;
};

int serve(int argc, char** argv) {
    options opt(argc, argv, 2, {"device", "ep", "size", "name"}, {});
    auto uri = opt.required("device");
    auto ep_id = parse_ep(opt.get("ep", "1"), "--ep");
    auto size = parse_region_size(opt.get("size", "1M"));

    vmrdma::event_loop loop;
    std::stop_source stop;
    signal_watcher signals(loop, stop);
    auto dev = vmrdma::device::open(loop, uri);
    auto ep = dev->open_endpoint(ep_id);  // listens once its accept data is set
    vmrdma::registrable_buffer buffer(size);  // zeroed; registrable on every transport
    auto mr = ep.register_memory(buffer.span(), vmrdma::access::remote_write | vmrdma::access::remote_read |
                                                    vmrdma::access::remote_atomic);
    const std::string name = opt.get("name", "");
    auto announce = [&]() -> task<void> {
        co_await ep.set_accept_data(mr.remote().to_bytes());
        co_await ep.listen();  // so that every client gets the region
        if (!name.empty()) co_await ep.announce(name);
    };
    loop.run(announce());
    std::printf("READY mac=%s ep=%u rkey=0x%" PRIx64 " size=%zu%s%s\n", dev->mac().to_string().c_str(), ep_id,
                mr.key(), size, name.empty() ? "" : " name=", name.c_str());
    std::fflush(stdout);
    std::fprintf(stderr, "vmrdma-check: serving %zu bytes on %s endpoint %u (mtu %u)\n", size, uri.c_str(), ep_id,
                 dev->mtu());

    auto body = [&]() -> task<void> {
        constexpr std::size_t max_kept = 32;
        std::deque<vmrdma::connection> kept;
        unsigned long accepted = 0;
        for (;;) {
            vmrdma::connection conn;
            try {
                conn = co_await ep.accept(stop.get_token());
            } catch (const vmrdma::error& e) {
                if (stop.stop_requested()) co_return;
                throw;
            }
            ++accepted;
            if (!conn.peer_data().empty())
                std::fprintf(stderr, "vmrdma-check: connection %lu says '%.*s'\n", accepted + 0,
                             static_cast<int>(conn.peer_data().size()),
                             reinterpret_cast<const char*>(conn.peer_data().data()));
            std::erase_if(kept, [](const vmrdma::connection& c) { return !c.is_open(); });
            if (kept.size() >= max_kept) {
                // Full: the newcomer is closed, not an established peer (a
                // flood of connections must not evict the clients being served).
                std::fprintf(stderr, "vmrdma-check: connection %lu closed: %zu already open\n", accepted,
                             kept.size());
                continue;  // conn's destructor disconnects it
            }
            kept.push_back(std::move(conn));
            std::fprintf(stderr, "vmrdma-check: accepted connection %lu (%zu open)\n", accepted, kept.size());
        }
    };
    loop.run(body());
    return 0;
}

// Round r's pattern: differs from byte to byte and from round to round.
void fill(std::byte* p, std::size_t n, std::uint64_t round) {
    std::uint64_t x = 0x9e3779b97f4a7c15ull * (round + 1);
    for (std::size_t i = 0; i < n; ++i) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p[i] = static_cast<std::byte>(x);
    }
}

int client(int argc, char** argv) {
    options opt(argc, argv, 2, {"device", "peer", "peer-ep", "rkey", "size", "ep", "rounds", "name"}, {"forever"});
    auto uri = opt.required("device");
    const bool by_name = opt.has("name");
    if (by_name && (opt.has("peer") || opt.has("peer-ep") || opt.has("rkey") || opt.has("size")))
        throw usage_error("--name finds the server and its region: no --peer, --peer-ep, --rkey or --size with it");
    vmrdma::peer_address peer;
    vmrdma::remote_region remote;
    if (!by_name) {
        try {
            peer.mac = vmrdma::mac_address::parse(opt.required("peer"));
        } catch (const vmrdma::error& e) {
            throw usage_error(std::string("--peer: ") + e.what());
        }
        peer.endpoint = parse_ep(opt.required("peer-ep"), "--peer-ep");
        remote.rkey = parse_number(opt.required("rkey"), ~0ull, "--rkey must be a 64-bit key such as 0x1a2b0001");
        remote.length = parse_region_size(opt.required("size"));
    }
    auto ep_id = parse_ep(opt.get("ep", "1"), "--ep");
    bool forever = opt.has("forever");
    if (forever && opt.has("rounds")) throw usage_error("--rounds and --forever exclude each other");
    auto rounds = parse_number(opt.get("rounds", "3"), 1'000'000'000, "--rounds must be 1 or more");
    if (rounds == 0) throw usage_error("--rounds must be 1 or more");

    vmrdma::event_loop loop;
    auto dev = vmrdma::device::open(loop, uri);
    auto ep = dev->open_endpoint(ep_id);
    vmrdma::connection conn;
    std::string failure;
    auto connect = [&]() -> task<void> {
        if (by_name) {
            peer = co_await ep.resolve(opt.required("name"), std::chrono::seconds(10));
            std::fprintf(stderr, "vmrdma-check: '%s' is %s endpoint %u\n", opt.required("name").c_str(),
                         peer.mac.to_string().c_str(), peer.endpoint);
        }
        static constexpr std::string_view hello = "vmrdma-check client";
        conn = co_await ep.connect(peer, {.private_data = std::as_bytes(std::span(hello.data(), hello.size()))});
        if (by_name) {
            if (conn.peer_data().size() != vmrdma::remote_region::wire_size) {
                failure = "the server handed over " + std::to_string(conn.peer_data().size()) +
                          " bytes in the accept, not a region descriptor";
                co_return;
            }
            remote = vmrdma::remote_region::from_bytes(conn.peer_data());
        }
    };
    try {
        loop.run(connect());
        if (failure.empty() && (remote.length < 16 || remote.length % 8 != 0 || remote.length > (1u << 30)))
            failure = "the server's region of " + std::to_string(remote.length) + " bytes is not one vmrdma-check serves";
    } catch (const vmrdma::error& e) {
        failure = std::string("connect: ") + e.what();
    }
    if (!failure.empty()) {
        std::printf("vmrdma-check: FAIL: %s\n", failure.c_str());
        return 1;
    }
    std::fprintf(stderr, "vmrdma-check: connected\n");
    const std::size_t size = remote.length;
    const std::uint64_t rkey = remote.rkey;

    const std::size_t data = size - 8;  // the last word is fetch_add's
    const auto length = static_cast<std::uint32_t>(data);
    vmrdma::registrable_buffer out(data), in(data);
    auto out_mr = ep.register_memory(out.span(), vmrdma::access::none);
    auto in_mr = ep.register_memory(in.span(), vmrdma::access::local_write);
    // Small reads in flight together, spread over the region.
    constexpr std::size_t spot = 64;
    const std::size_t spots = std::min<std::size_t>(16, data / spot);
    vmrdma::registrable_buffer spot_buf(std::max<std::size_t>(spots, 1) * spot);
    auto spot_mr = ep.register_memory(spot_buf.span(), vmrdma::access::local_write);
    const std::size_t spot_stride = spots ? data / spots / spot * spot : 0;
    std::fprintf(stderr, "vmrdma-check: %s (mac %s, mtu %u) -> %s endpoint %u, rkey 0x%" PRIx64 ", %zu bytes\n",
                 uri.c_str(), dev->mac().to_string().c_str(), dev->mtu(), peer.mac.to_string().c_str(),
                 peer.endpoint, rkey, size);

    std::uint64_t done = 0;
    auto body = [&]() -> task<void> {
        std::uint64_t last = 0;
        auto since = std::chrono::steady_clock::now();
        std::uint64_t since_rounds = 0;
        for (std::uint64_t r = 1; forever || r <= rounds; ++r) {
            fill(out.data(), data, r);
            fill(in.data(), data, r + 0x5555);  // stale data cannot pass the compare
            co_await conn.write(out_mr, 0, remote, 0, length);
            co_await conn.read(in_mr, 0, remote, 0, length);
            if (std::memcmp(out.data(), in.data(), data) != 0) {
                std::size_t at = 0;
                while (out.data()[at] == in.data()[at]) ++at;
                char buf[160];
                std::snprintf(buf, sizeof buf, "round %" PRIu64 ": byte %zu read back as 0x%02x, wrote 0x%02x", r, at,
                              std::to_integer<unsigned>(in.data()[at]), std::to_integer<unsigned>(out.data()[at]));
                failure = buf;
                co_return;
            }
            std::vector<task<void>> reads;
            for (std::size_t i = 0; i < spots; ++i)
                reads.push_back(conn.read(spot_mr, i * spot, remote, i * spot_stride, spot));
            co_await vmrdma::when_all(std::move(reads));
            for (std::size_t i = 0; i < spots; ++i) {
                if (std::memcmp(spot_buf.data() + i * spot, out.data() + i * spot_stride, spot) != 0) {
                    failure = "round " + std::to_string(r) + ": the read of " + std::to_string(spot) +
                              " bytes at offset " + std::to_string(i * spot_stride) + " differs from what was written";
                    co_return;
                }
            }
            auto old = co_await conn.fetch_add(remote, size - 8, 1);
            if (r > 1 && old != last + 1) {
                failure = "round " + std::to_string(r) + ": fetch_add returned " + std::to_string(old) +
                          ", expected " + std::to_string(last + 1);
                co_return;
            }
            last = old;
            done = r;
            ++since_rounds;
            auto now = std::chrono::steady_clock::now();
            if (!forever) {
                std::fprintf(stderr,
                             "vmrdma-check: round %" PRIu64 "/%llu: %zu bytes written, read back and verified; "
                             "fetch_add returned %" PRIu64 "\n",
                             r, rounds, data, old);
            } else if (now - since >= std::chrono::seconds(1) || r == 1) {
                double s = std::chrono::duration<double>(now - since).count();
                std::fprintf(stderr,
                             "vmrdma-check: round %" PRIu64 ": %" PRIu64 " rounds of %zu bytes verified in %.1f s; "
                             "fetch_add returned %" PRIu64 "\n",
                             r, since_rounds, data, s, old);
                since = now;
                since_rounds = 0;
            }
        }
    };
    try {
        loop.run(body());
    } catch (const vmrdma::error& e) {
        failure = "after " + std::to_string(done) + " rounds: " + e.what();
    }
    if (!failure.empty()) {
        std::printf("vmrdma-check: FAIL: %s\n", failure.c_str());
        return 1;
    }
    std::printf("vmrdma-check: OK: %" PRIu64 " rounds of %zu bytes written, read back and verified; fetch_add ok\n",
                done, data);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    std::setvbuf(stderr, nullptr, _IOLBF, 0);
    std::string mode = argc > 1 ? argv[1] : "";
    bool help = false;
    for (int i = 2; i < argc; ++i) help |= std::strcmp(argv[i], "--help") == 0 || std::strcmp(argv[i], "-h") == 0;
    try {
        if (mode == "serve") {
            if (!help) return serve(argc, argv);
            std::fputs(serve_help, stdout);
            return 0;
        }
        if (mode == "client") {
            if (!help) return client(argc, argv);
            std::fputs(client_help, stdout);
            return 0;
        }
        if (mode == "--help" || mode == "-h" || mode == "help") {
            std::fputs(usage_text, stdout);
            return 0;
        }
        std::fprintf(stderr, "vmrdma-check: %s\n%s",
                     mode.empty() ? "say serve or client" : ("unknown mode '" + mode + "'").c_str(), usage_text);
        return 2;
    } catch (const usage_error& e) {
        std::fprintf(stderr, "vmrdma-check %s: %s (see vmrdma-check %s --help)\n", mode.c_str(), e.what(),
                     mode.c_str());
        return 2;
    } catch (const std::exception& e) {
        std::printf("vmrdma-check: FAIL: %s\n", e.what());
        return 1;
    }
}
