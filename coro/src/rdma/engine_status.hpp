// The engine's status codes (negative errno values, proto/engine.h, plus the
// remote NAK reason of a failed operation) and vmrdma's errc, both ways,
// from one table (engine_status.cc). Every path uses it: the eth: device,
// the ring link's replies and completions, and vmrdmad's answers to its
// frontends, so an error crosses unix: and xen: as what it was.
#pragma once

#include <cstdint>
#include <system_error>

namespace vmrdma::detail {

// An engine status as vmrdma's error code. The NAK reason, when there is
// one, refines it: -ENOBUFS is receiver_not_ready after an RNR NAK but
// resources_exhausted after a RESOURCES NAK; -EINVAL after an INVALID NAK is
// the peer's refusal (remote_access), not our argument. A status the table
// does not name is an OS errno (code_from_errno).
std::error_code code_from_status(int status, std::uint8_t nak_reason = 0) noexcept;

// The inverse, for a backend answering a frontend: the status and NAK
// reason that code_from_status turns back into the same code. System
// errors cross as their errno; an errc with no engine status (permission
// denied) crosses as -EIO.
struct engine_status {
    std::int32_t status = 0;
    std::uint8_t nak_reason = 0;
};
engine_status status_from_code(const std::error_code& code) noexcept;

}  // namespace vmrdma::detail
