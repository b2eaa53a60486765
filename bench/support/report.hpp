// One row per message size, the three paths side by side, and the writers
// for the table, CSV, SVG and JSON that vmrdma-bench prints and saves.
#pragma once

#include <cstdio>
#include <string>
#include <vector>

#include "bench/support/child.hpp"
#include "bench/support/fairness.hpp"
#include "bench/support/workload.hpp"

namespace vmrdma::bench {

struct path_figures {
    bool measured = false;
    double gib_per_s = 0;
    double messages_per_s = 0;
    double latency_median_us = 0, latency_p99_us = 0;
    double client_cpu_s_per_gib = 0, server_cpu_s_per_gib = 0;
    double daemon_cpu_s_per_gib = 0;  // --transport unix: the driver domain's CPU
    double retransmits = 0, timeouts = 0;  // vmrdma: both devices' frames sent again, RTO expiries
    std::string error;
};

struct row {
    std::size_t size = 0;
    path_figures vmrdma, tcp, raw;
    path_figures eth;  // --transport unix: the in-process eth: transport, for comparison
};

// Turns the two sides' results into figures; `receiver_counts` says whose
// byte count and interval define the bandwidth (the side the data lands on).
path_figures figures_from(const side_result& client, const side_result& server, bool receiver_is_server);

void print_table(std::FILE* out, mode m, const std::vector<row>& rows);
void write_csv(const std::string& path, mode m, const std::vector<row>& rows);
void write_svg(const std::string& path, mode m, unsigned mtu, const std::vector<row>& rows);
// One JSON object: the workload, the fairness terms, every path's figures
// and, per row, the ratios the targets are stated in.
void print_json(std::FILE* out, const workload& w, const tcp_buffers& b, const std::vector<row>& rows);

}  // namespace vmrdma::bench
