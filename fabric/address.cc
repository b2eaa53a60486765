#include "fabric/address.hpp"

#include <charconv>
#include <cstring>

namespace vmrdma::fabric {

std::string format_address(const fabric_address& a) {
    std::string s(address_prefix);
    s += a.mac.to_string();
    if (a.endpoint) s += "/" + std::to_string(*a.endpoint);
    return s;
}

void encode_address(const fabric_address& a, void* out) {
    auto* b = static_cast<std::uint8_t*>(out);
    std::memset(b, 0, address_size);
    b[0] = 1;
    b[1] = a.endpoint ? 1 : 0;
    std::memcpy(b + 2, a.mac.bytes.data(), 6);
    const std::uint16_t ep = a.endpoint.value_or(0);
    b[8] = static_cast<std::uint8_t>(ep);
    b[9] = static_cast<std::uint8_t>(ep >> 8);
}

std::optional<fabric_address> decode_address(const void* in, std::size_t len) {
    const auto* b = static_cast<const std::uint8_t*>(in);
    if (!b || len < address_size || b[0] != 1 || b[1] > 1) return std::nullopt;
    for (std::size_t i = 10; i < address_size; ++i)
        if (b[i]) return std::nullopt;
    fabric_address a;
    std::memcpy(a.mac.bytes.data(), b + 2, 6);
    if (b[1]) a.endpoint = static_cast<std::uint16_t>(b[8] | b[9] << 8);
    return a;
}

std::optional<std::uint16_t> parse_service(std::string_view service) {
    unsigned value = 0;
    auto [end, ec] = std::from_chars(service.data(), service.data() + service.size(), value);
    if (ec != std::errc{} || end != service.data() + service.size() || service.empty() || value > 0xffff)
        return std::nullopt;
    return static_cast<std::uint16_t>(value);
}

std::optional<fabric_address> parse_address(std::string_view text) {
    if (!text.empty() && text.back() == '\0') text.remove_suffix(1);
    if (text.substr(0, address_prefix.size()) != address_prefix) return std::nullopt;
    text.remove_prefix(address_prefix.size());
    constexpr std::size_t mac_length = 17;
    if (text.size() < mac_length) return std::nullopt;
    fabric_address a;
    try {
        a.mac = mac_address::parse(text.substr(0, mac_length));
    } catch (const error&) {
        return std::nullopt;
    }
    text.remove_prefix(mac_length);
    if (text.empty()) return a;
    if (text.front() != '/') return std::nullopt;
    a.endpoint = parse_service(text.substr(1));
    if (!a.endpoint) return std::nullopt;
    return a;
}

}  // namespace vmrdma::fabric
