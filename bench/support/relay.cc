#include "bench/support/relay.hpp"

#include <unistd.h>

#include <cstdlib>
#include <sstream>
#include <stdexcept>

namespace vmrdma::bench {

std::vector<std::string> relay_args(const std::string& options, const std::string& iface_a,
                                    const std::string& iface_b) {
    std::vector<std::string> args;
    std::istringstream words(options);
    for (std::string w; words >> w;) args.push_back(w);
    args.push_back(iface_a);
    args.push_back(iface_b);
    return args;
}

std::string find_relay(const std::string& given, const char* argv0) {
    if (!given.empty()) {
        if (access(given.c_str(), X_OK) != 0) throw std::runtime_error("--relay-bin " + given + " is not executable");
        return given;
    }
    std::string self = argv0;
    std::string dir = self.substr(0, self.rfind('/') + 1);  // "" when run from PATH
    std::vector<std::string> tries = {self + ".runfiles/vmrdma/tools/faultrelay/faultrelay",
                                      dir + "../tools/faultrelay/faultrelay"};
    if (const char* r = std::getenv("RUNFILES_DIR")) tries.insert(tries.begin(), std::string(r) + "/vmrdma/tools/faultrelay/faultrelay");
    for (auto& t : tries)
        if (access(t.c_str(), X_OK) == 0) return t;
    std::string where;
    for (auto& t : tries) where += "\n  " + t;
    throw std::runtime_error("cannot find tools/faultrelay (build it: bazel build //tools/faultrelay, or give "
                             "--relay-bin); looked at:" + where);
}

}  // namespace vmrdma::bench
