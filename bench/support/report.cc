#include "bench/support/report.hpp"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace vmrdma::bench {

namespace {
constexpr double gib = 1024.0 * 1024.0 * 1024.0;

std::string size_label(std::size_t s) {
    if (s >= (1u << 20) && s % (1u << 20) == 0) return std::to_string(s >> 20) + "M";
    if (s >= 1024 && s % 1024 == 0) return std::to_string(s >> 10) + "K";
    return std::to_string(s);
}

double ratio(double a, double b) { return b > 0 ? a / b : 0; }
}  // namespace

path_figures figures_from(const side_result& client, const side_result& server, bool receiver_is_server) {
    path_figures f;
    if (!client.ok || !server.ok) {
        f.error = client.ok ? server.error : client.error;
        return f;
    }
    const side_result& rx = receiver_is_server ? server : client;
    f.measured = true;
    f.retransmits = client.retransmits + server.retransmits;
    f.timeouts = client.timeouts + server.timeouts;
    f.gib_per_s = rx.seconds > 0 ? rx.bytes / rx.seconds / gib : 0;
    // Messages count where they are delivered: at the receiver when it counts
    // them (TCP's reader, the raw sink), else at the side whose completion
    // says the peer has them (vmrdma's requester).
    const side_result& counter = rx.messages > 0 ? rx : client;
    f.messages_per_s = counter.seconds > 0 ? counter.messages / counter.seconds : 0;
    // CPU per GiB delivered: the receiver's count where it keeps one (TCP's
    // reader, the raw sink: frames the sink dropped cost CPU, carry nothing),
    // else the requester's (vmrdma's completions say the peer has them).
    double moved = (rx.bytes > 0 ? rx.bytes : client.bytes) / gib;
    f.client_cpu_s_per_gib = moved > 0 ? client.cpu_seconds / moved : 0;
    f.server_cpu_s_per_gib = moved > 0 ? server.cpu_seconds / moved : 0;
    f.latency_median_us = client.latency_median_us;
    f.latency_p99_us = client.latency_p99_us;
    return f;
}

