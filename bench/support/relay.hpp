// vmrdma-bench --relay: tools/faultrelay forwarding between the two hosts'
// namespaces (netns_pair relayed), so that vmrdma and TCP run through the
// same lossy, delayed or rate-limited link (docs/faultrelay.md). The relay
// is started with tools/faultrelay/relay_process.hpp; here is what is the
// bench's own: where the binary is and how --relay's options become words.
#pragma once

#include <string>
#include <vector>

namespace vmrdma::bench {

// The faultrelay binary: `given` if not empty, else next to this program in
// Bazel's runfiles or output tree; throws saying where it looked.
std::string find_relay(const std::string& given, const char* argv0);

// --relay's options (one argument) split into words, then the two interfaces.
std::vector<std::string> relay_args(const std::string& options, const std::string& iface_a,
                                    const std::string& iface_b);

}  // namespace vmrdma::bench
