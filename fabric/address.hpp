// Endpoint addresses. What fi_getname gives and fi_av_insert takes is a
// 16-byte binary form (the provider's own address format, so addr_format is
// FI_FORMAT_UNSPEC: Open MPI and fabtests insert arrays of names as fi_getname
// gave them, which FI_ADDR_STR's array of char* would not allow). Its text
// form, for fi_av_straddr and for fi_getinfo's node, is
// "fi_vmrdma://02:00:00:00:00:01/5" (MAC, then the vmrdma endpoint id), or
// without "/5" for "this device, any endpoint id" (a source address before
// an endpoint is opened).
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "vmrdma/rdma.hpp"

namespace vmrdma::fabric {

inline constexpr std::string_view address_prefix = "fi_vmrdma://";

struct fabric_address {
    mac_address mac;
    std::optional<std::uint16_t> endpoint;  // none: any
    peer_address peer() const { return {mac, endpoint.value_or(0)}; }
    friend bool operator==(const fabric_address&, const fabric_address&) = default;
};

std::string format_address(const fabric_address& a);
// nullopt for anything else (a trailing byte, a bad MAC, an endpoint id
// over 65535). `text` may include the terminating NUL an FI_ADDR_STR
// address carries.
std::optional<fabric_address> parse_address(std::string_view text);

// One word per endpoint address, for hash tables: the endpoint id above
// the MAC.
inline std::uint64_t address_key(const peer_address& a) {
    std::uint64_t w = std::uint64_t{a.endpoint} << 48;
    for (int i = 0; i < 6; ++i) w |= std::uint64_t{a.mac.bytes[static_cast<std::size_t>(i)]} << (40 - 8 * i);
    return w;
}

// The binary form: version 1, a flag byte (1: the endpoint id is set), the
// MAC, the endpoint id (little-endian), six reserved zero bytes.
inline constexpr std::size_t address_size = 16;
void encode_address(const fabric_address& a, void* out);
std::optional<fabric_address> decode_address(const void* in, std::size_t len);

// A service string (what fi_getinfo's `service` names) as an endpoint id.
std::optional<std::uint16_t> parse_service(std::string_view service);

}  // namespace vmrdma::fabric
