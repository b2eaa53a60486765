// Where a binary the test depends on (its `data`) is: in the test's runfiles
// under Bazel, else under bazel-bin for a test run by hand from the top of
// the tree.
#pragma once

#include <cstdlib>
#include <string>

namespace vmrdma::testing {

// `path` from the top of the workspace, e.g. "vmrdmad/vmrdmactl".
inline std::string runfile(const std::string& path) {
    if (const char* srcdir = std::getenv("TEST_SRCDIR")) {
        const char* ws = std::getenv("TEST_WORKSPACE");
        return std::string(srcdir) + "/" + (ws ? ws : "vmrdma") + "/" + path;
    }
    return "bazel-bin/" + path;
}

}  // namespace vmrdma::testing
