// vmrdmactl: administration of vmrdmad over its control socket
// (docs/split-driver.md, "Administration"). Lists frontends, endpoints,
// connections and the device's counters; sets a frontend's weight and limits
// (root or the daemon's uid only: the daemon checks SO_PEERCRED).
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "admin_client.hpp"

namespace {

const char* const usage_text =
    "usage: vmrdmactl [--socket PATH] [--json] COMMAND\n"
    "\n"
    "  status                       everything below (the default)\n"
    "  frontends                    pid/uid (SO_PEERCRED), ring, endpoints, regions, mapped bytes,\n"
    "                               requests/responses/failed/rejected/violations, limits\n"
    "  endpoints                    per frontend endpoint: weight, connections, engine counters\n"
    "  connections                  per frontend connection: endpoint, peer\n"
    "  device                       the NIC's counters and the daemon's\n"
    "  uids                         per user: frontends, endpoints and connections held, its limits,\n"
    "                               what is kept for others, requests refused for its share\n"
    "  set-weight FRONTEND W        weight of every endpoint of FRONTEND, now and later (1..1024;\n"
    "                               0 gives back the frontend's own choice)\n"
    "  set-limit FRONTEND WHAT N    WHAT: endpoints, regions, bytes, weight (max weight it may ask)\n"
    "\n"
    "FRONTEND is the id `vmrdmactl frontends` shows. Changing anything needs root or vmrdmad's uid.\n"
    "--socket defaults to /run/vmrdma.sock. --json prints one JSON object.\n"
    "Exit status: 0 done, 1 refused or failed, 2 usage.\n";

std::string mac_text(const std::uint8_t* b) {
    char buf[18];
    std::snprintf(buf, sizeof buf, "%02x:%02x:%02x:%02x:%02x:%02x", b[0], b[1], b[2], b[3], b[4], b[5]);
    return buf;
}

std::string mac_text(std::uint64_t packed) {
    std::uint8_t b[6];
    for (int i = 0; i < 6; ++i) b[i] = static_cast<std::uint8_t>(packed >> (8 * i));
    return mac_text(b);
}

using u64 = unsigned long long;

struct json_out {
    std::string s;
    bool first = true;
    void open(const char* key, char bracket) {
        sep();
        if (key) s += std::string("\"") + key + "\":";
        s += bracket;
        first = true;
    }
    void close(char bracket) {
        s += bracket;
        first = false;
    }
    void sep() {
        if (!first) s += ',';
        first = false;
    }
    void num(const char* key, std::uint64_t v) {
        sep();
        s += std::string("\"") + key + "\":" + std::to_string(v);
    }
    void snum(const char* key, std::int64_t v) {
        sep();
        s += std::string("\"") + key + "\":" + std::to_string(v);
    }
    void str(const char* key, const std::string& v) {
        sep();
        s += std::string("\"") + key + "\":\"" + v + "\"";
    }
    void boolean(const char* key, bool v) {
        sep();
        s += std::string("\"") + key + "\":" + (v ? "true" : "false");
    }
};

void print_frontends(vmrdmad::admin_client& c, json_out* j) {
    auto all = c.frontends();
    if (j) {
        j->open("frontends", '[');
        for (auto& f : all) {
            j->open(nullptr, '{');
            j->num("id", f.id);
            j->snum("pid", f.pid);
            j->num("uid", f.uid);
            j->num("gid", f.gid);
            j->num("ring_size", f.ring_size);
            j->num("in_flight", f.in_flight);
            j->num("endpoints", f.endpoints);
            j->num("regions", f.regions);
            j->num("connections", f.conns);
            j->num("mapped_bytes", f.mapped_bytes);
            j->num("requests", f.requests);
            j->num("responses", f.responses);
            j->num("failed", f.failed);
            j->num("rejected", f.rejected);
            j->num("violations", f.violations);
            j->num("weight", f.weight);
            j->open("limits", '{');
            j->num("endpoints", f.max_endpoints);
            j->num("regions", f.max_regions);
            j->num("bytes", f.max_bytes);
            j->num("weight", f.max_weight);
            j->close('}');
            j->boolean("draining", f.draining);
            j->close('}');
        }
        j->close(']');
        return;
    }
    std::printf("FRONTENDS\n%4s %8s %6s %5s %6s %4s %4s %5s %12s %10s %10s %7s %7s %5s %6s  %s\n", "ID", "PID", "UID",
                "RING", "FLIGHT", "EPS", "REGS", "CONNS", "MAPPED", "REQUESTS", "RESPONSES", "FAILED", "REJECT",
                "VIOL", "WEIGHT", "LIMITS (eps/regs/bytes/weight)");
    for (auto& f : all)
        std::printf("%4u %8d %6u %5u %6u %4u %4u %5u %12llu %10llu %10llu %7llu %7llu %5llu %6s  %u/%u/%llu/%u\n",
                    f.id, f.pid, f.uid, f.ring_size, f.in_flight, f.endpoints, f.regions, f.conns,
                    u64(f.mapped_bytes), u64(f.requests), u64(f.responses), u64(f.failed), u64(f.rejected),
                    u64(f.violations), f.weight ? std::to_string(f.weight).c_str() : "-", f.max_endpoints,
                    f.max_regions, u64(f.max_bytes), f.max_weight);
}

void print_endpoints(vmrdmad::admin_client& c, json_out* j) {
    auto all = c.endpoints();
    if (j) {
        j->open("endpoints", '[');
        for (auto& e : all) {
            j->open(nullptr, '{');
            j->num("frontend", e.frontend);
            j->num("endpoint", e.ep);
            j->boolean("listen", e.listen);
            j->num("weight", e.weight);
            j->num("connections", e.conns);
            j->num("regions", e.regions);
            j->num("tx_frames", e.tx_frames);
            j->num("tx_bytes", e.tx_bytes);
            j->num("rx_frames", e.rx_frames);
            j->num("rx_bytes", e.rx_bytes);
            j->num("retransmits", e.retransmits);
            j->num("naks_sent", e.naks_tx);
            j->num("naks_received", e.naks_rx);
            j->close('}');
        }
        j->close(']');
        return;
    }
    std::printf("ENDPOINTS\n%8s %5s %6s %6s %5s %4s %10s %14s %10s %14s %8s %6s %6s\n", "FRONTEND", "EP", "LISTEN",
                "WEIGHT", "CONNS", "REGS", "TX_FRAMES", "TX_BYTES", "RX_FRAMES", "RX_BYTES", "RETRANS", "NAK_TX",
                "NAK_RX");
    for (auto& e : all)
        std::printf("%8u %5u %6s %6u %5u %4u %10llu %14llu %10llu %14llu %8llu %6llu %6llu\n", e.frontend, e.ep,
                    e.listen ? "yes" : "no", e.weight, e.conns, e.regions, u64(e.tx_frames), u64(e.tx_bytes),
                    u64(e.rx_frames), u64(e.rx_bytes), u64(e.retransmits), u64(e.naks_tx), u64(e.naks_rx));
}

void print_connections(vmrdmad::admin_client& c, json_out* j) {
    auto all = c.connections();
    if (j) {
        j->open("connections", '[');
        for (auto& k : all) {
            j->open(nullptr, '{');
            j->num("frontend", k.frontend);
            j->num("handle", k.handle);
            j->num("endpoint", k.ep);
            j->str("how", k.accepted ? "accepted" : "connected");
            if (!k.accepted) {
                j->str("peer_mac", mac_text(k.peer_mac));
                j->num("peer_endpoint", k.peer_ep);
            }
            j->boolean("open", k.open);
            j->close('}');
        }
        j->close(']');
        return;
    }
    std::printf("CONNECTIONS\n%8s %6s %5s %9s %17s %7s %4s\n", "FRONTEND", "HANDLE", "EP", "HOW", "PEER_MAC", "PEER_EP",
                "OPEN");
    for (auto& k : all)
        std::printf("%8u %6u %5u %9s %17s %7s %4s\n", k.frontend, k.handle, k.ep,
                    k.accepted ? "accepted" : "connected", k.accepted ? "?" : mac_text(k.peer_mac).c_str(),
                    k.accepted ? "?" : std::to_string(k.peer_ep).c_str(), k.open ? "yes" : "no");
}

void print_uids(vmrdmad::admin_client& c, json_out* j) {
    auto all = c.uids();
    auto lim = [](std::uint32_t v) { return v ? std::to_string(v) : std::string("-"); };
    if (j) {
        j->open("uids", '[');
        for (auto& u : all) {
            j->open(nullptr, '{');
            j->num("uid", u.uid);
            j->num("frontends", u.frontends);
            j->num("endpoints", u.endpoints);
            j->num("connections", u.conns);
            j->num("max_frontends", u.max_frontends);
            j->num("max_endpoints", u.max_endpoints);
            j->num("max_connections", u.max_conns);
            j->num("reserve_frontends", u.reserve_frontends);
            j->num("reserve_endpoints", u.reserve_endpoints);
            j->num("reserve_connections", u.reserve_conns);
            j->num("refused", u.refused);
            j->close('}');
        }
        j->close(']');
        return;
    }
    std::printf("UIDS (held/limit; '-': not limited; reserve kept for others)\n%8s %14s %14s %14s %8s\n", "UID",
                "FRONTENDS", "ENDPOINTS", "CONNECTIONS", "REFUSED");
    for (auto& u : all) {
        auto cell = [&](std::uint32_t held, std::uint32_t max, std::uint32_t reserve) {
            return std::to_string(held) + "/" + lim(max) + " r" + std::to_string(reserve);
        };
        std::printf("%8u %14s %14s %14s %8llu\n", u.uid, cell(u.frontends, u.max_frontends, u.reserve_frontends).c_str(),
                    cell(u.endpoints, u.max_endpoints, u.reserve_endpoints).c_str(),
                    cell(u.conns, u.max_conns, u.reserve_conns).c_str(), u64(u.refused));
    }
}

void print_device(vmrdmad::admin_client& c, json_out* j) {
    auto d = c.device();
    if (j) {
        j->open("device", '{');
        j->str("mac", mac_text(d.mac));
        j->num("mtu", d.mtu);
        j->boolean("draining", d.draining);
        j->num("tx_frames", d.tx_frames);
        j->num("tx_bytes", d.tx_bytes);
        j->num("rx_frames", d.rx_frames);
        j->num("rx_bytes", d.rx_bytes);
        j->num("retransmits", d.retransmits);
        j->num("timeouts", d.timeouts);
        j->num("duplicates", d.duplicates);
        j->num("rx_dropped", d.rx_dropped);
        j->num("naks_sent", d.naks_tx);
        j->num("naks_received", d.naks_rx);
        j->open("refused", '{');
        j->num("cookies_refused", d.cookies_refused);
        j->num("challenges", d.challenges);
        j->num("connections_refused", d.connections_refused);
        j->num("out_of_window", d.out_of_window);
        j->num("auth_failed", d.auth_failed);
        j->num("replays", d.replays);
        j->num("offences", d.offences);
        j->close('}');
        j->num("authenticated", d.auth);
        j->open("daemon", '{');
        j->num("frontends_accepted", d.frontends_accepted);
        j->num("frontends_active", d.frontends_active);
        j->num("frontends_cleaned_up", d.frontends_cleaned_up);
        j->num("requests", d.requests);
        j->num("responses", d.responses);
        j->num("rejected", d.rejected);
        j->num("violations", d.violations);
        j->num("control_errors", d.control_errors);
        j->close('}');
        j->close('}');
        return;
    }
    std::printf("DEVICE %s MTU %u%s%s\n", mac_text(d.mac).c_str(), d.mtu, d.draining ? " (draining)" : "",
                d.auth ? ", frames authenticated (pre-shared key)" : ", frames CRC only");
    std::printf("  tx %llu frames %llu bytes; rx %llu frames %llu bytes\n", u64(d.tx_frames), u64(d.tx_bytes),
                u64(d.rx_frames), u64(d.rx_bytes));
    std::printf("  retransmits %llu, timeouts %llu, duplicates %llu, dropped %llu, NAKs sent %llu received %llu\n",
                u64(d.retransmits), u64(d.timeouts), u64(d.duplicates), u64(d.rx_dropped), u64(d.naks_tx),
                u64(d.naks_rx));
    std::printf("  refused: %llu bad cookies, %llu challenged requests, %llu connections refused, %llu frames "
                "outside windows, %llu bad tags, %llu replays, %llu offences\n",
                u64(d.cookies_refused), u64(d.challenges), u64(d.connections_refused), u64(d.out_of_window),
                u64(d.auth_failed), u64(d.replays), u64(d.offences));
    std::printf("  frontends: %llu accepted, %llu active, %llu cleaned up; requests %llu, responses %llu, "
                "rejected %llu, violations %llu, control errors %llu\n",
                u64(d.frontends_accepted), u64(d.frontends_active), u64(d.frontends_cleaned_up), u64(d.requests),
                u64(d.responses), u64(d.rejected), u64(d.violations), u64(d.control_errors));
}

bool parse_u64(const char* s, std::uint64_t& out) {
    if (!*s || *s == '-') return false;
    char* end = nullptr;
    errno = 0;
    out = std::strtoull(s, &end, 0);
    return errno == 0 && *end == 0;
}

}  // namespace

