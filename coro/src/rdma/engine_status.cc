#include "engine_status.hpp"

#include <cerrno>

#include "vmrdma/error.hpp"

extern "C" {
#include "proto/wire.h"
}

namespace vmrdma::detail {
namespace {

struct row {
    int err;            // positive errno
    std::uint8_t nak;   // enum vr_nak_reason, 0 for any
    errc code;
};

// Read top down: a (status, NAK) pair takes the first row with both equal,
// else the first with its errno and nak 0. A code goes back as its first row.
constexpr row table[] = {
    {ETIMEDOUT, 0, errc::timeout},
    {ECANCELED, 0, errc::cancelled},
    {ECONNRESET, 0, errc::peer_gone},
    {ENOTCONN, 0, errc::peer_gone},
    {EPIPE, 0, errc::peer_gone},
    {EACCES, 0, errc::bad_key},
    {EPERM, 0, errc::access_denied},
    {ERANGE, 0, errc::out_of_bounds},
    {ECONNREFUSED, VR_NAK_REJECTED, errc::refused},  // accept policy, offender, authentication
    {ECONNREFUSED, 0, errc::no_such_endpoint},
    {ENOBUFS, VR_NAK_RNR, errc::receiver_not_ready},
    {ENOBUFS, 0, errc::receiver_not_ready},
    {ENOSPC, 0, errc::resources_exhausted},
    {ENOBUFS, VR_NAK_RESOURCES, errc::resources_exhausted},
    {EAGAIN, 0, errc::resources_exhausted},
    {EINVAL, VR_NAK_INVALID, errc::remote_access},
    {EINVAL, 0, errc::invalid_argument},
    {EPROTO, 0, errc::protocol_error},
    {EBADMSG, 0, errc::protocol_error},
    {ESHUTDOWN, 0, errc::shut_down},  // vmrdmad is stopping or gone
    {EBUSY, 0, errc::resources_exhausted},  // an endpoint id still closing
    {EMSGSIZE, 0, errc::message_too_long},
    {EADDRINUSE, 0, errc::name_in_use},
    {EHOSTUNREACH, 0, errc::not_found},  // nobody answered a RESOLVE
};

}  // namespace

std::error_code code_from_status(int status, std::uint8_t nak_reason) noexcept {
    if (nak_reason != 0)
        for (const row& r : table)
            if (r.err == -status && r.nak == nak_reason) return r.code;
    for (const row& r : table)
        if (r.err == -status && r.nak == 0) return r.code;
    return code_from_errno(status);
}

engine_status status_from_code(const std::error_code& code) noexcept {
    if (code.category() == std::generic_category() || code.category() == std::system_category())
        return {-code.value(), 0};
    if (code.category() == category())
        for (const row& r : table)
            if (static_cast<int>(r.code) == code.value()) return {-r.err, r.nak};
    return {-EIO, 0};
}

}  // namespace vmrdma::detail
