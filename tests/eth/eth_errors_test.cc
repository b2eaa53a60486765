// Opening the eth: transport: clear errors for what users get wrong.
#include <doctest/doctest.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

#include "tests/support/in_child.hpp"
#include "tests/support/private_net.hpp"
#include "vmrdma/rdma.hpp"
#include "vmrdma/runtime.hpp"

using vmrdma::errc;
using vmrdma::error;

TEST_CASE("without CAP_NET_RAW, eth: says that it needs it") {
    if (vmrdma::testing::skip_network_tests()) return;
    vmrdma::testing::veth_pair veth("vrcap-a", "vrcap-b", 1500);
    auto said = vmrdma::testing::in_child([&]() -> std::string {
        // Become nobody: every capability is gone.
        if (setresgid(65534, 65534, 65534) != 0 || setresuid(65534, 65534, 65534) != 0) _exit(3);
        try {
            vmrdma::event_loop loop;
            vmrdma::device::open(loop, "eth:" + veth.a);
        } catch (const error& e) {
            return (e.code() == errc::permission_denied ? "permission_denied: " : "other: ") + std::string(e.what());
        }
        return "no error";
    });
    REQUIRE(said);
    const std::string& message = *said;
    MESSAGE(message);
    CHECK(message.rfind("permission_denied: ", 0) == 0);
    CHECK(message.find("CAP_NET_RAW") != std::string::npos);
}

TEST_CASE("unknown interfaces, bad URIs and small MTUs are refused with the reason") {
    if (vmrdma::testing::skip_network_tests()) return;
    vmrdma::event_loop loop;
    auto code_of = [&](const std::string& uri) {
        try {
            vmrdma::device::open(loop, uri);
        } catch (const error& e) {
            MESSAGE(uri << " -> " << std::string(e.what()));
            return e.code();
        }
        return std::error_code{};
    };
    CHECK(code_of("eth:no-such-if0") == errc::invalid_argument);
    CHECK(code_of("eth:") == errc::invalid_argument);
    CHECK(code_of("carrier-pigeon:coop") == errc::invalid_argument);
    vmrdma::testing::veth_pair small("vrmtu-a", "vrmtu-b", 1280);
    CHECK(code_of("eth:vrmtu-a") == errc::invalid_argument);
    CHECK_THROWS_AS(vmrdma::mac_address::parse("02:00:00:00:00"), error);
    CHECK(vmrdma::mac_address::parse("02:0a:0B:00:00:ff").to_string() == "02:0a:0b:00:00:ff");
}

TEST_CASE("an unknown VMRDMA_ETH_RX is refused with the choices; each known one opens") {
    if (vmrdma::testing::skip_network_tests()) return;
    vmrdma::testing::veth_pair veth("vrrx-a", "vrrx-b", 1500);
    // Restores the variable however the test ends: every later test in this
    // binary opens devices.
    struct restore_env {
        const char* before = std::getenv("VMRDMA_ETH_RX");
        std::string saved = before ? before : "";
        ~restore_env() {
            if (before)
                setenv("VMRDMA_ETH_RX", saved.c_str(), 1);
            else
                unsetenv("VMRDMA_ETH_RX");
        }
    } restore;
    vmrdma::event_loop loop;
    setenv("VMRDMA_ETH_RX", "rign", 1);
    std::string what;
    try {
        vmrdma::device::open(loop, "eth:" + veth.a);
    } catch (const error& e) {
        CHECK(e.code() == errc::invalid_argument);
        what = e.what();
    }
    CHECK(what.find("VMRDMA_ETH_RX is 'rign'") != std::string::npos);
    CHECK(what.find("ring (the default), recvmmsg or uring") != std::string::npos);
    for (const char* choice : {"ring", "recvmmsg", "uring"}) {
        CAPTURE(choice);
        setenv("VMRDMA_ETH_RX", choice, 1);
        CHECK_NOTHROW(vmrdma::device::open(loop, "eth:" + veth.a));
    }
}

TEST_CASE("an accept cancelled from another thread ends with errc::cancelled") {
    if (vmrdma::testing::skip_network_tests()) return;
    vmrdma::testing::veth_pair veth("vracc-a", "vracc-b", 1500);
    vmrdma::event_loop loop;
    auto dev = vmrdma::device::open(loop, "eth:" + veth.a);
    auto ep = dev->open_endpoint(1, {.weight = 1, .listen = true});
    std::stop_source stop;
    std::thread canceller;
    auto body = [&]() -> vmrdma::task<void> {
        canceller = std::thread([&] {
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
            stop.request_stop();
        });
        co_await ep.accept(stop.get_token());
    };
    try {
        loop.run(body());
        FAIL("the accept should have been cancelled");
    } catch (const error& e) {
        CHECK(e.code() == errc::cancelled);
    }
    canceller.join();
}
