#include "examples/check/options.hpp"

#include <cerrno>
#include <cstdlib>

#include "examples/support/netns_pair.hpp"

namespace vmrdma::check {

options::options(int argc, char** argv, int first, const std::set<std::string>& valued,
                 const std::set<std::string>& flags) {
    for (int i = first; i < argc; ++i) {
        std::string a = argv[i];
        if (a.rfind("--", 0) != 0) throw usage_error("unexpected argument '" + a + "'");
        std::string name = a.substr(2), value;
        bool has_value = false;
        if (auto eq = name.find('='); eq != std::string::npos) {
            value = name.substr(eq + 1);
            name = name.substr(0, eq);
            has_value = true;
        }
        if (flags.count(name)) {
            if (has_value) throw usage_error("--" + name + " takes no value");
            values_[name] = "";
            continue;
        }
        if (!valued.count(name)) throw usage_error("unknown option --" + name);
        if (!has_value) {
            if (i + 1 >= argc) throw usage_error("--" + name + " needs a value");
            value = argv[++i];
        }
        if (values_.count(name)) throw usage_error("--" + name + " given twice");
        values_[name] = value;
    }
}

std::string options::get(const std::string& name, const std::string& fallback) const {
    auto it = values_.find(name);
    return it == values_.end() ? fallback : it->second;
}

std::string options::required(const std::string& name) const {
    if (!has(name)) throw usage_error("--" + name + " is required");
    return get(name);
}

unsigned long long parse_number(const std::string& text, unsigned long long max, const std::string& what) {
    char* end = nullptr;
    errno = 0;
    unsigned long long v = std::strtoull(text.c_str(), &end, 0);  // decimal or 0x...
    if (text.empty() || text[0] == '-' || errno != 0 || *end != '\0' || v > max)
        throw usage_error(what + ", got '" + text + "'");
    return v;
}

std::size_t parse_bytes(const std::string& text, unsigned long long max, const std::string& what) {
    try {
        return vmrdma::examples::parse_size(text, max, what);
    } catch (const std::runtime_error& e) {
        throw usage_error(e.what());
    }
}

unsigned parse_seconds(const std::string& text, const std::string& option) {
    auto s = parse_number(text, 3600, option + " must be 1..3600 seconds");
    if (s == 0) throw usage_error(option + " must be 1..3600 seconds, got '" + text + "'");
    return static_cast<unsigned>(s);
}

}  // namespace vmrdma::check