void print_table(std::FILE* out, mode m, const std::vector<row>& rows) {
    if (m == mode::lat) {
        std::fprintf(out, "%8s | %10s %10s | %10s %10s | %10s %10s | %8s %8s\n", "#bytes", "vmrdma p50", "p99",
                     "tcp p50", "p99", "raw p50", "p99", "vs tcp", "raw/tcp");
        for (const auto& r : rows)
            std::fprintf(out, "%8s | %8.1fus %8.1fus | %8.1fus %8.1fus | %8.1fus %8.1fus | %7.2fx %7.2fx\n",
                         size_label(r.size).c_str(), r.vmrdma.latency_median_us, r.vmrdma.latency_p99_us,
                         r.tcp.latency_median_us, r.tcp.latency_p99_us, r.raw.latency_median_us,
                         r.raw.latency_p99_us, ratio(r.vmrdma.latency_median_us, r.tcp.latency_median_us),
                         ratio(r.raw.latency_median_us, r.tcp.latency_median_us));
        std::fprintf(out, "(vs tcp: vmrdma median / TCP median, below 1 is better; raw/tcp: the same for raw "
                          "frames echoed back, one send and one receive per frame, the floor under any "
                          "protocol on this path)\n");
        for (const auto& r : rows)
            for (const auto* f : {&r.vmrdma, &r.tcp, &r.raw})
                if (!f->error.empty()) std::fprintf(out, "         ! %s\n", f->error.c_str());
        return;
    }
    std::fprintf(out, "%8s | %9s %9s %9s | %7s %7s %7s | %10s %10s %6s | %11s %11s %11s\n", "#bytes", "vmrdma",
                 "tcp", "raw", "vs tcp", "of raw", "raw/tcp", "vmrdma/s", "tcp/s", "x", "cpu s/GiB", "tcp s/GiB",
                 "raw s/GiB");
    std::fprintf(out, "%8s | %9s %9s %9s | %7s %7s %7s | %10s %10s %6s | %11s %11s %11s\n", "", "GiB/s", "GiB/s",
                 "GiB/s", "", "", "", "msgs", "msgs", "", "cli+srv", "cli+srv", "tx+rx");
    bool split = std::any_of(rows.begin(), rows.end(), [](const row& r) { return r.eth.measured; });
    for (const auto& r : rows) {
        auto cpu = [](const path_figures& f) { return f.client_cpu_s_per_gib + f.server_cpu_s_per_gib; };
        std::fprintf(out,
                     "%8s | %9.3f %9.3f %9.3f | %6.2fx %6.0f%% %6.2fx | %10.0f %10.0f %5.2fx | %11.2f %11.2f %11.2f\n",
                     size_label(r.size).c_str(), r.vmrdma.gib_per_s, r.tcp.gib_per_s, r.raw.gib_per_s,
                     ratio(r.vmrdma.gib_per_s, r.tcp.gib_per_s), 100 * ratio(r.vmrdma.gib_per_s, r.raw.gib_per_s),
                     ratio(r.raw.gib_per_s, r.tcp.gib_per_s), r.vmrdma.messages_per_s, r.tcp.messages_per_s,
                     ratio(r.vmrdma.messages_per_s, r.tcp.messages_per_s), cpu(r.vmrdma), cpu(r.tcp), cpu(r.raw));
        if (split)
            std::fprintf(out,
                         "         | unix: via vmrdmad; eth: in-process %.3f GiB/s (unix/eth %.2fx); CPU s/GiB: "
                         "frontend %.3f, daemon %.3f (frontend/daemon %.2f), peer %.3f\n",
                         r.eth.gib_per_s, ratio(r.vmrdma.gib_per_s, r.eth.gib_per_s),
                         r.vmrdma.client_cpu_s_per_gib, r.vmrdma.daemon_cpu_s_per_gib,
                         ratio(r.vmrdma.client_cpu_s_per_gib, r.vmrdma.daemon_cpu_s_per_gib),
                         r.vmrdma.server_cpu_s_per_gib);
        for (const auto* f : {&r.vmrdma, &r.tcp, &r.raw, &r.eth})
            if (!f->error.empty()) std::fprintf(out, "         ! %s\n", f->error.c_str());
    }
    std::fprintf(out, "(vs tcp and of raw: vmrdma's bandwidth over TCP's and over raw frames'; raw/tcp: raw "
                      "frames' over TCP's. Messages that fill frames cannot move faster than raw frames; smaller "
                      "ones can, since vmrdma bundles several in a frame and the raw path sends one a frame)\n");
}

void write_csv(const std::string& path, mode m, const std::vector<row>& rows) {
    std::ofstream f(path);
    if (!f) throw std::runtime_error("cannot write " + path);
    f << "mode,bytes,path,gib_per_s,messages_per_s,latency_median_us,latency_p99_us,"
         "client_cpu_s_per_gib,server_cpu_s_per_gib,daemon_cpu_s_per_gib\n";
    for (const auto& r : rows) {
        for (auto [name, p] : {std::pair{"vmrdma", &r.vmrdma}, std::pair{"tcp", &r.tcp}, std::pair{"raw", &r.raw},
                               std::pair{"eth", &r.eth}}) {
            if (!p->measured) continue;
            f << mode_name(m) << ',' << r.size << ',' << name << ',' << p->gib_per_s << ',' << p->messages_per_s
              << ',' << p->latency_median_us << ',' << p->latency_p99_us << ',' << p->client_cpu_s_per_gib << ','
              << p->server_cpu_s_per_gib << ',' << p->daemon_cpu_s_per_gib << '\n';
        }
    }
}

