// IPv4 addressing for applications that only speak socket addresses
// (FI_SOCKADDR_IN: fabtests' fi_av_test, and fi_getinfo with an IP address
// as node). vmrdma itself addresses (MAC, endpoint id): an IPv4 address
// names a host of the segment, whose MAC the kernel's neighbour table
// gives, and the port names the endpoint id. Resolution is lazy (an address
// may be inserted before its host is up) and looks only at the network
// namespace the process is in.
#pragma once

#include <netinet/in.h>

#include <chrono>
#include <optional>
#include <string>

#include "vmrdma/rdma.hpp"

namespace vmrdma::fabric {

// The first IPv4 address of a network interface.
std::optional<in_addr> interface_ipv4(const std::string& ifname);

// The MAC the neighbour table has for `ip` (a complete entry), asking the
// kernel to resolve it (an empty UDP datagram to the discard port makes it
// ARP) and looking again for up to `patience`. An address of this host
// gives `own_mac`.
std::optional<mac_address> resolve_ipv4(in_addr ip, const mac_address& own_mac, std::chrono::milliseconds patience);

// The IPv4 address the neighbour table has for `mac`, if any.
std::optional<in_addr> ipv4_of_mac(const mac_address& mac);

// One IPv4 host name or dotted address, as getaddrinfo resolves it.
std::optional<in_addr> parse_ipv4_host(const char* node);

}  // namespace vmrdma::fabric
