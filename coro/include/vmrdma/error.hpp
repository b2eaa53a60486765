// The one error model of vmrdma: failures are thrown as vmrdma::error, a
// std::system_error whose code() is in vmrdma's category (or, for plain OS
// failures, the generic/system category). Callers compare codes with errc.
#pragma once

#include <string>
#include <system_error>

namespace vmrdma {

enum class errc {
    timeout = 1,          // the operation or the peer did not answer in time
    cancelled,            // a stop token asked for it
    peer_gone,            // the peer closed, vanished or exhausted its retries
    remote_access,        // the peer refused: see the NAK reason in the message
    bad_key,              // NAK: unknown or forged remote key
    out_of_bounds,        // NAK: offset/length outside the region
    access_denied,        // NAK: region lacks the access right
    no_such_endpoint,     // NAK: the addressed endpoint does not exist
    receiver_not_ready,   // NAK: no posted receive, retries exhausted
    resources_exhausted,  // a pool or queue is full (local or remote)
    invalid_argument,     // the caller passed something unusable
    permission_denied,    // e.g. raw sockets need CAP_NET_RAW
    protocol_error,       // the peer spoke something we cannot accept
    shut_down,            // the event loop or device is closing
    message_too_long,     // a send was longer than the receive it matched (both sides)
    name_in_use,          // another endpoint of the same engine announces that name
    not_found,            // nobody on the link announces the name asked for
    refused,              // the peer refused the connection: its accept policy, an
                          // offending MAC, or authentication on one side only
};

const std::error_category& category() noexcept;

inline std::error_code make_error_code(errc e) noexcept {
    return {static_cast<int>(e), category()};
}

class error : public std::system_error {
public:
    explicit error(std::error_code code, const std::string& what = {})
        : std::system_error(code, what) {}
    explicit error(errc e, const std::string& what = {})
        : std::system_error(make_error_code(e), what) {}
};

// Maps a negative errno as returned by io_uring or proto/ to a code: the
// errnos that mean something to vmrdma map to errc, the rest stay generic.
std::error_code code_from_errno(int negative_errno) noexcept;

[[noreturn]] void throw_errno(int negative_errno, const std::string& what);

}  // namespace vmrdma

template <>
struct std::is_error_code_enum<vmrdma::errc> : std::true_type {};
