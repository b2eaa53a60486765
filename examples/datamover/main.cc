// datamover: copy files and directory trees to a peer over vmrdma.
//
//   datamover serve --device eth:IF --dest DIR [--endpoint N] [--once] ...
//   datamover send  --device eth:IF --peer MAC [--endpoint N] SOURCE...
//   datamover demo  [--size BYTES] [--files N]      (root: namespaces + veth)
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "examples/datamover/common.hpp"
#include "examples/datamover/datamover.hpp"
#include "examples/support/netns_pair.hpp"

namespace {

using datamover::exit_code;

const char* main_usage =
    "usage: datamover COMMAND [OPTIONS]\n"
    "Copies files and directory trees from one host's disk to a peer's over vmrdma: RDMA\n"
    "writes into the receiver's registered staging ring, many chunks in flight, every chunk\n"
    "and every whole file verified (XXH64), interrupted copies resumed.\n"
    "\n"
    "commands:\n"
    "  serve   receive into a directory            (datamover serve --help)\n"
    "  send    send files and trees to a receiver  (datamover send --help)\n"
    "  demo    both sides in two network namespaces, against tar|socat over TCP (root)\n"
    "\n"
    "exit codes: 0 done and verified; 1 a source unreadable, a checksum mismatch or another\n"
    "error; 2 bad usage; 3 the receiver could not store the data (disk full, permission);\n"
    "4 the peer could not be reached or vanished (rerun to resume).\n";

const char* serve_usage =
    "usage: datamover serve --device URI --dest DIR [options]\n"
    "Receives transfers into DIR (created if missing). Each file is written to .NAME.dmpart\n"
    "with its progress in .NAME.dmstate beside it, verified against the sender's checksum,\n"
    "then renamed into place with its mode and mtime. An interrupted transfer resumes: the\n"
    "next sender is told which chunks are already here.\n"
    "  --device URI        vmrdma device, e.g. eth:eth0 (needs CAP_NET_RAW)\n"
    "  --dest DIR          destination directory\n"
    "  --endpoint N        vmrdma endpoint id to listen on (default 7)\n"
    "  --chunk BYTES       chunk size, K/M suffixes (default 1M)\n"
    "  --slots N           staging ring slots = chunks in flight (default 32)\n"
    "  --once              exit after one completed transfer or a fatal error\n"
    "  --idle-timeout SEC  drop a sender silent this long (default 30)\n"
    "  --fsync             fsync each file before renaming it into place\n";

const char* send_usage =
    "usage: datamover send --device URI --peer MAC [options] SOURCE...\n"
    "Sends each SOURCE (file, symlink or directory tree) into the receiver's directory under\n"
    "its base name. Progress (bytes, rate, ETA) goes to stderr; a final 'summary:' line to\n"
    "stdout. Rerunning after an interruption sends only the chunks the receiver lacks.\n"
    "  --device URI            vmrdma device, e.g. eth:eth0 (needs CAP_NET_RAW)\n"
    "  --peer MAC              the receiver's MAC address\n"
    "  --endpoint N            the receiver's endpoint id (default 7)\n"
    "  --limit-rate BYTES      at most this many bytes per second, K/M/G suffixes\n"
    "  --progress-interval S   seconds between progress updates (default 0.25 on a TTY, else 1)\n"
    "  --connect-timeout S     wait up to S seconds (fractions allowed) for the receiver to\n"
    "                          listen, then give up with exit 4 (default 10)\n"
    "SIGINT or SIGTERM stops it with a message and exit 130; what arrived is kept.\n";

const char* demo_usage =
    "usage: datamover demo [--size BYTES] [--files N] [--mtu N] [--workdir DIR] [--keep]\n"
    "As root: makes two network namespaces joined by a veth pair, generates a test tree\n"
    "(N files sharing BYTES, plus a nested directory of small files), copies it with\n"
    "datamover serve/send in the two namespaces, then with tar piped through socat over TCP\n"
    "(192.0.2.1 <-> 192.0.2.2 inside the namespaces), verifies both copies, and prints the\n"
    "rates side by side. Removes everything it made unless --keep.\n"
    "  --size BYTES   total bytes of the large files (default 1G)\n"
    "  --files N      number of large files (default 8)\n"
    "  --mtu N        veth MTU (default 9000)\n"
    "  --workdir DIR  where to put the trees (default a new directory under /tmp)\n"
    "  --keep         keep the trees\n";

std::uint64_t parse_size(const std::string& s) {
    char* end = nullptr;
    double v = std::strtod(s.c_str(), &end);
    std::string suf = end ? end : "";
    if (suf == "K" || suf == "k") v *= 1024;
    else if (suf == "M" || suf == "m") v *= 1024.0 * 1024;
    else if (suf == "G" || suf == "g") v *= 1024.0 * 1024 * 1024;
    else if (!suf.empty() || end == s.c_str()) throw std::runtime_error("not a size: " + s);
    if (v < 0) throw std::runtime_error("not a size: " + s);
    return static_cast<std::uint64_t>(v);
}

// Seconds, fractions allowed ("0.5"), at most max.
double parse_seconds(const std::string& s, double max) {
    char* end = nullptr;
    double v = std::strtod(s.c_str(), &end);
    if (s.empty() || *end || !(v > 0) || v > max) throw std::runtime_error("not a number of seconds in range: " + s);
    return v;
}

unsigned long parse_uint(const std::string& s, unsigned long max) {
    char* end = nullptr;
    unsigned long v = std::strtoul(s.c_str(), &end, 10);
    if (s.empty() || *end || v > max) throw std::runtime_error("not a number in range: " + s);
    return v;
}

struct args {
    int argc;
    char** argv;
    int i = 2;
    bool more() const { return i < argc; }
    std::string next() { return argv[i++]; }
    std::string value(const std::string& opt) {
        if (i >= argc) throw std::runtime_error(opt + " needs a value");
        return argv[i++];
    }
};

int cmd_serve(args a) {
    datamover::serve_options o;
    while (a.more()) {
        std::string s = a.next();
        if (s == "-h" || s == "--help") return std::printf("%s", serve_usage), 0;
        if (s == "--device") o.device = a.value(s);
        else if (s == "--dest") o.dest = a.value(s);
        else if (s == "--endpoint") o.endpoint = static_cast<std::uint16_t>(parse_uint(a.value(s), 65535));
        else if (s == "--chunk") o.chunk_size = static_cast<std::uint32_t>(parse_size(a.value(s)));
        else if (s == "--slots") o.slots = static_cast<std::uint32_t>(parse_uint(a.value(s), 128));
        else if (s == "--once") o.once = true;
        else if (s == "--idle-timeout") o.idle_timeout_s = static_cast<unsigned>(parse_uint(a.value(s), 86400));
        else if (s == "--fsync") o.fsync = true;
        else throw std::runtime_error("unknown option " + s);
    }
    if (o.device.empty() || o.dest.empty()) throw std::runtime_error("--device and --dest are required");
    return datamover::serve(o);
}

int cmd_send(args a) {
    datamover::send_options o;
    while (a.more()) {
        std::string s = a.next();
        if (s == "-h" || s == "--help") return std::printf("%s", send_usage), 0;
        if (s == "--device") o.device = a.value(s);
        else if (s == "--peer") o.peer = a.value(s);
        else if (s == "--endpoint") o.endpoint = static_cast<std::uint16_t>(parse_uint(a.value(s), 65535));
        else if (s == "--limit-rate") o.limit_rate = static_cast<double>(parse_size(a.value(s)));
        else if (s == "--progress-interval") o.progress_interval = std::strtod(a.value(s).c_str(), nullptr);
        else if (s == "--connect-timeout") o.connect_timeout_s = parse_seconds(a.value(s), 3600);
        else if (s.size() > 1 && s[0] == '-' && s != "--") throw std::runtime_error("unknown option " + s);
        else if (s == "--") while (a.more()) o.sources.push_back(a.next());
        else o.sources.push_back(s);
    }
    if (o.device.empty() || o.peer.empty() || o.sources.empty())
        throw std::runtime_error("--device, --peer and at least one SOURCE are required");
    return datamover::send(o);
}

// ---- demo ----

volatile sig_atomic_t interrupted = 0;
void on_signal(int) { interrupted = 1; }

void fill_random(std::vector<char>& buf, std::uint64_t& x) {
    for (std::size_t i = 0; i + 8 <= buf.size(); i += 8) {
        x += 0x9e3779b97f4a7c15ull;
        std::uint64_t z = x;
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        z ^= z >> 31;
        std::memcpy(buf.data() + i, &z, 8);
    }
}

void write_file(const std::string& path, std::uint64_t size, std::uint64_t& seed, mode_t mode) {
    std::ofstream f(path, std::ios::binary);
    if (!f) throw std::runtime_error("cannot create " + path);
    std::vector<char> buf(1 << 20);
    while (size > 0) {
        fill_random(buf, seed);
        auto n = static_cast<std::size_t>(std::min<std::uint64_t>(size, buf.size()));
        f.write(buf.data(), static_cast<std::streamsize>(n));
        size -= n;
    }
    f.close();
    chmod(path.c_str(), mode);
}


int wait_for(pid_t pid, double limit_s) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(limit_s);
    for (;;) {
        int status = 0;
        if (waitpid(pid, &status, WNOHANG) == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        if (interrupted || std::chrono::steady_clock::now() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            return -1;
        }
        usleep(2000);
    }
}

double now_s() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

int cmd_demo(args a) {
    std::uint64_t size = 1ull << 30;
    unsigned files = 8, mtu = 9000;
    std::string workdir;
    bool keep = false;
    while (a.more()) {
        std::string s = a.next();
        if (s == "-h" || s == "--help") return std::printf("%s", demo_usage), 0;
        if (s == "--size") size = parse_size(a.value(s));
        else if (s == "--files") files = static_cast<unsigned>(parse_uint(a.value(s), 100000));
        else if (s == "--mtu") mtu = static_cast<unsigned>(parse_uint(a.value(s), 65535));
        else if (s == "--workdir") workdir = a.value(s);
        else if (s == "--keep") keep = true;
        else throw std::runtime_error("unknown option " + s);
    }
    if (files == 0) throw std::runtime_error("--files must be at least 1");
    if (geteuid() != 0) {
        std::fprintf(stderr, "datamover demo: needs root (network namespaces, raw sockets)\n");
        return 1;
    }
    struct sigaction sa {};
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);
    using vmrdma::examples::run_command;

