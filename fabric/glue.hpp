// What the C entry points of the provider share: turning an exception into a
// libfabric error at the boundary, logging, and the open functions of each
// object (each defined in its own file).
#pragma once

#include <cstdio>
#include <exception>
#include <new>
#include <string>

#include "fabric/objects.hpp"

namespace vmrdma::fabric {

// Logs a line to stderr when FI_LOG_LEVEL asks for warnings (or more).
void log_warning(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
// A configuration error (a provider variable, a device URI, VMRDMA_ETH_RX)
// is said on stderr whatever FI_LOG_LEVEL is, once per message: the program
// itself would only report "no provider" or "no data".
void report_configuration_error(const std::string& what);
// Whether opening a device failed for a reason the user must mend (a bad
// URI, VMRDMA_ETH_RX or provider variable, a small MTU, no CAP_NET_RAW for
// eth:), which report_configuration_error says.
bool users_to_mend(const std::exception& e) noexcept;

// Runs fn() and returns its result, or a negative FI_ errno for an exception
// (nothing may unwind into libfabric's C).
template <typename Fn>
auto guarded(Fn&& fn) noexcept -> decltype(fn()) {
    try {
        return fn();
    } catch (const std::bad_alloc&) {
        return -FI_ENOMEM;
    } catch (const std::exception& e) {
        log_warning("vmrdma: %s", e.what());
        return -fi_errno_of(e);
    } catch (...) {
        return -FI_EIO;
    }
}

// The fid operations an object does not have.
inline int no_bind(fid*, fid*, std::uint64_t) { return -FI_ENOSYS; }
inline int no_control(fid*, int, void*) { return -FI_ENOSYS; }
inline int no_ops_open(fid*, const char*, std::uint64_t, void**, void*) { return -FI_ENOSYS; }

int domain_open(fid_fabric* fabric, fi_info* info, fid_domain** out, void* context);
int eq_open(fid_fabric* fabric, fi_eq_attr* attr, fid_eq** out, void* context);
int av_open(fid_domain* domain, fi_av_attr* attr, fid_av** out, void* context);
int cq_open(fid_domain* domain, fi_cq_attr* attr, fid_cq** out, void* context);
int cntr_open(fid_domain* domain, fi_cntr_attr* attr, fid_cntr** out, void* context);
int endpoint_open(fid_domain* domain, fi_info* info, fid_ep** out, void* context);
int mr_reg(fid* fid, const void* buf, std::size_t len, std::uint64_t access, std::uint64_t offset,
           std::uint64_t requested_key, std::uint64_t flags, fid_mr** out, void* context);
int trywait(fid_fabric* fabric, fid** fids, int count);

// fi_trywait for one CQ, counter or EQ: 0 when nothing is there and the
// loop is idle (its wait fd may then be waited on), -FI_EAGAIN otherwise.
int trywait_one(fid* f);

}  // namespace vmrdma::fabric
