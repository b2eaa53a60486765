// One unprivileged user of vmrdmad for the tests in tests/split, in a process
// of its own (a child forked from the multi-threaded test and then running an
// event loop could inherit a lock another thread held at the fork, and under
// ASan it did: its allocator's). Started by tests/split/user_process.hpp. It
// becomes UID, does one thing, prints one line and holds what it took until
// its stdin closes.
//
//   uid_user UID take URI PEER_MAC FRONTENDS ENDPOINTS CONNECTIONS FIRST_EP
//       takes as many of each as it is given, up to the numbers asked:
//       "f=N e=N c=N[ why=REFUSAL]"
//   uid_user UID uids SOCKET     the uids vmrdmad shows this user, in a line
//   uid_user UID connect SOCKET  "connected" if it may connect as an admin
//       client (nothing asked, so the daemon need not be serving)
//   uid_user UID admin SOCKET FRONTEND
//       what this user sees of others and may change, as an admin client:
//       "foreign=N endpoints=N set=ok|STATUS" (frontends of another uid
//       listed, endpoints listed, setting FRONTEND's weight)
//   uid_user UID read-loop URI EP BYTES
//       registers BYTES of 0x42 on listening endpoint EP, says "rkey=N",
//       accepts one connection, receives a 16-byte remote region and reads
//       it whole in a loop until killed (or its stdin closes)
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "vmrdma/rdma.hpp"
#include "vmrdma/registrable.hpp"
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

std::string admin(const std::string& socket, std::uint32_t frontend) {
    vmrdmad::admin_client mine(socket);
    unsigned foreign = 0;
    for (const auto& f : mine.frontends())
        if (f.uid != getuid()) ++foreign;
    const std::size_t endpoints = mine.endpoints().size();
    std::string set = "ok";
    try {
        mine.set(frontend, VR_ADMIN_SET_WEIGHT, 16);
    } catch (const vmrdmad::admin_error& e) {
        set = std::to_string(e.status);
    }
    return "foreign=" + std::to_string(foreign) + " endpoints=" + std::to_string(endpoints) + " set=" + set;
}

void say(const std::string& line) {
    std::printf("%s\n", line.c_str());
    std::fflush(stdout);
}

void hold() {
    char c;
    while (::read(0, &c, 1) > 0) {
    }
}

// Returns only by throwing.
void read_loop(vmrdma::event_loop& loop, const std::string& uri, std::uint16_t ep_id, std::size_t bytes) {
    std::thread([] {  // released: gone, even in the middle of a read
        hold();
        _exit(0);
    }).detach();
    auto dev = vmrdma::device::open(loop, uri);
    auto ep = dev->open_endpoint(ep_id, {.weight = 1, .listen = true});
    vmrdma::registrable_buffer buf(bytes), desc(64);
    std::memset(buf.data(), 0x42, bytes);
    auto mr = ep.register_memory(buf.span(), vmrdma::access::remote_read | vmrdma::access::remote_write);
    auto desc_mr = ep.register_memory(desc.span(), vmrdma::access::local_write);
    say("rkey=" + std::to_string(mr.remote().rkey));
    auto body = [&]() -> task<void> {
        auto got = ep.recv(desc_mr, 0, 16, 1);
        auto conn = co_await ep.accept();
        co_await std::move(got);
        auto remote = vmrdma::remote_region::from_bytes(desc.span());
        for (;;) co_await conn.read(mr, 0, remote, 0, static_cast<std::uint32_t>(bytes));
    };
    loop.run(body());
    throw std::runtime_error("the read loop ended");
}

int usage() {
    std::fprintf(stderr,
                 "usage: uid_user UID take URI PEER_MAC FRONTENDS ENDPOINTS CONNECTIONS FIRST_EP\n"
                 "       uid_user UID uids SOCKET\n"
                 "       uid_user UID connect SOCKET\n"
                 "       uid_user UID admin SOCKET FRONTEND\n"
                 "       uid_user UID read-loop URI EP BYTES\n");
    return 2;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 3) return usage();
    const std::string what = argv[2];
    const std::map<std::string, int> argc_of = {
        {"take", 9}, {"uids", 4}, {"connect", 4}, {"admin", 5}, {"read-loop", 6}};
    if (!argc_of.contains(what) || argc_of.at(what) != argc) return usage();
    const auto uid = static_cast<uid_t>(std::strtoul(argv[1], nullptr, 10));
    std::string line;
    vmrdma::event_loop loop;  // before what it serves: destroyed after it
    taken t;
    if (setresgid(uid, uid, uid) != 0 || setresuid(uid, uid, uid) != 0) {
        line = "error: cannot become uid " + std::string(argv[1]);
    } else {
        try {
            if (what == "take") {
                line = take(loop, t, argv[3], vmrdma::mac_address::parse(argv[4]),
                            static_cast<unsigned>(std::atoi(argv[5])), static_cast<unsigned>(std::atoi(argv[6])),
                            static_cast<unsigned>(std::atoi(argv[7])),
                            static_cast<std::uint16_t>(std::atoi(argv[8])));
            } else if (what == "uids") {
                vmrdmad::admin_client mine(argv[3]);
                for (const auto& u : mine.uids()) line += std::to_string(u.uid) + " ";
            } else if (what == "connect") {
                vmrdmad::admin_client mine(argv[3]);
                line = "connected";
            } else if (what == "admin") {
                line = admin(argv[3], static_cast<std::uint32_t>(std::strtoul(argv[4], nullptr, 10)));
            } else {
                read_loop(loop, argv[3], static_cast<std::uint16_t>(std::atoi(argv[4])),
                          static_cast<std::size_t>(std::strtoull(argv[5], nullptr, 10)));
            }
        } catch (const std::exception& e) {
            line = std::string("error: ") + e.what();
        }
    }
    say(line);
    hold();
    return line.rfind("error:", 0) == 0 ? 1 : 0;
}
