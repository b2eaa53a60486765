#include "fabric/ipv4.hpp"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

namespace vmrdma::fabric {

namespace {

constexpr unsigned arp_complete = 0x2;  // ATF_COM in /proc/net/arp's flags

// Calls fn(ip, mac) for each complete entry of /proc/net/arp until it
// returns true.
template <typename Fn>
bool each_neighbour(Fn&& fn) {
    std::ifstream in("/proc/net/arp");
    std::string line;
    std::getline(in, line);  // the header
    while (std::getline(in, line)) {
        std::istringstream fields(line);
        std::string ip, hw_type, flags, mac;
        if (!(fields >> ip >> hw_type >> flags >> mac)) continue;
        if (!(std::stoul(flags, nullptr, 16) & arp_complete)) continue;
        in_addr a{};
        if (inet_pton(AF_INET, ip.c_str(), &a) != 1) continue;
        try {
            if (fn(a, mac_address::parse(mac))) return true;
        } catch (const error&) {
        }
    }
    return false;
}

bool is_local(in_addr ip) {
    ifaddrs* list = nullptr;
    if (getifaddrs(&list) != 0) return false;
    bool local = false;
    for (auto* i = list; i && !local; i = i->ifa_next)
        if (i->ifa_addr && i->ifa_addr->sa_family == AF_INET)
            local = reinterpret_cast<const sockaddr_in*>(i->ifa_addr)->sin_addr.s_addr == ip.s_addr;
    freeifaddrs(list);
    return local;
}

}  // namespace

std::optional<in_addr> interface_ipv4(const std::string& ifname) {
    ifaddrs* list = nullptr;
    if (getifaddrs(&list) != 0) return std::nullopt;
    std::optional<in_addr> found;
    for (auto* i = list; i && !found; i = i->ifa_next)
        if (i->ifa_addr && i->ifa_addr->sa_family == AF_INET && ifname == i->ifa_name)
            found = reinterpret_cast<const sockaddr_in*>(i->ifa_addr)->sin_addr;
    freeifaddrs(list);
    return found;
}

std::optional<mac_address> resolve_ipv4(in_addr ip, const mac_address& own_mac, std::chrono::milliseconds patience) {
    if (ip.s_addr == htonl(INADDR_ANY) || ip.s_addr == htonl(INADDR_BROADCAST)) return std::nullopt;
    if (ntohl(ip.s_addr) >> 24 == 127 || is_local(ip)) return own_mac;
    const auto until = std::chrono::steady_clock::now() + patience;
    bool asked = false;
    for (;;) {
        std::optional<mac_address> mac;
        each_neighbour([&](in_addr a, const mac_address& m) {
            if (a.s_addr != ip.s_addr) return false;
            mac = m;
            return true;
        });
        if (mac || std::chrono::steady_clock::now() >= until) return mac;
        if (!asked) {
            // The kernel resolves a neighbour it is asked to send to.
            int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
            if (fd >= 0) {
                sockaddr_in to{};
                to.sin_family = AF_INET;
                to.sin_port = htons(9);  // discard
                to.sin_addr = ip;
                [[maybe_unused]] auto n = ::sendto(fd, "", 0, 0, reinterpret_cast<sockaddr*>(&to), sizeof to);
                ::close(fd);
            }
            asked = true;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
}

std::optional<in_addr> ipv4_of_mac(const mac_address& mac) {
    std::optional<in_addr> ip;
    each_neighbour([&](in_addr a, const mac_address& m) {
        if (!(m == mac)) return false;
        ip = a;
        return true;
    });
    return ip;
}

std::optional<in_addr> parse_ipv4_host(const char* node) {
    if (!node || !*node) return std::nullopt;
    addrinfo hints{};
    hints.ai_family = AF_INET;
    addrinfo* res = nullptr;
    if (getaddrinfo(node, nullptr, &hints, &res) != 0 || !res) return std::nullopt;
    in_addr a = reinterpret_cast<const sockaddr_in*>(res->ai_addr)->sin_addr;
    freeaddrinfo(res);
    return a;
}

}  // namespace vmrdma::fabric
