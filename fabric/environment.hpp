// The provider's environment variables (docs/mpi.md, "Environment"), read
// and checked in one place. A value the provider does not know is refused
// with a message that names the variable and what it takes: a mistyped
// VMRDMA_FI_INTEGRITY silently meaning "end-to-end" on one rank and "link"
// on the other would only show as refused frames much later.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>

namespace vmrdma::fabric {

struct provider_environment {
    // VMRDMA_FI_RECEIVE_IN_TURNS=0|1: application threads read frames in
    // their calls (1, the default) or leave it to the helper (0).
    bool receive_in_turns = true;
    // VMRDMA_FI_ACK_DELAY_US=N (0..1000000): how long an ACK waits for an
    // answer to carry it; unset: the provider's default.
    std::optional<std::uint64_t> ack_delay_us;
    // VMRDMA_FI_INTEGRITY=end-to-end|link: what each frame's CRC covers.
    bool link_integrity = false;
    // VMRDMA_FI_STATS=0|1: the device's frame counters on stderr at exit.
    bool stats = false;
};

// Reads the variables through `lookup` (std::getenv by default; an empty
// value counts as unset). Throws vmrdma::error(errc::invalid_argument)
// naming the variable, its value and the values it takes.
provider_environment read_provider_environment(
    const std::function<const char*(const char*)>& lookup = nullptr);

}  // namespace vmrdma::fabric
