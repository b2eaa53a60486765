#include "admin_client.hpp"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace vmrdmad {

admin_client::admin_client(const std::string& path) {
    sockaddr_un addr{};
    if (path.empty() || path.size() >= sizeof addr.sun_path)
        throw admin_error(-EINVAL, "socket path '" + path + "' is empty or too long");
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path.data(), path.size());
    sock_ = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (sock_ < 0) throw admin_error(-errno, "cannot create a UNIX socket");
    if (::connect(sock_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0) {
        int e = errno;
        ::close(sock_);
        throw admin_error(-e, "cannot connect to vmrdmad at '" + path + "': " + std::strerror(e));
    }
}

admin_client::~admin_client() { ::close(sock_); }

vr_ctl_msg admin_client::call(std::uint16_t type, std::uint64_t a0, std::uint64_t a1, std::uint64_t a2) {
    vr_ctl_msg msg{};
    msg.magic = VR_CTL_MAGIC;
    msg.version = VR_CTL_VERSION;
    msg.type = type;
    msg.seq = ++seq_;
    msg.arg[0] = a0;
    msg.arg[1] = a1;
    msg.arg[2] = a2;
    if (::send(sock_, &msg, sizeof msg, MSG_NOSIGNAL) != static_cast<ssize_t>(sizeof msg))
        throw admin_error(-ESHUTDOWN, "vmrdmad is gone (cannot send)");
    vr_ctl_msg reply{};
    ssize_t n;
    do n = ::recv(sock_, &reply, sizeof reply, 0);
    while (n < 0 && errno == EINTR);
    if (n != static_cast<ssize_t>(sizeof reply) || reply.magic != VR_CTL_MAGIC || reply.type != type ||
        reply.seq != msg.seq)
        throw admin_error(n == 0 ? -ESHUTDOWN : -EPROTO,
                          n == 0 ? "vmrdmad closed the connection" : "malformed reply from vmrdmad");
    if (reply.status != 0) {
        reply.text[sizeof reply.text - 1] = 0;
        throw admin_error(reply.status, reply.text);
    }
    return reply;
}

template <typename T>
std::vector<T> admin_client::list(std::uint32_t what) {
    auto reply = call(VR_CTL_ADMIN_LIST, what);
    std::uint64_t count = reply.arg[0], size = reply.arg[1];
    if (count > VR_ADMIN_MAX_RECORDS || (count > 0 && size != sizeof(T)))
        throw admin_error(-EPROTO, "vmrdmad's records are not what this vmrdmactl knows");
    std::vector<T> out(count);
    if (count == 0) return out;
    ssize_t n;
    do n = ::recv(sock_, out.data(), count * sizeof(T), 0);
    while (n < 0 && errno == EINTR);
    if (n != static_cast<ssize_t>(count * sizeof(T))) throw admin_error(-EPROTO, "short record list from vmrdmad");
    return out;
}

std::vector<vr_admin_frontend> admin_client::frontends() { return list<vr_admin_frontend>(VR_ADMIN_FRONTENDS); }
std::vector<vr_admin_endpoint> admin_client::endpoints() { return list<vr_admin_endpoint>(VR_ADMIN_ENDPOINTS); }
std::vector<vr_admin_conn> admin_client::connections() { return list<vr_admin_conn>(VR_ADMIN_CONNS); }

std::vector<vr_admin_uid> admin_client::uids() { return list<vr_admin_uid>(VR_ADMIN_UIDS); }

vr_admin_device admin_client::device() {
    auto v = list<vr_admin_device>(VR_ADMIN_DEVICE);
    if (v.size() != 1) throw admin_error(-EPROTO, "vmrdmad sent no device record");
    return v[0];
}

void admin_client::set(std::uint32_t frontend, std::uint32_t what, std::uint64_t value) {
    call(VR_CTL_ADMIN_SET, frontend, what, value);
}

}  // namespace vmrdmad