int main(int argc, char** argv) {
    std::string socket_path = "/run/vmrdma.sock";
    bool json = false;
    std::vector<std::string> args;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "--help" || a == "-h") {
            std::fputs(usage_text, stdout);
            return 0;
        } else if (a == "--json") {
            json = true;
        } else if (a == "--socket") {
            if (++i >= argc) {
                std::fputs(usage_text, stderr);
                return 2;
            }
            socket_path = argv[i];
        } else if (a.rfind("--socket=", 0) == 0) {
            socket_path = a.substr(9);
        } else if (a.size() > 1 && a[0] == '-') {
            std::fprintf(stderr, "vmrdmactl: unknown option %s\n\n%s", a.c_str(), usage_text);
            return 2;
        } else {
            args.push_back(a);
        }
    }
    std::string cmd = args.empty() ? "status" : args[0];
    auto bad_usage = [&] {
        std::fputs(usage_text, stderr);
        return 2;
    };
    try {
        if (cmd == "set-weight" || cmd == "set-limit") {
            std::uint64_t frontend = 0, value = 0;
            std::uint32_t what = VR_ADMIN_SET_WEIGHT;
            std::size_t value_at = 2;
            if (cmd == "set-weight") {
                if (args.size() != 3) return bad_usage();
            } else {
                if (args.size() != 4) return bad_usage();
                const std::string& w = args[2];
                if (w == "endpoints")
                    what = VR_ADMIN_SET_MAX_ENDPOINTS;
                else if (w == "regions")
                    what = VR_ADMIN_SET_MAX_REGIONS;
                else if (w == "bytes")
                    what = VR_ADMIN_SET_MAX_BYTES;
                else if (w == "weight")
                    what = VR_ADMIN_SET_MAX_WEIGHT;
                else
                    return bad_usage();
                value_at = 3;
            }
            if (!parse_u64(args[1].c_str(), frontend) || frontend > 0xffffffffu ||
                !parse_u64(args[value_at].c_str(), value))
                return bad_usage();
            vmrdmad::admin_client c(socket_path);
            c.set(static_cast<std::uint32_t>(frontend), what, value);
            if (json) std::printf("{\"ok\":true}\n");
            return 0;
        }
        if (args.size() > 1) return bad_usage();
        bool all = cmd == "status";
        if (!all && cmd != "frontends" && cmd != "endpoints" && cmd != "connections" && cmd != "device" &&
            cmd != "uids")
            return bad_usage();
        vmrdmad::admin_client c(socket_path);
        json_out j;
        json_out* jp = json ? &j : nullptr;
        if (json) j.open(nullptr, '{');
        if (all || cmd == "device") print_device(c, jp);
        if (all || cmd == "frontends") print_frontends(c, jp);
        if (all || cmd == "endpoints") print_endpoints(c, jp);
        if (all || cmd == "connections") print_connections(c, jp);
        if (all || cmd == "uids") print_uids(c, jp);
        if (json) {
            j.close('}');
            std::printf("%s\n", j.s.c_str());
        }
        return 0;
    } catch (const vmrdmad::admin_error& e) {
        if (json) {
            std::string text;
            for (const char* p = e.what(); *p; ++p)
                if (*p != '"' && *p != '\\' && static_cast<unsigned char>(*p) >= 0x20) text += *p;
            std::printf("{\"ok\":false,\"errno\":%d,\"error\":\"%s\"}\n", -e.status, text.c_str());
        }
        std::fprintf(stderr, "vmrdmactl: %s%s\n", e.what(),
                     e.status == -EPERM ? " (run it as root or as the user vmrdmad runs as)" : "");
        return 1;
    }
}
