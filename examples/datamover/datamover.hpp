// The data mover: copies files and directory trees from one host's disk to a
// peer's over vmrdma (RDMA writes into the receiver's registered staging ring,
// control over tagged sends), verifies every chunk and every whole file, and
// resumes an interrupted copy by sending only the chunks the receiver lacks.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace datamover {

// Process exit codes of `datamover serve` and `datamover send`.
enum exit_code : int {
    ok = 0,
    some_failed = 1,      // a source could not be read, a checksum did not match, or another error
    usage_error = 2,
    receiver_failed = 3,  // the receiver could not store the data (disk full, permission, ...)
    peer_lost = 4,        // the peer could not be reached, or vanished mid-transfer
    interrupted = 130,    // SIGINT or SIGTERM: stopped; a rerun resumes (128 + SIGINT, as shells do)
};

struct serve_options {
    std::string device;           // vmrdma URI, e.g. eth:veth0
    std::string dest;             // destination directory
    std::uint16_t endpoint = 7;   // listening vmrdma endpoint id
    std::uint32_t chunk_size = 1u << 20;
    std::uint32_t slots = 32;     // staging ring: slots * chunk_size bytes
    bool once = false;            // exit after one completed transfer (or a fatal error)
    unsigned idle_timeout_s = 30; // drop a sender silent this long (its progress is kept)
    bool fsync = false;           // fsync each file before renaming it into place
    int ready_fd = -1;            // written to (one byte) once listening
};

struct send_options {
    std::string device;
    std::string peer;             // the receiver's MAC address
    std::uint16_t endpoint = 7;   // the receiver's endpoint id
    std::vector<std::string> sources;
    double limit_rate = 0;        // bytes/s, 0 = unlimited
    double progress_interval = 0; // seconds; 0 = 0.25 on a TTY, 1 otherwise
    double connect_timeout_s = 10;  // waits this long for a receiver that is not listening yet
};

int serve(const serve_options& o);
int send(const send_options& o);

}  // namespace datamover
