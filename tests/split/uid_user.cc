// One unprivileged user of vmrdmad for tests/split:split_uid_test, in a
// process of its own (a child forked from the multi-threaded test and then
// running an event loop could inherit a lock another thread held at the fork,
// and under ASan it did: its allocator's). It becomes UID, does one thing,
// prints one line and holds what it took until its stdin closes.
//
//   uid_user UID take URI PEER_MAC FRONTENDS ENDPOINTS CONNECTIONS FIRST_EP
//       takes as many of each as it is given, up to the numbers asked:
//       "f=N e=N c=N[ why=REFUSAL]"
//   uid_user UID uids SOCKET     the uids vmrdmad shows this user, in a line
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "vmrdma/rdma.hpp"
#include "vmrdma/runtime.hpp"
#include "vmrdmad/admin_client.hpp"

using namespace std::chrono_literals;
using vmrdma::errc;
using vmrdma::error;
using vmrdma::task;

namespace {

// Everything taken stays until the process exits.
struct taken {
    std::vector<std::unique_ptr<vmrdma::device>> devices;
    std::vector<vmrdma::endpoint> endpoints;
    std::vector<vmrdma::connection> connections;
};

std::string take(vmrdma::event_loop& loop, taken& t, const std::string& uri, const vmrdma::mac_address& peer,
                 unsigned frontends, unsigned endpoints, unsigned connections, std::uint16_t first_ep) {
    std::string refused;
    for (unsigned i = 0; i < frontends; ++i) {
        try {
            t.devices.push_back(vmrdma::device::open(loop, uri));
        } catch (const error& e) {
            if (e.code() != errc::resources_exhausted) throw;
            refused = e.what();
            break;
        }
    }
    if (t.devices.empty()) return "f=0 why=" + refused;
    for (unsigned i = 0; i < endpoints; ++i) {
        try {
            t.endpoints.push_back(t.devices[0]->open_endpoint(static_cast<std::uint16_t>(first_ep + i),
                                                              {.weight = 1, .listen = i == 0}));
        } catch (const error& e) {
            if (e.code() != errc::resources_exhausted) throw;
            break;
        }
    }
    unsigned c = 0;
    auto body = [&]() -> task<void> {
        for (unsigned i = 0; i < connections && !t.endpoints.empty(); ++i) {
            try {
                t.connections.push_back(co_await t.endpoints[0].connect(peer, 1, 5s));
                ++c;
            } catch (const error& e) {
                if (e.code() != errc::resources_exhausted) throw;
                break;
            }
        }
    };
    loop.run(body());
    return "f=" + std::to_string(t.devices.size()) + " e=" + std::to_string(t.endpoints.size()) +
           " c=" + std::to_string(c) + (refused.empty() ? "" : " why=" + refused);
}

int usage() {
    std::fprintf(stderr,
                 "usage: uid_user UID take URI PEER_MAC FRONTENDS ENDPOINTS CONNECTIONS FIRST_EP\n"
                 "       uid_user UID uids SOCKET\n");
    return 2;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 3) return usage();
    const std::string what = argv[2];
    if (!((what == "take" && argc == 9) || (what == "uids" && argc == 4))) return usage();
    const auto uid = static_cast<uid_t>(std::strtoul(argv[1], nullptr, 10));
    std::string line;
    taken t;
    vmrdma::event_loop loop;
    if (setresgid(uid, uid, uid) != 0 || setresuid(uid, uid, uid) != 0) {
        line = "error: cannot become uid " + std::string(argv[1]);
    } else {
        try {
            if (what == "take") {
                line = take(loop, t, argv[3], vmrdma::mac_address::parse(argv[4]),
                            static_cast<unsigned>(std::atoi(argv[5])), static_cast<unsigned>(std::atoi(argv[6])),
                            static_cast<unsigned>(std::atoi(argv[7])),
                            static_cast<std::uint16_t>(std::atoi(argv[8])));
            } else {
                vmrdmad::admin_client mine(argv[3]);
                for (const auto& u : mine.uids()) line += std::to_string(u.uid) + " ";
            }
        } catch (const std::exception& e) {
            line = std::string("error: ") + e.what();
        }
    }
    std::printf("%s\n", line.c_str());
    std::fflush(stdout);
    char c;
    while (::read(0, &c, 1) > 0) {
    }  // hold until released
    return line.rfind("error:", 0) == 0 ? 1 : 0;
}
