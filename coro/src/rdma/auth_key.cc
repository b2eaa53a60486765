// Reading a pre-shared key for device_options::auth_key (rdma.hpp).
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "vmrdma/error.hpp"
#include "vmrdma/rdma.hpp"

namespace vmrdma {
namespace {

int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

}  // namespace

device_options::auth_key_bytes read_auth_key(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw error(errc::invalid_argument, "cannot open the key file " + path + ": " + ::strerror(errno));
    struct stat st{};
    char buf[130];
    ssize_t n = ::fstat(fd, &st) == 0 ? ::read(fd, buf, sizeof buf) : -1;
    ::close(fd);
    if (n < 0) throw error(errc::invalid_argument, "cannot read the key file " + path);
    // A key others can read is no secret.
    if (st.st_mode & (S_IRWXG | S_IRWXO))
        throw error(errc::invalid_argument, "the key file " + path + " is open to group or others (chmod 600 it)");
    device_options::auth_key_bytes key{};
    std::size_t len = static_cast<std::size_t>(n);
    while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r')) --len;
    bool ok = false;
    if (len == key.size() * 2) {
        ok = true;
        for (std::size_t i = 0; i < key.size() && ok; ++i) {
            int hi = hex_digit(buf[2 * i]), lo = hex_digit(buf[2 * i + 1]);
            ok = hi >= 0 && lo >= 0;
            key[i] = static_cast<std::byte>(hi << 4 | lo);
        }
    } else if (static_cast<std::size_t>(n) == key.size()) {  // 32 raw bytes
        std::memcpy(key.data(), buf, key.size());
        ok = true;
    }
    ::explicit_bzero(buf, sizeof buf);
    if (!ok)
        throw error(errc::invalid_argument,
                    "the key file " + path + " must hold 32 bytes: 64 hex digits (e.g. from "
                    "`head -c 32 /dev/urandom | xxd -p -c 64`) or the raw bytes");
    return key;
}

}  // namespace vmrdma
