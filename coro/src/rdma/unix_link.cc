#include "unix_link.hpp"

#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <utility>

#include "device_core.hpp"
#include "vmrdma/registrable.hpp"

namespace vmrdma::detail {

namespace {
void close_fd(int& fd) noexcept {
    if (fd >= 0) ::close(std::exchange(fd, -1));
}
}  // namespace

unix_link::unix_link(std::string_view path, std::uint32_t ring_size) {
    sockaddr_un addr{};
    if (path.empty() || path.size() >= sizeof addr.sun_path)
        throw error(errc::invalid_argument, "unix: socket path '" + std::string(path) + "' is empty or too long");
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path.data(), path.size());
    sock_ = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (sock_ < 0) throw error(code_from_errno(-errno), "cannot create a UNIX socket");
    if (::connect(sock_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0) {
        int e = errno;
        close_fd(sock_);
        throw error(code_from_errno(-e), "cannot connect to vmrdmad at '" + std::string(path) +
                                             "': " + std::strerror(e));
    }
    try {
        int fds[3] = {-1, -1, -1};
        auto reply = call(VR_CTL_HELLO, {ring_size}, -1, fds, 3);
        ring_fd_ = fds[0];
        req_efd_ = fds[1];
        rsp_efd_ = fds[2];
        if (ring_fd_ < 0 || req_efd_ < 0 || rsp_efd_ < 0)
            throw error(errc::protocol_error, "vmrdmad's hello carried no ring or doorbells");
        auto size = static_cast<std::uint32_t>(reply.arg[0]);
        if (!vr_ring_size_ok(size)) throw error(errc::protocol_error, "vmrdmad chose a bad ring size");
        ring_len_ = vr_ring_bytes(size);
        struct stat st {};
        if (fstat(ring_fd_, &st) < 0 || static_cast<std::size_t>(st.st_size) < ring_len_)
            throw error(errc::protocol_error, "vmrdmad's ring memfd is too small");
        void* p = mmap(nullptr, ring_len_, PROT_READ | PROT_WRITE, MAP_SHARED, ring_fd_, 0);
        if (p == MAP_FAILED) throw error(code_from_errno(-errno), "cannot map the shared ring");
        ring_mem_ = p;
        attach(p, size, rsp_efd_, reply.arg[1], reply.arg[2]);
    } catch (...) {
        close_all();
        throw;
    }
}

void unix_link::close_all() noexcept {
    if (ring_mem_) munmap(std::exchange(ring_mem_, nullptr), ring_len_);
    close_fd(ring_fd_);
    close_fd(req_efd_);
    close_fd(rsp_efd_);
    close_fd(sock_);  // vmrdmad revokes everything of ours
}

unix_link::~unix_link() { close_all(); }

vr_ctl_msg unix_link::call(std::uint16_t type, std::initializer_list<std::uint64_t> args, int send_fd,
                           int* recv_fds, int recv_count) {
    vr_ctl_msg msg = make_ctl_msg(type, ++seq_, args);

    iovec iov{&msg, sizeof msg};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 4)]{};
    msghdr mh{};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    if (send_fd >= 0) {
        mh.msg_control = control;
        mh.msg_controllen = CMSG_SPACE(sizeof(int));
        cmsghdr* c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        std::memcpy(CMSG_DATA(c), &send_fd, sizeof(int));
    }
    ssize_t n;
    do n = ::sendmsg(sock_, &mh, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n != static_cast<ssize_t>(sizeof msg))
        throw error(errc::shut_down, "vmrdmad is gone (cannot send a control message)");

    vr_ctl_msg reply{};
    iov = {&reply, sizeof reply};
    std::memset(control, 0, sizeof control);
    mh = {};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = control;
    mh.msg_controllen = sizeof control;
    do n = ::recvmsg(sock_, &mh, MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    int got = 0;
    for (cmsghdr* c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (std::size_t k = 0; k < count; ++k) {
            int fd;
            std::memcpy(&fd, CMSG_DATA(c) + k * sizeof(int), sizeof fd);
            if (got < recv_count)
                recv_fds[got++] = fd;
            else
                ::close(fd);
        }
    }
    if (n != static_cast<ssize_t>(sizeof reply) || reply.magic != VR_CTL_MAGIC ||
        reply.version != VR_CTL_VERSION || reply.type != type || reply.seq != msg.seq) {
        for (int k = 0; k < got; ++k) ::close(recv_fds[k]);
        throw error(n == 0 ? errc::shut_down : errc::protocol_error,
                    n == 0 ? "vmrdmad closed the connection" : "malformed reply from vmrdmad");
    }
    if (reply.status != 0) {
        for (int k = 0; k < got; ++k) ::close(recv_fds[k]);
        reply.text[sizeof reply.text - 1] = 0;
        throw error(code_from_status(reply.status), std::string("vmrdmad: ") + reply.text);
    }
    return reply;
}

vr_ctl_msg unix_link::control(std::uint16_t type, std::initializer_list<std::uint64_t> args) {
    return call(type, args);
}

std::uint64_t unix_link::register_memory(std::uint16_t ep, std::span<std::byte> memory, std::uint32_t access) {
    auto where = find_registrable(memory);
    if (!where)
        throw error(errc::invalid_argument,
                    "a unix: device registers only memory from a vmrdma::registrable_buffer "
                    "(memfd-backed, so the daemon can map it); this span is ordinary memory");
    auto reply = call(VR_CTL_REG, {ep, where->offset, memory.size(), access}, where->fd);
    return reply.arg[0];
}

std::optional<counters> unix_link::device_counters() {
    auto reply = call(VR_CTL_ADMIN_LIST, {VR_ADMIN_DEVICE});
    if (reply.arg[0] != 1 || reply.arg[1] != sizeof(vr_admin_device)) {
        // Take whatever follows so the next reply is read in step.
        if (reply.arg[0] > 0) {
            char sink[1];
            [[maybe_unused]] auto n = ::recv(sock_, sink, sizeof sink, MSG_TRUNC);
        }
        throw error(errc::protocol_error, "vmrdmad's device record is not what this library knows");
    }
    vr_admin_device d{};
    ssize_t n;
    do n = ::recv(sock_, &d, sizeof d, 0);
    while (n < 0 && errno == EINTR);
    if (n != static_cast<ssize_t>(sizeof d))
        throw error(n == 0 ? errc::shut_down : errc::protocol_error, "short device record from vmrdmad");
    counters c;
    c.tx_frames = d.tx_frames;
    c.tx_bytes = d.tx_bytes;
    c.rx_frames = d.rx_frames;
    c.rx_bytes = d.rx_bytes;
    c.retransmits = d.retransmits;
    c.timeouts = d.timeouts;
    c.duplicates = d.duplicates;
    c.rx_dropped = d.rx_dropped;
    c.naks_sent = d.naks_tx;
    c.naks_received = d.naks_rx;
    c.cookies_refused = d.cookies_refused;
    c.challenges = d.challenges;
    c.connections_refused = d.connections_refused;
    c.out_of_window = d.out_of_window;
    c.auth_failed = d.auth_failed;
    c.replays = d.replays;
    c.offences = d.offences;
    return c;
}

void unix_link::kick() noexcept {
    std::uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(req_efd_, &one, sizeof one);
}

}  // namespace vmrdma::detail
