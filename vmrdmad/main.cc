// vmrdmad --device eth:IFNAME [--socket PATH] [--xen] [limits]: the user-space
// driver domain (docs/split-driver.md); with --xen also the Xen backend of
// frontend_kmod guests (docs/xen.md). Runs until SIGINT or SIGTERM.
#include <grp.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

#include <memory>

#include "daemon.hpp"
#include "vmrdma/runtime.hpp"
#include "xen_backend.hpp"

namespace {

// --help prints to stdout (it was asked for); a usage error to stderr.
void usage(std::FILE* out = stderr) {
    std::fprintf(out,
                 "usage: vmrdmad --device eth:IFNAME [--socket PATH (default /run/vmrdma.sock)]\n"
                 "               [--max-endpoints N] [--max-regions N] [--max-bytes N]\n"
                 "               [--max-ring N] [--max-weight N] [--drain-timeout-ms N (default 5000)]\n"
                 "               [--inflight-bytes N (default 4194304; 0: DRR only)] [--xen]\n"
                 "               [--integrity end-to-end|link (default end-to-end)]\n"
                 "               [--auth-key-file FILE (64 hex digits; default: frames CRC only)]\n"
                 "               [--socket-mode OCTAL (default 0660)] [--socket-group GROUP]\n"
                 "               [--max-frontends N (default 1024)] [--uid-max-frontends N]\n"
                 "               [--uid-max-endpoints N] [--uid-max-connections N]\n"
                 "               [--uid-reserve PERCENT (default 12)] [--poll-us N (default 50)]\n"
                 "Who may be a frontend: the socket's mode and group; add the users to the group\n"
                 "(or --socket-mode 0666 for everyone). vmrdmactl shows a user only their own\n"
                 "frontends; root and vmrdmad's uid see all and alone change limits.\n"
                 "Per uid: no user holds more than --uid-max-* of the daemon's frontends (socket\n"
                 "connections), the engine's endpoints or its connections (default: half of each),\n"
                 "and one that holds its reserve takes nothing that would leave fewer than\n"
                 "PERCENT of a pool free for the others; root and vmrdmad's uid are not limited\n"
                 "(vmrdmactl uids).\n"
                 "--integrity link: connections whose peer allows it too check only the headers\n"
                 "and leave payloads to the link's FCS (docs/wire-format.md, Integrity).\n"
                 "--auth-key-file: every connection is authenticated with a key derived from this\n"
                 "pre-shared key (mode 0600), and only peers with the same key connect\n"
                 "(docs/wire-format.md, Authentication).\n"
                 "--xen: also be the Xen backend (in dom0, instead of backend_kmod): serve the\n"
                 "guests' frontend_kmod through libxengnttab/libxenevtchn, with the same limits,\n"
                 "weights and admission as socket frontends (docs/xen.md).\n"
                 "--poll-us: after its last work the daemon keeps looking for requests and frames\n"
                 "this long before it sleeps: a frontend's next request or the peer's next frame,\n"
                 "caught so, costs no wake-up (docs/split-driver.md, Polling before sleeping);\n"
                 "0: sleep at once (least CPU when busy).\n"
                 "SIGTERM or SIGINT: stop accepting, finish what is in flight (new requests get\n"
                 "ESHUTDOWN), disconnect the frontends, exit 0. Administration: vmrdmactl.\n");
}

vmrdma::task<void> run(vmrdma::event_loop& loop, vmrdmad::daemon& d, int sigfd, vmrdmad::xen_backend* xen) {
    std::stop_source stop;
    vmrdma::async_scope scope;
    scope.spawn([](vmrdma::event_loop& l, int fd, std::stop_source& s) -> vmrdma::task<void> {
        signalfd_siginfo info{};
        try {
            co_await l.submit([&](io_uring_sqe* sqe) { io_uring_prep_read(sqe, fd, &info, sizeof info, 0); },
                              s.get_token());
        } catch (const vmrdma::error&) {
        }
        s.request_stop();
    }(loop, sigfd, stop));
    std::stop_source xen_stop;
    if (xen) scope.spawn(xen->run(d, xen_stop.get_token()));
    co_await d.serve(stop.get_token());  // drains the guests too: they are its frontends
    stop.request_stop();
    xen_stop.request_stop();
    co_await scope.join();
}

}  // namespace

