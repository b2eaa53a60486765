// vmrdma-check: a two-sided end-to-end check of one transport, small enough
// to copy into a minimal initramfs (the Xen harness runs it in dom0 and in
// the guests, tests/xen/). The server offers one region and echoes tagged
// messages; the client, round after round, writes a pattern into the
// region, reads it back and compares byte for byte, reads small spots,
// counts with fetch_add and compare_swap on the region's last 8-byte word,
// and sends a tagged message that must come back the same. It can also
// measure rounds/s (write and read back only) and flood the server with
// writes; and, as the baseline, do the same rounds over TCP (check/tcp.hpp).
//
//   vmrdma-check serve  --device URI [--ep N] [--size BYTES] [--name NAME]
//   vmrdma-check client --device URI (--peer MAC --peer-ep N --rkey KEY --size BYTES | --name NAME)
//                       [--ep N] [--rounds R | --forever | --measure SECONDS | --flood] [--length BYTES]
//                       [--depth N]
//   vmrdma-check tcp-serve [--port P]
//   vmrdma-check tcp-client --host IPV4 [--port P] --length BYTES (--rounds R | --measure SECONDS)
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
#include <list>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "examples/check/options.hpp"
#include "examples/check/pattern.hpp"
#include "examples/check/tcp.hpp"
#include "vmrdma/async_scope.hpp"
#include "vmrdma/rdma.hpp"
#include "vmrdma/registrable.hpp"
#include "vmrdma/runtime.hpp"
#include "vmrdma/timeout.hpp"

using vmrdma::task;
using vmrdma::check::fill;
using vmrdma::check::options;
using vmrdma::check::parse_number;
using vmrdma::check::usage_error;

