// vmrdma-check's command line: `--name value`, `--name=value` and flags,
// and the number parsers its modes share. A usage_error exits 2.
#pragma once

#include <map>
#include <set>
#include <stdexcept>
#include <string>

namespace vmrdma::check {

struct usage_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

class options {
public:
    // Parses argv[first..argc): `valued` options take a value, `flags` none.
    options(int argc, char** argv, int first, const std::set<std::string>& valued,
            const std::set<std::string>& flags);
    bool has(const std::string& name) const { return values_.count(name) != 0; }
    std::string get(const std::string& name, const std::string& fallback = {}) const;
    std::string required(const std::string& name) const;

private:
    std::map<std::string, std::string> values_;
};

// Decimal or 0x...; at most `max`, else usage_error(what, got '...').
unsigned long long parse_number(const std::string& text, unsigned long long max, const std::string& what);
// Bytes with an optional K or M suffix, 1..max; usage_error(what) otherwise.
std::size_t parse_bytes(const std::string& text, unsigned long long max, const std::string& what);
// Seconds, 1..3600.
unsigned parse_seconds(const std::string& text, const std::string& option);

}  // namespace vmrdma::check