int main(int argc, char** argv) {
    std::string device_uri;
    vmrdmad::options opts;
    bool xen_mode = false;
    try {
        for (int i = 1; i < argc; ++i) {
            std::string a = argv[i];
            auto value = [&]() -> std::string {
                if (i + 1 >= argc) {
                    usage();
                    std::exit(2);
                }
                return argv[++i];
            };
            if (a == "--device")
                device_uri = value();
            else if (a == "--socket")
                opts.socket_path = value();
            else if (a == "--max-endpoints")
                opts.per_frontend.endpoints = static_cast<std::uint32_t>(std::stoul(value()));
            else if (a == "--max-regions")
                opts.per_frontend.regions = static_cast<std::uint32_t>(std::stoul(value()));
            else if (a == "--max-bytes")
                opts.per_frontend.registered_bytes = std::stoull(value());
            else if (a == "--max-ring")
                opts.per_frontend.max_ring_size = static_cast<std::uint32_t>(std::stoul(value()));
            else if (a == "--max-weight")
                opts.per_frontend.max_weight = static_cast<std::uint32_t>(std::stoul(value()));
            else if (a == "--max-frontends")
                opts.max_frontends = static_cast<std::uint32_t>(std::stoul(value()));
            else if (a == "--uid-max-frontends")
                opts.per_uid.frontends = static_cast<std::uint32_t>(std::stoul(value()));
            else if (a == "--uid-max-endpoints")
                opts.per_uid.endpoints = static_cast<std::uint32_t>(std::stoul(value()));
            else if (a == "--uid-max-connections")
                opts.per_uid.connections = static_cast<std::uint32_t>(std::stoul(value()));
            else if (a == "--uid-reserve") {
                opts.per_uid.reserve_percent = static_cast<std::uint32_t>(std::stoul(value()));
                if (opts.per_uid.reserve_percent > 50) {
                    std::fprintf(stderr, "vmrdmad: --uid-reserve is a percentage of each pool, at most 50\n");
                    return 2;
                }
            } else if (a == "--inflight-bytes")
                opts.inflight_bytes = std::stoull(value());
            else if (a == "--drain-timeout-ms")
                opts.drain_timeout = std::chrono::milliseconds(std::stoul(value()));
            else if (a == "--xen")
                xen_mode = true;
            else if (a == "--poll-us") {
                unsigned long us = std::stoul(value());
                if (us > 1000000) {
                    std::fprintf(stderr, "vmrdmad: --poll-us is in microseconds, at most 1000000\n");
                    return 2;
                }
                opts.poll = std::chrono::microseconds(us);
            }
            else if (a == "--socket-mode") {
                std::string m = value();
                char* end = nullptr;
                unsigned long v = std::strtoul(m.c_str(), &end, 8);
                if (m.empty() || *end || v > 0777) {
                    std::fprintf(stderr, "vmrdmad: --socket-mode must be octal, e.g. 0660\n");
                    return 2;
                }
                opts.socket_mode = static_cast<mode_t>(v);
            } else if (a == "--socket-group") {
                std::string g = value();
                struct group* gr = ::getgrnam(g.c_str());
                if (!gr) {
                    std::fprintf(stderr, "vmrdmad: --socket-group: no group '%s'\n", g.c_str());
                    return 2;
                }
                opts.socket_group = gr->gr_gid;
            } else if (a == "--auth-key-file") {
                try {
                    opts.engine.auth_key = vmrdma::read_auth_key(value());
                } catch (const vmrdma::error& e) {
                    std::fprintf(stderr, "vmrdmad: --auth-key-file: %s\n", e.what());
                    return 2;
                }
            } else if (a == "--integrity") {
                std::string m = value();
                if (m == "link")
                    opts.engine.integrity = vmrdma::device_options::integrity_mode::link;
                else if (m != "end-to-end") {
                    std::fprintf(stderr, "vmrdmad: --integrity must be end-to-end or link\n");
                    return 2;
                }
            }
            else if (a == "--help" || a == "-h") {
                usage(stdout);
                return 0;
            }
            else {
                usage();
                return 2;
            }
        }
    } catch (const std::logic_error&) {  // std::stoul on something not a number
        usage();
        return 2;
    }
    if (device_uri.rfind("eth:", 0) != 0) {
        usage();
        return 2;
    }
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGTERM);
    sigprocmask(SIG_BLOCK, &mask, nullptr);
    int sigfd = signalfd(-1, &mask, SFD_CLOEXEC);
    try {
            vmrdma::event_loop loop(vmrdmad::loop_options_for(opts));
            std::unique_ptr<vmrdmad::xen_backend> xen;
            if (xen_mode) xen = std::make_unique<vmrdmad::xen_backend>(loop);  // no Xen: fail first
            vmrdmad::daemon d(loop, device_uri, opts);
            std::fprintf(stderr, "vmrdmad: serving %s on %s%s (MAC %s, MTU %u)\n", device_uri.c_str(),
                         opts.socket_path.c_str(), xen ? " and Xen guests" : "", d.mac().to_string().c_str(),
                         d.mtu());
            loop.run(run(loop, d, sigfd, xen.get()));
            const auto& c = d.counters();
            std::fprintf(stderr,
                         "vmrdmad: stopped; frontends %llu, requests %llu (%llu refused while draining), "
                         "rejected %llu, violations %llu\n",
                         static_cast<unsigned long long>(c.frontends_accepted.load()),
                         static_cast<unsigned long long>(c.requests.load()),
                         static_cast<unsigned long long>(c.drained.load()),
                         static_cast<unsigned long long>(c.rejected.load()),
                         static_cast<unsigned long long>(c.violations.load()));
        } catch (const std::exception& e) {
            std::fprintf(stderr, "vmrdmad: %s\n", e.what());
            return 1;
        }
        close(sigfd);
        return 0;
    }