void write_svg(const std::string& path, mode m, unsigned mtu, const std::vector<row>& rows) {
    std::ofstream f(path);
    if (!f) throw std::runtime_error("cannot write " + path);
    const double w = 720, h = 420, left = 70, right = 150, top = 40, bottom = 60;
    bool lat = m == mode::lat;
    auto value = [&](const path_figures& p) { return lat ? p.latency_median_us : p.gib_per_s; };
    double ymax = 0;
    for (const auto& r : rows)
        for (const auto* p : {&r.vmrdma, &r.tcp, &r.raw}) ymax = std::max(ymax, value(*p));
    ymax = ymax > 0 ? ymax * 1.1 : 1;
    double lx0 = std::log2(static_cast<double>(rows.front().size));
    double lx1 = std::log2(static_cast<double>(rows.back().size));
    if (lx1 <= lx0) lx1 = lx0 + 1;
    auto X = [&](std::size_t s) { return left + (std::log2(static_cast<double>(s)) - lx0) / (lx1 - lx0) * (w - left - right); };
    auto Y = [&](double v) { return h - bottom - v / ymax * (h - top - bottom); };
    f << "<svg xmlns='http://www.w3.org/2000/svg' width='" << w << "' height='" << h
      << "' font-family='sans-serif' font-size='12'>\n<rect width='100%' height='100%' fill='white'/>\n";
    f << "<text x='" << left << "' y='24' font-size='15'>vmrdma-bench " << mode_name(m) << ", MTU " << mtu
      << (lat ? ": median round trip (us)" : ": bandwidth (GiB/s)") << " by message size</text>\n";
    f << "<line x1='" << left << "' y1='" << h - bottom << "' x2='" << w - right << "' y2='" << h - bottom
      << "' stroke='black'/>\n<line x1='" << left << "' y1='" << top << "' x2='" << left << "' y2='" << h - bottom
      << "' stroke='black'/>\n";
    for (int i = 0; i <= 4; ++i) {
        double v = ymax * i / 4;
        f << "<text x='" << left - 8 << "' y='" << Y(v) + 4 << "' text-anchor='end'>" << std::round(v * 100) / 100
          << "</text>\n<line x1='" << left << "' y1='" << Y(v) << "' x2='" << w - right << "' y2='" << Y(v)
          << "' stroke='#ddd'/>\n";
    }
    for (const auto& r : rows)
        f << "<text x='" << X(r.size) << "' y='" << h - bottom + 18 << "' text-anchor='middle'>" << size_label(r.size)
          << "</text>\n";
    f << "<text x='" << (left + w - right) / 2 << "' y='" << h - 15 << "' text-anchor='middle'>message size (bytes)</text>\n";
    const char* colors[] = {"#d62728", "#1f77b4", "#7f7f7f"};
    const char* names[] = {"vmrdma", "TCP", "raw frames"};
    for (int k = 0; k < 3; ++k) {
        std::ostringstream pts;
        for (const auto& r : rows) {
            const path_figures& p = k == 0 ? r.vmrdma : k == 1 ? r.tcp : r.raw;
            if (p.measured) pts << X(r.size) << ',' << Y(value(p)) << ' ';
        }
        if (pts.str().empty()) continue;
        f << "<polyline fill='none' stroke='" << colors[k] << "' stroke-width='2' points='" << pts.str() << "'/>\n";
        f << "<text x='" << w - right + 10 << "' y='" << top + 20 + 18 * k << "' fill='" << colors[k] << "'>" << names[k]
          << "</text>\n";
    }
    f << "</svg>\n";
}

namespace {
std::string json_escape(const std::string& in) {
    std::string out;
    for (char c : in) {
        if (c == '"' || c == '\\') out += '\\';
        out += c;
    }
    return out;
}

double cpu_per_gib(const path_figures& f) { return f.client_cpu_s_per_gib + f.server_cpu_s_per_gib + f.daemon_cpu_s_per_gib; }
}  // namespace