    if (workdir.empty()) {
        char tmpl[] = "/tmp/datamover-demo-XXXXXX";
        if (!mkdtemp(tmpl)) throw std::runtime_error("mkdtemp failed");
        workdir = tmpl;
    } else {
        run_command("mkdir -p '" + workdir + "'");
    }
    const std::string src = workdir + "/src", tree = src + "/tree", dst_rdma = workdir + "/dst-rdma",
                      dst_tcp = workdir + "/dst-tcp";
    bool ok = true;
    double rdma_s = 0, tcp_s = 0;
    std::uint64_t total = 0;
    try {
        std::printf("datamover demo: generating %u files of %s plus small ones in %s\n", files,
                    datamover::human_bytes(static_cast<double>(size / files)).c_str(), tree.c_str());
        run_command("rm -rf '" + src + "' '" + dst_rdma + "' '" + dst_tcp + "' && mkdir -p '" + tree +
                    "/nested/deeper' '" + dst_tcp + "'");
        std::uint64_t seed = 42;
        for (unsigned i = 0; i < files; ++i) {
            write_file(tree + "/big-" + std::to_string(i) + ".bin", size / files, seed, 0644);
            total += size / files;
        }
        const std::uint64_t small[] = {0, 1, 100, 4096, 12345, 65536, 1 << 20, (3 << 20) + 7};
        int k = 0;
        for (auto s : small) {
            write_file(tree + "/nested/small-" + std::to_string(k) + ".dat", s, seed, k % 2 ? 0600 : 0755);
            write_file(tree + "/nested/deeper/f-" + std::to_string(k++) + ".dat", s, seed, 0640);
            total += 2 * s;
        }
        std::printf("datamover demo: %s in %u files\n", datamover::human_bytes(static_cast<double>(total)).c_str(),
                    files + 16);

        vmrdma::examples::netns_pair net("dm", mtu);
        std::printf("datamover demo: namespaces %s (%s) and %s (%s), veth MTU %u\n", net.a().netns.c_str(),
                    net.a().ifname.c_str(), net.b().netns.c_str(), net.b().ifname.c_str(), mtu);

        // 1. vmrdma.
        int ready[2];
        if (pipe(ready) != 0) throw std::runtime_error("pipe failed");
        pid_t srv = vmrdma::examples::spawn_in(net.a(), [&] {
            close(ready[0]);
            datamover::serve_options o;
            o.device = "eth:" + net.a().ifname;
            o.dest = dst_rdma;
            o.once = true;
            o.ready_fd = ready[1];
            return datamover::serve(o);
        });
        close(ready[1]);
        char c;
        bool up = read(ready[0], &c, 1) == 1;
        close(ready[0]);
        if (!up) throw std::runtime_error("the receiver did not start");
        std::printf("\n$ datamover serve --device eth:%s --dest %s --once      # in %s\n", net.a().ifname.c_str(),
                    dst_rdma.c_str(), net.a().netns.c_str());
        std::printf("$ datamover send --device eth:%s --peer %s %s      # in %s\n", net.b().ifname.c_str(),
                    net.a().mac.c_str(), tree.c_str(), net.b().netns.c_str());
        double t0 = now_s();
        pid_t cli = vmrdma::examples::spawn_in(net.b(), [&] {
            datamover::send_options o;
            o.device = "eth:" + net.b().ifname;
            o.peer = net.a().mac;
            o.sources = {tree};
            return datamover::send(o);
        });
        int crc = wait_for(cli, 1800);
        int src_rc = wait_for(srv, crc == 0 ? 30 : 0);
        rdma_s = now_s() - t0;
        if (crc != 0 || src_rc != 0) {
            std::fprintf(stderr, "datamover demo: the vmrdma copy failed (send %d, serve %d)\n", crc, src_rc);
            ok = false;
        } else {
            run_command("diff -r '" + tree + "' '" + dst_rdma + "/tree'");
            std::printf("datamover demo: vmrdma copy identical to the source (diff -r)\n");
        }

        // 2. tar | socat over TCP, same veth pair.
        run_command("ip -n " + net.a().netns + " addr add 192.0.2.1/24 dev " + net.a().ifname);
        run_command("ip -n " + net.b().netns + " addr add 192.0.2.2/24 dev " + net.b().ifname);
        if (system("command -v socat >/dev/null 2>&1") != 0) {
            std::fprintf(stderr, "datamover demo: socat is not installed (apt-get install socat): no TCP baseline\n");
            ok = false;
        } else {
            std::string rx = "ip netns exec " + net.a().netns + " sh -c \"socat -u TCP-LISTEN:5001,reuseaddr STDOUT | tar -x -C '" +
                             dst_tcp + "'\"";
            std::string tx = "ip netns exec " + net.b().netns + " sh -c \"tar -c -C '" + src +
                             "' tree | socat -u STDIN TCP:192.0.2.1:5001,retry=100,interval=0.05\"";
            std::printf("\n$ %s &\n$ %s\n", rx.c_str(), tx.c_str());
            std::fflush(stdout);
            pid_t r = fork();
            if (r == 0) {
                execl("/bin/sh", "sh", "-c", rx.c_str(), static_cast<char*>(nullptr));
                _exit(127);
            }
            usleep(500000);  // let it listen
            double t1 = now_s();
            int trc = system(tx.c_str());
            int rrc = wait_for(r, 600);
            tcp_s = now_s() - t1;
            if (trc != 0 || rrc != 0) {
                std::fprintf(stderr, "datamover demo: the TCP copy failed\n");
                ok = false;
            } else {
                run_command("diff -r '" + tree + "' '" + dst_tcp + "/tree'");
                std::printf("datamover demo: tar|socat copy identical to the source (diff -r)\n");
            }
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "datamover demo: %s\n", e.what());
        ok = false;
    }
    if (rdma_s > 0 || tcp_s > 0) {
        double mib = static_cast<double>(total) / (1 << 20);
        std::printf("\n%-28s %12s %10s %12s\n", "copy of the same tree", "bytes", "seconds", "MiB/s");
        if (rdma_s > 0)
            std::printf("%-28s %12llu %10.2f %12.1f\n", "datamover (vmrdma, eth:)", static_cast<unsigned long long>(total),
                        rdma_s, mib / rdma_s);
        if (tcp_s > 0)
            std::printf("%-28s %12llu %10.2f %12.1f\n", "tar | socat (TCP)", static_cast<unsigned long long>(total),
                        tcp_s, mib / tcp_s);
        std::printf("(wall time from starting the sender until both sides exited; both read the source\n"
                    " from the page cache and write into it; the vmrdma figure includes verification)\n");
    }
    if (!keep) {
        try {
            run_command("rm -rf '" + workdir + "'");
        } catch (...) {
        }
    } else {
        std::printf("kept %s\n", workdir.c_str());
    }
    std::printf(ok ? "datamover demo: SUCCESS\n" : "datamover demo: FAILED (see above)\n");
    return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
    setvbuf(stdout, nullptr, _IOLBF, 0);
    if (argc < 2) {
        std::fprintf(stderr, "%s", main_usage);
        return exit_code::usage_error;
    }
    std::string cmd = argv[1];
    args a{argc, argv};
    try {
        if (cmd == "-h" || cmd == "--help" || cmd == "help") return std::printf("%s", main_usage), 0;
        if (cmd == "serve") return cmd_serve(a);
        if (cmd == "send") return cmd_send(a);
        if (cmd == "demo") return cmd_demo(a);
        throw std::runtime_error("unknown command " + cmd);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "datamover %s: %s (try --help)\n", cmd.c_str(), e.what());
        return exit_code::usage_error;
    }
}
