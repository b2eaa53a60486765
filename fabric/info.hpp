// What the provider offers (fi_getinfo): one fi_info per device URI, built
// from the provider's limits, and the check of an application's hints
// against it (docs/mpi.md, "What it offers").
#pragma once

#include <rdma/fabric.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "fabric/address.hpp"

namespace vmrdma::fabric {

inline constexpr const char* provider_name = "vmrdma";
inline constexpr std::uint32_t provider_version = FI_VERSION(1, 0);

// Limits of the provider's protocol (docs/mpi.md).
inline constexpr std::size_t eager_max = 64 * 1024;       // larger messages go as offers
inline constexpr std::size_t inject_max = 16 * 1024;      // fi_inject*, and atomics' operands
inline constexpr std::size_t max_message = std::size_t{1} << 30;
inline constexpr std::size_t queue_size = 1024;            // tx and rx attr size
inline constexpr std::size_t iov_limit = 8;
inline constexpr std::size_t cq_data_size = 8;

inline constexpr std::uint64_t primary_caps =
    FI_MSG | FI_TAGGED | FI_RMA | FI_ATOMIC | FI_DIRECTED_RECV;
inline constexpr std::uint64_t secondary_caps = FI_SEND | FI_RECV | FI_READ | FI_WRITE | FI_REMOTE_READ |
                                                FI_REMOTE_WRITE | FI_SOURCE | FI_MULTI_RECV | FI_RMA_EVENT |
                                                FI_LOCAL_COMM | FI_REMOTE_COMM;
inline constexpr std::uint64_t tx_caps = FI_MSG | FI_TAGGED | FI_RMA | FI_ATOMIC | FI_SEND | FI_READ | FI_WRITE;
inline constexpr std::uint64_t rx_caps = FI_MSG | FI_TAGGED | FI_RMA | FI_ATOMIC | FI_DIRECTED_RECV | FI_RECV |
                                         FI_REMOTE_READ | FI_REMOTE_WRITE | FI_SOURCE | FI_MULTI_RECV |
                                         FI_RMA_EVENT;
// Every operation of one initiator goes over one connection and is applied
// by the target in arrival order; transfers above eager_max move their data
// later (as offers), so the ordering holds up to that size.
inline constexpr std::uint64_t msg_order = FI_ORDER_STRICT;
inline constexpr std::size_t max_order_size = eager_max;
// The MR modes the provider works with; none is required.
inline constexpr std::uint64_t mr_modes = FI_MR_VIRT_ADDR | FI_MR_ALLOCATED | FI_MR_PROV_KEY;

// Which devices fi_getinfo describes: hints' domain name, else
// $VMRDMA_DEVICE, else eth: on the one non-loopback Ethernet interface that
// is up. `why` says why there is none.
std::vector<std::string> candidate_devices(const fi_info* hints, std::string& why);

// The MAC of a device without opening it where that is possible (eth: reads
// sysfs); nullopt when it must be asked (unix:, xen:).
std::optional<mac_address> mac_without_opening(const std::string& uri);

// The fi_info for one device whose MAC is known, fitted to `hints`, or
// nullptr with `why` when the hints ask for what the provider lacks.
// node/service/flags as fi_getinfo's. Allocated with fi_allocinfo.
fi_info* describe(std::uint32_t version, const std::string& uri, const mac_address& mac, const char* node,
                  const char* service, std::uint64_t flags, const fi_info* hints, std::string& why);

}  // namespace vmrdma::fabric
