#include "vmrdma/error.hpp"

#include <cerrno>

namespace vmrdma {
namespace {

class vmrdma_category final : public std::error_category {
public:
    const char* name() const noexcept override { return "vmrdma"; }
    std::string message(int value) const override {
        switch (static_cast<errc>(value)) {
        case errc::timeout: return "operation timed out";
        case errc::cancelled: return "operation cancelled";
        case errc::peer_gone: return "peer is gone";
        case errc::remote_access: return "remote access error";
        case errc::bad_key: return "remote access error: bad key";
        case errc::out_of_bounds: return "remote access error: out of bounds";
        case errc::access_denied: return "remote access error: access denied";
        case errc::no_such_endpoint: return "remote access error: no such endpoint";
        case errc::receiver_not_ready: return "receiver not ready";
        case errc::resources_exhausted: return "resources exhausted";
        case errc::invalid_argument: return "invalid argument";
        case errc::permission_denied: return "permission denied";
        case errc::protocol_error: return "protocol error";
        case errc::shut_down: return "shut down";
        case errc::message_too_long: return "message longer than the receive it matched";
        case errc::name_in_use: return "name already announced by another endpoint";
        case errc::not_found: return "no endpoint announces that name";
        case errc::refused: return "the peer refused the connection";
        }
        return "unknown vmrdma error";
    }
};

}  // namespace

const std::error_category& category() noexcept {
    static const vmrdma_category instance;
    return instance;
}

std::error_code code_from_errno(int negative_errno) noexcept {
    switch (-negative_errno) {
    case ETIMEDOUT: return errc::timeout;
    case ECANCELED: return errc::cancelled;
    case ECONNRESET:
    case ENOTCONN: return errc::peer_gone;
    case ENOSPC:
    case ENOBUFS: return errc::resources_exhausted;
    case EINVAL: return errc::invalid_argument;
    case EPERM:
    case EACCES: return errc::permission_denied;
    case EPROTO:
    case EBADMSG: return errc::protocol_error;
    default: return {-negative_errno, std::generic_category()};
    }
}

void throw_errno(int negative_errno, const std::string& what) {
    throw error(code_from_errno(negative_errno), what);
}

}  // namespace vmrdma