namespace {

constexpr const char* usage_text =
    "usage: vmrdma-check serve  --device URI [--ep N] [--size BYTES] [--name NAME]\n"
    "       vmrdma-check client --device URI --peer MAC --peer-ep N --rkey KEY --size BYTES [...]\n"
    "       vmrdma-check client --device URI --name NAME [...]\n"
    "       vmrdma-check tcp-serve [--port P]\n"
    "       vmrdma-check tcp-client --host IPV4 [--port P] --length BYTES (--rounds R | --measure SECONDS)\n"
    "An end-to-end check of a vmrdma transport (eth:IFNAME, unix:PATH, xen:/dev/vmrdma),\n"
    "and the same rounds over TCP as a baseline. 'vmrdma-check MODE --help' says more.\n";

constexpr const char* serve_help =
    "usage: vmrdma-check serve --device URI [--ep N] [--size BYTES] [--name NAME]\n"
    "Opens listening endpoint N (default 1) on the device, registers a zeroed region of\n"
    "BYTES (default 1M; K and M suffixes; a multiple of 8, at least 16) for remote write,\n"
    "read and atomics, hands the region's descriptor to every client in the accept\n"
    "(private data), announces NAME on the link if given, and prints one line to stdout:\n"
    "  READY mac=XX:XX:XX:XX:XX:XX ep=N rkey=0xKEY size=BYTES\n"
    "Then accepts connections until SIGTERM or SIGINT (then it disconnects its clients,\n"
    "which see peer_gone, and exits 0), and sends every tagged message a client sends (up\n"
    "to 64 KiB) back to it, with the reply bit set in the tag.\n"
    "Connections are kept until their peer disconnects (at most 32: a newcomer beyond that\n"
    "is closed, the clients being served are kept). Progress goes to stderr; on an error\n"
    "'vmrdma-check: FAIL: <what>' goes to stdout and it exits 1.\n";

constexpr const char* client_help =
    "usage: vmrdma-check client --device URI --peer MAC --peer-ep N --rkey KEY --size BYTES\n"
    "                           [--ep N] [--rounds R | --forever | --measure SECONDS | --flood]\n"
    "                           [--length BYTES] [--depth N]\n"
    "       vmrdma-check client --device URI --name NAME [--ep N] [...the same]\n"
    "With --name, finds the server that announces NAME (waiting up to 10 s for it) and\n"
    "takes the region's key and size from what the server hands over in the accept.\n"
    "Connects from local endpoint N (default 1) to the server's endpoint and, per round,\n"
    "fills a buffer with a pattern of that round, RDMA-writes it to the server's region at\n"
    "offset 0 (all of it but the last 8 bytes), RDMA-reads it back into a second buffer,\n"
    "compares byte for byte, reads up to 16 spots of 64 bytes at once and compares them\n"
    "too (small responses that an eth: peer sends as one bundle), does fetch_add 1 on the\n"
    "region's last 8-byte word (at BYTES-8), whose old value must go up by one each round,\n"
    "then compare_swap on that word (a swap that must happen, one that must not, and the\n"
    "swap back), and sends a tagged message of 4 KiB that the server must send back the\n"
    "same. KEY and the sizes are what the server's READY line says. R defaults to 3;\n"
    "--forever runs until killed and prints a line about once a second. Prints\n"
    "  vmrdma-check: OK: R rounds of N bytes written, read back and verified; fetch_add ok\n"
    "and exits 0, or 'vmrdma-check: FAIL: <what> [errc]' and exits 1 (errc: the error's\n"
    "name, e.g. peer_gone). Bad arguments exit 2.\n"
    "--measure SECONDS: rounds of writing LENGTH bytes (default all of the region but its\n"
    "last word) and reading them back, compared, for SECONDS; prints\n"
    "  vmrdma-check: OK: N rounds of LENGTH bytes written, read back and verified in T s\n"
    "  (X rounds/s; F frames sent, R again, T timeouts)\n"
    "(the counts where the transport keeps them: eth:, unix:).\n"
    "--flood: RDMA writes of LENGTH bytes (default 64K), DEPTH (default 16, at most 256) in\n"
    "flight, until killed; a line about once a second says how many bytes went.\n";

// The tag of a client's message: its nonce (handed over in the connect's
// private data) in the high half, the reply bit, and the round.
constexpr std::uint64_t reply_bit = 1ull << 31;
constexpr std::size_t message_size = 4096;
constexpr std::size_t echo_buffer = 64 << 10;
constexpr const char* hello_prefix = "vmrdma-check client ";

std::uint16_t parse_ep(const std::string& text, const std::string& option) {
    return static_cast<std::uint16_t>(parse_number(text, 65535, option + " must be an endpoint id 0..65535"));
}

std::size_t parse_region_size(const std::string& text) {
    const std::string what = "--size must be 16 bytes to 1G and a multiple of 8 (e.g. 1M or 1048576)";
    std::size_t size = vmrdma::check::parse_bytes(text, 1ull << 30, what);
    if (size < 16 || size % 8 != 0) throw usage_error(what + ", got " + text);
    return size;
}

// "what [errc]": the error's message and, for vmrdma's own codes, the name a
// script can look for (e.g. peer_gone).
std::string describe(const vmrdma::error& e) {
    static constexpr const char* names[] = {
        nullptr,          "timeout",          "cancelled",         "peer_gone",         "remote_access",
        "bad_key",        "out_of_bounds",    "access_denied",     "no_such_endpoint",  "receiver_not_ready",
        "resources_exhausted", "invalid_argument", "permission_denied", "protocol_error", "shut_down",
        "message_too_long", "name_in_use",   "not_found",
    };
    static_assert(std::size(names) == static_cast<std::size_t>(vmrdma::errc::not_found) + 1,
                  "a name for every errc");
    std::string text = e.what();
    int v = e.code().value();
    if (e.code().category() == vmrdma::category() && v > 0 && v < int(std::size(names)))
        text += std::string(" [") + names[v] + "]";
    return text;
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

// A client's nonce from its private data; 0 if it sent none.
std::uint32_t nonce_of(std::span<const std::byte> data) {
    std::string text(reinterpret_cast<const char*>(data.data()), data.size());
    if (text.rfind(hello_prefix, 0) != 0) return 0;
    return static_cast<std::uint32_t>(std::strtoul(text.c_str() + std::strlen(hello_prefix), nullptr, 16));
}

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
    vmrdma::registrable_buffer echo(echo_buffer);
    auto echo_mr = ep.register_memory(echo.span(), vmrdma::access::local_write);
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

    // Open connections by the nonce their client sent (0: none). A list: an
    // echo being sent keeps its connection where it is while the others go.
    std::list<std::pair<std::uint32_t, vmrdma::connection>> kept;
    const vmrdma::connection* echoing = nullptr;
    // Failed connections are closed here, which disconnects them: until
    // then the endpoint, with no other peer, cannot post a receive.
    auto let_go_of_failed = [&] {
        std::erase_if(kept, [&](const auto& c) { return !c.second.is_open() && &c.second != echoing; });
    };
    auto accept_loop = [&]() -> task<void> {
        constexpr std::size_t max_kept = 32;
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
            let_go_of_failed();
            if (kept.size() >= max_kept) {
                // Full: the newcomer is closed, not an established peer (a
                // flood of connections must not evict the clients being served).
                std::fprintf(stderr, "vmrdma-check: connection %lu closed: %zu already open\n", accepted,
                             kept.size());
                continue;  // conn's destructor disconnects it
            }
            kept.emplace_back(nonce_of(conn.peer_data()), std::move(conn));
            std::fprintf(stderr, "vmrdma-check: accepted connection %lu (%zu open)\n", accepted, kept.size());
        }
    };
    // Every message goes back to the connection whose nonce its tag carries.
    auto echo_loop = [&]() -> task<void> {
        bool failing = false;
        for (;;) {
            vmrdma::recv_result got;
            bool failed = false;
            try {
                got = co_await ep.recv(echo_mr, 0, echo_buffer, 0, 0, stop.get_token());
            } catch (const vmrdma::error& e) {
                if (stop.stop_requested()) co_return;
                // The last peer's connection failed (peer_gone, timeout): a
                // receive fails at once until it is closed. Said once per
                // run of failures, and never a spin that starves the loop.
                if (!failing) std::fprintf(stderr, "vmrdma-check: receive failed: %s\n", describe(e).c_str());
                failed = true;
            }
            failing = failed;
            if (failed) {
                let_go_of_failed();
                co_await loop.sleep_for(std::chrono::milliseconds(10));
                continue;
            }
            auto nonce = static_cast<std::uint32_t>(got.tag >> 32);
            auto it = std::find_if(kept.begin(), kept.end(),
                                   [&](const auto& c) { return nonce && c.first == nonce && c.second.is_open(); });
            if (it == kept.end() || (got.tag & reply_bit)) {
                std::fprintf(stderr, "vmrdma-check: a message with tag 0x%" PRIx64 " has nobody to go back to\n",
                             got.tag);
                continue;
            }
            echoing = &it->second;
            try {
                co_await it->second.send(echo_mr, 0, static_cast<std::uint32_t>(got.length), got.tag | reply_bit);
            } catch (const vmrdma::error& e) {
                std::fprintf(stderr, "vmrdma-check: echo failed: %s\n", describe(e).c_str());
            }
            echoing = nullptr;
        }
    };
    auto body = [&]() -> task<void> {
        co_await vmrdma::when_all(accept_loop(), echo_loop());
        // Stopping: the clients learn it now (peer_gone), not from a
        // timeout; a loop turn sends the DISCONNECTs.
        for (auto& c : kept) c.second.close();
        co_await loop.sleep_for(std::chrono::milliseconds(20));
    };
    loop.run(body());
    return 0;
}

