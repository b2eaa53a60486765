// The xen: transport (frontend_kmod's /dev/vmrdma) cannot run on a host
// that is not a Xen guest; what can be checked here is that opening it
// where there is no such device fails with a reason that says what to
// look at, and leaks nothing.
#include <doctest/doctest.h>

#include <string>
#include <system_error>

#include "tests/support/fd_count.hpp"
#include "vmrdma/rdma.hpp"
#include "vmrdma/runtime.hpp"

using vmrdma::errc;
using vmrdma::error;

namespace {
struct failure {
    std::error_code code;
    std::string what;
};

failure open_failure(vmrdma::event_loop& loop, const std::string& uri) {
    try {
        vmrdma::device::open(loop, uri);
    } catch (const error& e) {
        MESSAGE(uri << " -> " << std::string(e.what()));
        return {e.code(), e.what()};
    }
    return {};
}
}  // namespace

TEST_CASE("xen: on a missing device says which module and which device to look for") {
    vmrdma::event_loop loop;
    int fds = vmrdma::testing::open_fd_count();
    auto f = open_failure(loop, "xen:/nonexistent/vmrdma");
    CHECK(f.code == std::errc::no_such_file_or_directory);
    CHECK(f.what.rfind("xen: cannot open /nonexistent/vmrdma: No such file or directory "
                       "(is frontend_kmod loaded? are we a Xen guest with a vmrdma device attached?)",
                       0) == 0);
    CHECK(vmrdma::testing::open_fd_count() == fds);
}

TEST_CASE("xen: on a device that is not frontend_kmod's is refused, and nothing leaks") {
    vmrdma::event_loop loop;
    int fds = vmrdma::testing::open_fd_count();
    auto f = open_failure(loop, "xen:/dev/null");  // opens, but VR_IOC_CTL is ENOTTY there
    CHECK(f.code == errc::protocol_error);
    CHECK(f.what.find("/dev/null is not a vmrdma device") != std::string::npos);
    CHECK(vmrdma::testing::open_fd_count() == fds);  // the file and the eventfd are closed again

    f = open_failure(loop, "xen:");
    CHECK(f.code == errc::invalid_argument);
    CHECK(f.what.find("xen:/dev/vmrdma") != std::string::npos);
}

TEST_CASE("an unknown transport lists the three there are") {
    vmrdma::event_loop loop;
    auto f = open_failure(loop, "xenn:/dev/vmrdma");
    CHECK(f.code == errc::invalid_argument);
    CHECK(f.what.find("eth:IFNAME, unix:PATH or xen:DEVICE") != std::string::npos);
}
