#include "fabric/environment.hpp"

#include <charconv>
#include <cstdlib>
#include <string>
#include <string_view>

#include "vmrdma/error.hpp"

namespace vmrdma::fabric {

namespace {

constexpr std::uint64_t max_ack_delay_us = 1'000'000;

[[noreturn]] void refuse(const char* name, std::string_view value, const char* takes) {
    throw error(errc::invalid_argument,
                std::string(name) + " is '" + std::string(value) + "': it takes " + takes);
}

bool zero_or_one(const char* name, std::string_view value) {
    if (value == "0") return false;
    if (value == "1") return true;
    refuse(name, value, "0 or 1");
}

}  // namespace

provider_environment read_provider_environment(const std::function<const char*(const char*)>& lookup) {
    auto get = [&](const char* name) -> std::optional<std::string_view> {
        const char* value = lookup ? lookup(name) : std::getenv(name);
        if (!value || !*value) return std::nullopt;
        return std::string_view(value);
    };
    provider_environment env;
    if (auto v = get("VMRDMA_FI_RECEIVE_IN_TURNS")) env.receive_in_turns = zero_or_one("VMRDMA_FI_RECEIVE_IN_TURNS", *v);
    if (auto v = get("VMRDMA_FI_STATS")) env.stats = zero_or_one("VMRDMA_FI_STATS", *v);
    if (auto v = get("VMRDMA_FI_INTEGRITY")) {
        if (*v == "link")
            env.link_integrity = true;
        else if (*v != "end-to-end")
            refuse("VMRDMA_FI_INTEGRITY", *v, "end-to-end (the default) or link");
    }
    if (auto v = get("VMRDMA_FI_ACK_DELAY_US")) {
        std::uint64_t us = 0;
        auto [end, ec] = std::from_chars(v->data(), v->data() + v->size(), us);
        if (ec != std::errc{} || end != v->data() + v->size() || us > max_ack_delay_us)
            refuse("VMRDMA_FI_ACK_DELAY_US", *v, "microseconds, 0 (ACK at once) to 1000000");
        env.ack_delay_us = us;
    }
    return env;
}

}  // namespace vmrdma::fabric