enum class client_mode { verify, measure, flood };

int client(int argc, char** argv) {
    options opt(argc, argv, 2,
                {"device", "peer", "peer-ep", "rkey", "size", "ep", "rounds", "name", "measure", "length", "depth"},
                {"forever", "flood"});
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
    int modes = forever + opt.has("rounds") + opt.has("measure") + opt.has("flood");
    if (modes > 1) throw usage_error("--rounds, --forever, --measure and --flood exclude each other");
    auto mode = opt.has("measure") ? client_mode::measure : opt.has("flood") ? client_mode::flood : client_mode::verify;
    auto rounds = parse_number(opt.get("rounds", "3"), 1'000'000'000, "--rounds must be 1 or more");
    if (rounds == 0) throw usage_error("--rounds must be 1 or more");
    unsigned seconds = mode == client_mode::measure ? vmrdma::check::parse_seconds(opt.get("measure"), "--measure") : 0;
    if (opt.has("length") && mode == client_mode::verify)
        throw usage_error("--length goes with --measure or --flood");
    if (opt.has("depth") && mode != client_mode::flood) throw usage_error("--depth goes with --flood");
    auto depth = parse_number(opt.get("depth", "16"), 256, "--depth must be 1..256");
    if (depth == 0) throw usage_error("--depth must be 1..256");

    vmrdma::event_loop loop;
    auto dev = vmrdma::device::open(loop, uri);
    auto ep = dev->open_endpoint(ep_id);
    vmrdma::connection conn;
    // Names this client's messages, so the server can send them back.
    const std::uint32_t nonce = static_cast<std::uint32_t>(std::random_device{}()) | 1;  // never 0
    std::string failure;
    auto connect = [&]() -> task<void> {
        if (by_name) {
            peer = co_await ep.resolve(opt.required("name"), std::chrono::seconds(10));
            std::fprintf(stderr, "vmrdma-check: '%s' is %s endpoint %u\n", opt.required("name").c_str(),
                         peer.mac.to_string().c_str(), peer.endpoint);
        }
        char hello[64];
        int n = std::snprintf(hello, sizeof hello, "%s%08x", hello_prefix, nonce);
        conn = co_await ep.connect(
            peer, {.private_data = std::as_bytes(std::span(hello, static_cast<std::size_t>(n)))});
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
        failure = "connect: " + describe(e);
    }
    if (!failure.empty()) {
        std::printf("vmrdma-check: FAIL: %s\n", failure.c_str());
        return 1;
    }
    std::fprintf(stderr, "vmrdma-check: connected\n");
    const std::size_t size = remote.length;
    const std::size_t data = size - 8;  // the last word is the atomics'
    std::size_t length = data;
    if (opt.has("length") || mode == client_mode::flood) {
        length = vmrdma::check::parse_bytes(opt.get("length", "64K"), data,
                                            "--length must be 1 byte .. the server's region less 8 bytes (" +
                                                std::to_string(data) + ")");
    }
    std::fprintf(stderr, "vmrdma-check: %s (mac %s, mtu %u) -> %s endpoint %u, rkey 0x%" PRIx64 ", %zu bytes\n",
                 uri.c_str(), dev->mac().to_string().c_str(), dev->mtu(), peer.mac.to_string().c_str(),
                 peer.endpoint, remote.rkey, size);

    vmrdma::registrable_buffer out(length), in(length);
    auto out_mr = ep.register_memory(out.span(), vmrdma::access::none);
    auto in_mr = ep.register_memory(in.span(), vmrdma::access::local_write);
    std::uint64_t done = 0;
    const auto started = std::chrono::steady_clock::now();

    // One write and read back of `length` bytes, compared.
    auto write_read = [&](std::uint64_t r) -> task<void> {
        fill(out.data(), length, r);
        fill(in.data(), length, r + 0x5555);  // stale data cannot pass the compare
        co_await conn.write(out_mr, 0, remote, 0, static_cast<std::uint32_t>(length));
        co_await conn.read(in_mr, 0, remote, 0, static_cast<std::uint32_t>(length));
        if (std::memcmp(out.data(), in.data(), length) != 0) {
            std::size_t at = 0;
            while (out.data()[at] == in.data()[at]) ++at;
            char buf[160];
            std::snprintf(buf, sizeof buf, "round %" PRIu64 ": byte %zu read back as 0x%02x, wrote 0x%02x", r, at,
                          std::to_integer<unsigned>(in.data()[at]), std::to_integer<unsigned>(out.data()[at]));
            failure = buf;
        }
    };

    // Small reads in flight together, spread over the region.
    constexpr std::size_t spot = 64;
    const std::size_t spots = std::min<std::size_t>(16, data / spot);
    vmrdma::registrable_buffer spot_buf(std::max<std::size_t>(spots, 1) * spot);
    auto spot_mr = ep.register_memory(spot_buf.span(), vmrdma::access::local_write);
    const std::size_t spot_stride = spots ? data / spots / spot * spot : 0;
    vmrdma::registrable_buffer msg_out(message_size), msg_in(message_size);
    auto msg_out_mr = ep.register_memory(msg_out.span(), vmrdma::access::none);
    auto msg_in_mr = ep.register_memory(msg_in.span(), vmrdma::access::local_write);

    auto verify = [&]() -> task<void> {
        std::uint64_t last = 0;
        auto since = std::chrono::steady_clock::now();
        std::uint64_t since_rounds = 0;
        const std::uint64_t word = size - 8;
        for (std::uint64_t r = 1; forever || r <= rounds; ++r) {
            co_await write_read(r);
            if (!failure.empty()) co_return;
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
            auto old = co_await conn.fetch_add(remote, word, 1);
            if (r > 1 && old != last + 1) {
                failure = "round " + std::to_string(r) + ": fetch_add returned " + std::to_string(old) +
                          ", expected " + std::to_string(last + 1);
                co_return;
            }
            last = old;
            // compare_swap: a swap that must happen, one whose compare must
            // fail (leaving the word alone), and the swap back, so the
            // counter goes on for the next fetch_add.
            const std::uint64_t now_word = old + 1, flipped = now_word ^ (1ull << 62);
            auto c1 = co_await conn.compare_swap(remote, word, now_word, flipped);
            auto c2 = co_await conn.compare_swap(remote, word, now_word, 0);
            auto c3 = co_await conn.compare_swap(remote, word, flipped, now_word);
            if (c1 != now_word || c2 != flipped || c3 != flipped) {
                failure = "round " + std::to_string(r) + ": compare_swap returned " + std::to_string(c1) + ", " +
                          std::to_string(c2) + ", " + std::to_string(c3) + "; expected " + std::to_string(now_word) +
                          ", then " + std::to_string(flipped) + " twice";
                co_return;
            }
            // A tagged message there and back: the receive for the reply is
            // posted before the send.
            const std::uint64_t tag = std::uint64_t(nonce) << 32 | (r & (reply_bit - 1));
            fill(msg_out.data(), message_size, r ^ 0xa5a5);
            fill(msg_in.data(), message_size, r ^ 0x5a5a);
            // A server that does not echo (or loses the reply) must not hang us.
            auto reply = [&](std::stop_token stop) {
                return ep.recv(msg_in_mr, 0, message_size, tag | reply_bit, ~0ull, std::move(stop));
            };
            vmrdma::recv_result got;
            try {
                auto both = co_await vmrdma::when_all(vmrdma::with_timeout(loop, std::chrono::seconds(30), reply),
                                                      conn.send(msg_out_mr, 0, message_size, tag));
                got = std::get<0>(both);
            } catch (const vmrdma::error& e) {
                if (e.code() != vmrdma::errc::timeout) throw;
                failure = "round " + std::to_string(r) + ": the tagged message did not come back in 30 s [timeout]";
                co_return;
            }
            if (got.tag != (tag | reply_bit) || got.length != message_size ||
                std::memcmp(msg_in.data(), msg_out.data(), message_size) != 0) {
                failure = "round " + std::to_string(r) + ": the tagged message came back as " +
                          std::to_string(got.length) + " bytes with tag " + std::to_string(got.tag) +
                          (got.length == message_size ? ", different" : "");
                co_return;
            }
            done = r;
            ++since_rounds;
            auto now = std::chrono::steady_clock::now();
            if (!forever) {
                std::fprintf(stderr,
                             "vmrdma-check: round %" PRIu64 "/%llu: %zu bytes written, read back and verified; "
                             "fetch_add returned %" PRIu64 ", compare_swap and a %zu-byte tagged message ok\n",
                             r, rounds, data, old, message_size);
            } else if (now - since >= std::chrono::seconds(1) || r == 1) {
                double secs = std::chrono::duration<double>(now - since).count();
                std::fprintf(stderr,
                             "vmrdma-check: round %" PRIu64 ": %" PRIu64 " rounds of %zu bytes verified in %.1f s; "
                             "fetch_add returned %" PRIu64 "\n",
                             r, since_rounds, data, secs, old);
                since = now;
                since_rounds = 0;
            }
        }
    };

    auto measure = [&]() -> task<void> {
        const auto end = started + std::chrono::seconds(seconds);
        for (std::uint64_t r = 1; std::chrono::steady_clock::now() < end; ++r) {
            co_await write_read(r);
            if (!failure.empty()) co_return;
            done = r;
        }
    };

    std::uint64_t flooded = 0;
    auto flood = [&]() -> task<void> {
        fill(out.data(), length, 1);
        bool stop = false;
        auto worker = [&]() -> task<void> {
            try {
                while (!stop) {
                    co_await conn.write(out_mr, 0, remote, 0, static_cast<std::uint32_t>(length));
                    flooded += length;
                }
            } catch (...) {
                stop = true;  // the others and the reporter end too
                throw;
            }
        };
        auto reporter = [&]() -> task<void> {
            std::uint64_t before = 0;
            while (!stop) {
                co_await loop.sleep_for(std::chrono::seconds(1));
                std::fprintf(stderr, "vmrdma-check: flood: %.2f MiB/s (%" PRIu64 " bytes in all)\n",
                             double(flooded - before) / (1 << 20), flooded);
                before = flooded;
            }
        };
        vmrdma::async_scope scope;
        for (std::uint64_t i = 0; i < depth; ++i) scope.spawn(worker);
        scope.spawn(reporter);
        co_await scope.join();  // rethrows the first worker's failure
    };

    try {
        if (mode == client_mode::verify) loop.run(verify());
        else if (mode == client_mode::measure) loop.run(measure());
        else loop.run(flood());
    } catch (const vmrdma::error& e) {
        failure = (mode == client_mode::flood ? "after " + std::to_string(flooded) + " bytes flooded: "
                                              : "after " + std::to_string(done) + " rounds: ") +
                  describe(e);
    }
    if (!failure.empty()) {
        std::printf("vmrdma-check: FAIL: %s\n", failure.c_str());
        return 1;
    }
    if (mode == client_mode::measure) {
        double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
        // How much the link made it resend, where the transport counts
        // (eth:, unix:; on xen: the backend does: /proc/vmrdma_back).
        auto c = ep.stats();
        char counts[128] = "";
        if (c.tx_frames)
            std::snprintf(counts, sizeof counts, "; %" PRIu64 " frames sent, %" PRIu64 " again, %" PRIu64 " timeouts",
                          c.tx_frames, c.retransmits, c.timeouts);
        std::printf("vmrdma-check: OK: %" PRIu64 " rounds of %zu bytes written, read back and verified in %.1f s "
                    "(%.1f rounds/s%s)\n",
                    done, length, secs, secs > 0 ? double(done) / secs : 0.0, counts);
    } else {
        std::printf("vmrdma-check: OK: %" PRIu64 " rounds of %zu bytes written, read back and verified; "
                    "fetch_add ok\n",
                    done, data);
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    std::setvbuf(stderr, nullptr, _IOLBF, 0);
    std::string mode = argc > 1 ? argv[1] : "";
    bool help = false;
    for (int i = 2; i < argc; ++i) help |= std::strcmp(argv[i], "--help") == 0 || std::strcmp(argv[i], "-h") == 0;
    struct entry {
        const char* name;
        int (*run)(int, char**);
        const char* help;
    };
    static constexpr entry modes[] = {
        {"serve", serve, serve_help},
        {"client", client, client_help},
        {"tcp-serve", vmrdma::check::tcp_serve, vmrdma::check::tcp_serve_help},
        {"tcp-client", vmrdma::check::tcp_client, vmrdma::check::tcp_client_help},
    };
    try {
        for (const auto& m : modes) {
            if (mode != m.name) continue;
            if (!help) return m.run(argc, argv);
            std::fputs(m.help, stdout);
            return 0;
        }
        if (mode == "--help" || mode == "-h" || mode == "help") {
            std::fputs(usage_text, stdout);
            return 0;
        }
        std::fprintf(stderr, "vmrdma-check: %s\n%s",
                     mode.empty() ? "say serve, client, tcp-serve or tcp-client"
                                  : ("unknown mode '" + mode + "'").c_str(),
                     usage_text);
        return 2;
    } catch (const usage_error& e) {
        std::fprintf(stderr, "vmrdma-check %s: %s (see vmrdma-check %s --help)\n", mode.c_str(), e.what(),
                     mode.c_str());
        return 2;
    } catch (const vmrdma::error& e) {
        std::printf("vmrdma-check: FAIL: %s\n", describe(e).c_str());
        return 1;
    } catch (const std::exception& e) {
        std::printf("vmrdma-check: FAIL: %s\n", e.what());
        return 1;
    }
}
