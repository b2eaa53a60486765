// vmrdmad --xen: the daemon as the Xen backend of frontend_kmod guests
// (docs/xen.md, "vmrdmad as the Xen backend"), in place of backend_kmod and
// with no change to the guest. The xenbus side (xenstore handshake,
// proto/xen.h's keys) runs here with libxenstore; each connected guest is
// served by daemon::serve_guest through a guest_port whose grant mappings
// and event channel are libxengnttab's and libxenevtchn's. Only the dom0
// harness (tests/xen) exercises this file: it needs Xen.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <stop_token>
#include <string>

#include "daemon.hpp"
#include "vmrdma/async_scope.hpp"
#include "vmrdma/event_loop.hpp"
#include "vmrdma/rdma.hpp"
#include "vmrdma/task.hpp"

struct xs_handle;

namespace vmrdmad {

class xen_backend {
public:
    // Opens xenstore and checks gntdev and evtchn are there; throws
    // vmrdma::error saying what is missing ("--xen: cannot open xenstore:
    // ... (is this a Xen dom0 with xenstored running?)").
    explicit xen_backend(vmrdma::event_loop& loop);
    ~xen_backend();
    xen_backend(const xen_backend&) = delete;
    xen_backend& operator=(const xen_backend&) = delete;

    // Serves every guest that gets a vmrdma device under
    // /local/domain/0/backend/vmrdma (tools/xen_attach) until `stop`; then
    // disconnects them (backend Closing) and returns once all are torn down.
    // Guest requests run on `d` (its limits, weights, admission); the guests
    // see its NIC's MAC and MTU.
    vmrdma::task<void> run(daemon& d, std::stop_token stop);

private:
    struct guest;
    void reconcile();
    void publish(guest& g);
    void connect(guest& g);
    void fatal(guest& g, int err, const std::string& what);
    bool be_present(const guest& g);
    bool write_state(guest& g, int state);
    vmrdma::task<void> serve(guest& g);
    vmrdma::task<void> watch_xenstore(std::stop_token stop);
    vmrdma::task<void> tick(std::stop_token stop);

    vmrdma::event_loop& loop_;
    xs_handle* xs_ = nullptr;
    std::string base_;  // /local/domain/0/backend/vmrdma
    daemon* daemon_ = nullptr;
    bool stopping_ = false;
    std::map<std::uint32_t, std::unique_ptr<guest>> guests_;  // by domid
    vmrdma::async_scope scope_;
};

}  // namespace vmrdmad
