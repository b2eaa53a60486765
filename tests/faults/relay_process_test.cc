// tools/faultrelay/relay_process.hpp, the launcher tests/faults and
// vmrdma-bench --relay share: it starts the relay inside a named network
// namespace (as the bench does), gets stats lines on demand and the final
// counters at stop, and says why when the relay cannot start.
#include "tools/faultrelay/relay_process.hpp"

#include <doctest/doctest.h>

#include <stdexcept>
#include <string>

#include "examples/support/netns_pair.hpp"
#include "tests/support/private_net.hpp"
#include "tests/support/runfile.hpp"

using vmrdma::faultrelay::relay_process;

namespace {

std::string relay_binary() { return vmrdma::testing::runfile("tools/faultrelay/faultrelay"); }

int count(const std::string& text, const std::string& what) {
    int n = 0;
    for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
    return n;
}

// The message relay_process's constructor throws, or "" if it started.
std::string start_error(const std::string& binary, const std::vector<std::string>& args,
                        const std::string& netns = "") {
    try {
        relay_process r(binary, args, netns);
    } catch (const std::runtime_error& e) {
        return e.what();
    }
    return "";
}

}  // namespace

TEST_CASE("the relay runs in the named namespace, prints stats when asked and final counters at stop") {
    if (vmrdma::testing::skip_network_tests()) return;
    using vmrdma::examples::netns_pair;
    // The relay's two interfaces exist only in the pair's relay namespace:
    // outside it the relay would exit ("no interface named ...").
    netns_pair net("vmrdma-rpt", 1500, true);
    relay_process relay(relay_binary(), {"--quiet", netns_pair::relay_a, netns_pair::relay_b}, net.relay());
    const std::string stats = relay.snapshot();
    CHECK(count(stats, "faultrelay: stats ") == 2);
    const std::string out = relay.stop();
    CHECK(relay.exited_cleanly());
    CHECK(out.find("faultrelay: ready") == std::string::npos);  // what came after it
    CHECK(count(out, "faultrelay: final ") == 2);
    CHECK(relay.stop() == out);
}

TEST_CASE("a relay that cannot start is an error saying why") {
    if (vmrdma::testing::skip_network_tests()) return;
    CHECK(start_error("/nonexistent/faultrelay", {"x", "y"}).find(
              "cannot run /nonexistent/faultrelay: No such file or directory") != std::string::npos);
    CHECK(start_error(relay_binary(), {"x", "y"}, "vmrdma-no-such-netns") ==
          "cannot open /run/netns/vmrdma-no-such-netns: No such file or directory");
    const std::string absent = start_error(relay_binary(), {"vmrdma-rpt-none0", "vmrdma-rpt-none1"});
    CHECK(absent.find("exited before it was ready") != std::string::npos);
    CHECK(absent.find("no interface named 'vmrdma-rpt-none0'") != std::string::npos);
}
