// vmrdma-check's TCP baseline: the same rounds over a TCP socket that the
// client does with RDMA (a buffer out, the same bytes back, compared), so
// the Xen harness can print rounds/s of both paths side by side in the same
// guests (tests/xen/dom0_two_host.sh).
//
//   vmrdma-check tcp-serve  [--port P]
//   vmrdma-check tcp-client --host IPV4 [--port P] --length BYTES (--rounds R | --measure SECONDS)
//
// The client sends the length once (8 bytes, big-endian); then each round
// it sends LENGTH bytes of the round's pattern, and the server, once it has
// all of them, sends them back (store and forward, as an RDMA write then a
// read of the same bytes). Plain blocking sockets with TCP_NODELAY.
#pragma once

namespace vmrdma::check {

class options;

constexpr const char* tcp_serve_help =
    "usage: vmrdma-check tcp-serve [--port P]\n"
    "Listens on TCP port P (default 7471) on every address and prints 'READY port=P' to\n"
    "stdout; then, for each client, sends back every round's bytes once it has them all.\n"
    "Runs until SIGTERM or SIGINT (exit 0).\n";

constexpr const char* tcp_client_help =
    "usage: vmrdma-check tcp-client --host IPV4 [--port P] --length BYTES\n"
    "                               (--rounds R | --measure SECONDS)\n"
    "Connects to a tcp-serve (port default 7471) and, per round, sends BYTES (K and M\n"
    "suffixes, at most 64M) of a pattern, receives them back and compares: R rounds, or as\n"
    "many as fit in SECONDS. Prints\n"
    "  vmrdma-check: OK: N rounds of BYTES bytes sent, echoed and verified in T s (X rounds/s)\n"
    "and exits 0, or 'vmrdma-check: FAIL: <what>' and exits 1. Bad arguments exit 2.\n";

int tcp_serve(int argc, char** argv);
int tcp_client(int argc, char** argv);

}  // namespace vmrdma::check
