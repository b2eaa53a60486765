// The provider's objects behind libfabric's fids (docs/mpi.md, "How
// libfabric's objects map onto vmrdma's"). Each starts with its fid struct,
// so a fid pointer converts back with container_of. Everything of one device
// is serialised by its device_context's mutex, taken by every entry point.
#pragma once

#include <rdma/fabric.h>
#include <rdma/fi_atomic.h>
#include <rdma/fi_cm.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_eq.h>
#include <rdma/fi_errno.h>
#include <rdma/fi_rma.h>
#include <rdma/fi_tagged.h>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <vector>

#include <netinet/in.h>

#include "fabric/address.hpp"
#include "fabric/device_context.hpp"

namespace vmrdma::fabric {

class messenger;
struct cntr_obj;
struct eq_obj;

template <typename T, typename F>
T* owner_of(F* field, F T::*member) {
    return reinterpret_cast<T*>(reinterpret_cast<char*>(field) -
                                reinterpret_cast<std::size_t>(&(static_cast<T*>(nullptr)->*member)));
}

struct fabric_obj {
    fid_fabric fid{};
    int refs = 0;  // domains and EQs open on it
};

struct mr_obj;

struct domain_obj {
    fid_domain fid{};
    fabric_obj* fabric = nullptr;
    std::shared_ptr<device_context> ctx;
    fi_info* info = nullptr;  // as opened (a copy)
    bool virt_addr = true;    // FI_MR_VIRT_ADDR (or FI_MR_BASIC): peers name memory by address
    bool prov_key = true;     // FI_MR_PROV_KEY (or FI_MR_BASIC): the provider chooses keys
    bool ipv4 = false;        // addresses are FI_SOCKADDR_IN (ipv4.hpp), not the provider's own
    in_addr own_ipv4{};       // then: the interface's, for fi_getname
    std::unordered_map<std::uint64_t, mr_obj*> mrs;
    int refs = 0;  // objects open on it
    ~domain_obj();

    // The target side of RMA and atomics: the memory an MR of `key` gives at
    // `addr` for `len` bytes with `access` (FI_REMOTE_READ/WRITE); nullptr
    // and the positive FI_ errno why (a foreign key, a range outside it, a
    // right it lacks).
    std::byte* target(std::uint64_t key, std::uint64_t addr, std::size_t len, std::uint64_t access, int& err,
                      mr_obj** mr = nullptr) const;
};

struct mr_obj {
    fid_mr fid{};
    domain_obj* dom = nullptr;
    std::byte* base = nullptr;
    std::size_t len = 0;
    std::uint64_t access = 0;
    std::uint64_t offset = 0;  // without FI_MR_VIRT_ADDR: the address peers give for base
    cntr_obj* cntr = nullptr;  // FI_RMA_EVENT: counts remote accesses
};

// One address an AV holds: a vmrdma address, or (FI_SOCKADDR_IN domains)
// an IPv4 address and port, resolved to one on first use (ipv4.hpp).
struct av_entry {
    std::optional<peer_address> peer;
    std::optional<sockaddr_in> ipv4;
};

struct av_obj {
    fid_av fid{};
    domain_obj* dom = nullptr;
    fi_av_type type = FI_AV_MAP;
    std::vector<std::optional<av_entry>> table;  // fi_addr = index
    std::unordered_map<std::uint64_t, fi_addr_t> index;  // address_key of resolved entries -> fi_addr
    eq_obj* eq = nullptr;
    int refs = 0;
    std::uint64_t flags = 0;
    // The vmrdma address of an entry (an IPv4 one is resolved now, once);
    // nullopt for no entry or a host that does not resolve.
    std::optional<peer_address> peer(fi_addr_t a);
    // The entry for a peer that sent us something (FI_SOURCE), or
    // FI_ADDR_NOTAVAIL.
    fi_addr_t lookup(const peer_address& a);
};

// An entry as every CQ format needs it, plus its source.
struct cq_entry {
    fi_cq_tagged_entry e{};
    fi_addr_t src = FI_ADDR_NOTAVAIL;
};

struct cq_obj {
    fid_cq fid{};
    domain_obj* dom = nullptr;
    fi_cq_format format = FI_CQ_FORMAT_CONTEXT;
    fi_wait_obj wait_obj = FI_WAIT_NONE;
    std::size_t size = 0;
    std::deque<cq_entry> entries;
    std::deque<fi_cq_err_entry> errors;
    int refs = 0;
    bool signaled = false;
    wake_fd wake;  // readable while something waits to be read (or signaled)
    int epoll_fd = -1;  // FI_GETWAIT: the wake fd and the loop's wait fd
    ~cq_obj();
    void push(const cq_entry& entry);
    void push_error(const fi_cq_err_entry& err);
};

struct cntr_obj {
    fid_cntr fid{};
    domain_obj* dom = nullptr;
    std::uint64_t value = 0, errors = 0;
    fi_wait_obj wait_obj = FI_WAIT_NONE;
    int refs = 0;
    wake_fd wake;
    int epoll_fd = -1;
    ~cntr_obj();
    void add(std::uint64_t n);
    void add_error(std::uint64_t n);
};

// Events (AV inserts with FI_EVENT, or the application's own fi_eq_write).
// Fabric-level, so it has its own lock.
struct eq_obj {
    fid_eq fid{};
    fabric_obj* fabric = nullptr;
    std::mutex mutex;
    struct event {
        std::uint32_t type;
        std::vector<std::byte> data;
    };
    std::deque<event> events;
    std::deque<fi_eq_err_entry> errors;
    std::size_t size = 0;
    fi_wait_obj wait_obj = FI_WAIT_NONE;
    int refs = 0;
    wake_fd wake{true};  // its own lock, and rare: always written
    void write(std::uint32_t type, const void* buf, std::size_t len);
    void write_error(const fi_eq_err_entry& err);
};

enum cntr_slot { cntr_send, cntr_recv, cntr_read, cntr_write, cntr_remote_read, cntr_remote_write, cntr_slots };

struct ep_obj {
    fid_ep fid{};
    domain_obj* dom = nullptr;
    fi_info* info = nullptr;
    av_obj* av = nullptr;
    cq_obj* tx_cq = nullptr;
    cq_obj* rx_cq = nullptr;
    bool tx_selective = false, rx_selective = false;
    cntr_obj* cntrs[cntr_slots] = {};
    eq_obj* eq = nullptr;
    std::uint64_t tx_op_flags = 0, rx_op_flags = 0;
    std::size_t min_multi_recv = 64;
    std::optional<std::uint16_t> wanted_id;  // from the source address
    std::unique_ptr<messenger> m;           // made by fi_enable
    ~ep_obj();
};

// Converts an exception from the vmrdma API into a positive FI_ errno.
int fi_errno_of(const std::exception& e) noexcept;

}  // namespace vmrdma::fabric