void print_json(std::FILE* out, const workload& w, const tcp_buffers& b, const std::vector<row>& rows) {
    std::fprintf(out,
                 "{\"mode\":\"%s\",\"mtu\":%u,\"depth\":%u,\"busy_poll_us\":%u,\"daemon_poll_us\":%u,\"integrity\":\"%s\","
                 "\"auth\":%s,\"recovery\":\"%s\",\"ack_delay_us\":%u,\"relay\":\"%s\",\"buffers\":\"%s\",\"coalesce\":%s,\"tcp_wmem_max\":%ld,"
                 "\"tcp_rmem_max\":%ld,\"fairness\":\"%s\",\"rows\":[",
                 mode_name(w.kind), w.mtu, w.depth, w.busy_poll_us, w.daemon_poll_us, w.link_integrity ? "link" : "end-to-end",
                 w.auth ? "true" : "false", w.go_back_n ? "go-back-n" : "selective", w.ack_delay_us,
                 json_escape(w.relay).c_str(),
                 w.distinct_buffers ? "distinct" : "shared", w.coalesce ? "true" : "false", b.wmem_max, b.rmem_max,
                 json_escape(fairness_statement(w, b)).c_str());
    for (std::size_t i = 0; i < rows.size(); ++i) {
        const auto& r = rows[i];
        std::fprintf(out, "%s{\"bytes\":%zu", i ? "," : "", r.size);
        for (auto [name, p] : {std::pair{"vmrdma", &r.vmrdma}, std::pair{"tcp", &r.tcp}, std::pair{"raw", &r.raw},
                               std::pair{"eth", &r.eth}}) {
            if (!p->measured) continue;
            std::fprintf(out,
                         ",\"%s\":{\"gib_per_s\":%.4f,\"messages_per_s\":%.1f,\"latency_median_us\":%.2f,"
                         "\"latency_p99_us\":%.2f,\"client_cpu_s_per_gib\":%.3f,\"server_cpu_s_per_gib\":%.3f,"
                         "\"daemon_cpu_s_per_gib\":%.3f,\"retransmits\":%.0f,\"timeouts\":%.0f}",
                         name, p->gib_per_s, p->messages_per_s, p->latency_median_us, p->latency_p99_us,
                         p->client_cpu_s_per_gib, p->server_cpu_s_per_gib, p->daemon_cpu_s_per_gib,
                         p->retransmits, p->timeouts);
        }
        // The ratios of issue targets, within this run (0 where a path is missing).
        std::fprintf(out,
                     ",\"ratios\":{\"bandwidth_vs_tcp\":%.3f,\"of_raw\":%.3f,\"raw_vs_tcp\":%.3f,"
                     "\"messages_vs_tcp\":%.3f,\"cpu_per_gib_vs_tcp\":%.3f,\"latency_vs_tcp\":%.3f,"
                     "\"raw_latency_vs_tcp\":%.3f,\"unix_vs_eth\":%.3f,\"raw_cpu_per_gib_vs_tcp\":%.3f}",
                     ratio(r.vmrdma.gib_per_s, r.tcp.gib_per_s), ratio(r.vmrdma.gib_per_s, r.raw.gib_per_s),
                     ratio(r.raw.gib_per_s, r.tcp.gib_per_s), ratio(r.vmrdma.messages_per_s, r.tcp.messages_per_s),
                     ratio(cpu_per_gib(r.vmrdma), cpu_per_gib(r.tcp)),
                     ratio(r.vmrdma.latency_median_us, r.tcp.latency_median_us),
                     ratio(r.raw.latency_median_us, r.tcp.latency_median_us),
                     r.eth.measured ? ratio(r.vmrdma.gib_per_s, r.eth.gib_per_s) : 0.0,
                     ratio(cpu_per_gib(r.raw), cpu_per_gib(r.tcp)));
        std::fprintf(out, "}");
    }
    std::fprintf(out, "]}\n");
}

}  // namespace vmrdma::bench
