#include "unix_link.hpp"

#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <bit>
#include <cerrno>
#include <cstring>
#include <string>
#include <utility>

#include "device_core.hpp"

static_assert(std::endian::native == std::endian::little, "proto/ring.h is little-endian");

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
        size_ = static_cast<std::uint32_t>(reply.arg[0]);
        if (!vr_ring_size_ok(size_)) throw error(errc::protocol_error, "vmrdmad chose a bad ring size");
        for (int i = 0; i < 6; ++i) mac_.bytes[i] = static_cast<std::uint8_t>(reply.arg[1] >> (8 * i));
        mtu_ = static_cast<std::uint32_t>(reply.arg[2]);
        ring_len_ = vr_ring_bytes(size_);
        struct stat st {};
        if (fstat(ring_fd_, &st) < 0 || static_cast<std::size_t>(st.st_size) < ring_len_)
            throw error(errc::protocol_error, "vmrdmad's ring memfd is too small");
        void* p = mmap(nullptr, ring_len_, PROT_READ | PROT_WRITE, MAP_SHARED, ring_fd_, 0);
        if (p == MAP_FAILED) throw error(code_from_errno(-errno), "cannot map the shared ring");
        ring_mem_ = p;
        shared_ = static_cast<vr_ring_shared*>(p);
        reqs_ = reinterpret_cast<vr_ring_req*>(static_cast<char*>(p) + vr_ring_req_off());
        rsps_ = reinterpret_cast<const vr_ring_rsp*>(static_cast<char*>(p) + vr_ring_rsp_off(size_));
        req_prod_pvt_ = VR_RING_READ(shared_->req_prod);
        rsp_cons_ = req_prod_pvt_;
    } catch (...) {
        if (ring_mem_) munmap(ring_mem_, ring_len_);
        close_fd(ring_fd_);
        close_fd(req_efd_);
        close_fd(rsp_efd_);
        close_fd(sock_);
        throw;
    }
}

unix_link::~unix_link() {
    if (ring_mem_) munmap(ring_mem_, ring_len_);
    close_fd(ring_fd_);
    close_fd(req_efd_);
    close_fd(rsp_efd_);
    close_fd(sock_);  // vmrdmad revokes everything of ours
}

vr_ctl_msg unix_link::call(std::uint16_t type, std::initializer_list<std::uint64_t> args, int send_fd,
                           int* recv_fds, int recv_count) {
    vr_ctl_msg msg{};
    msg.magic = VR_CTL_MAGIC;
    msg.version = VR_CTL_VERSION;
    msg.type = type;
    msg.seq = ++seq_;
    int i = 0;
    for (auto a : args) msg.arg[i++] = a;

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

void unix_link::open_endpoint(std::uint16_t id, std::uint32_t weight, bool listen) {
    call(VR_CTL_OPEN_EP, {id, weight, listen ? 1u : 0u});
}

void unix_link::close_endpoint(std::uint16_t id) noexcept {
    try {
        call(VR_CTL_CLOSE_EP, {id});
    } catch (const error&) {
    }
}

std::uint32_t unix_link::register_memory(std::uint16_t ep, int memfd, std::uint64_t offset,
                                         std::uint64_t length, std::uint32_t access) {
    auto reply = call(VR_CTL_REG, {ep, offset, length, access}, memfd);
    return static_cast<std::uint32_t>(reply.arg[0]);
}

void unix_link::deregister(std::uint32_t key) noexcept {
    try {
        call(VR_CTL_DEREG, {key});
    } catch (const error&) {
    }
}

void unix_link::mark_gone() noexcept {
    gone_ = true;
    detached_.clear();
}

int unix_link::post(const vr_ring_req& req) noexcept {
    if (gone_ || VR_RING_READ(shared_->state) == VR_RING_STATE_DRAINING) return -ESHUTDOWN;
    if (!detached_.empty() || req_prod_pvt_ - rsp_cons_ >= size_ - 1) return -EAGAIN;
    reqs_[req_prod_pvt_ & (size_ - 1)] = req;
    ++req_prod_pvt_;
    unpublished_ = true;
    return 0;
}

void unix_link::post_detached(const vr_ring_req& req) {
    if (gone_) return;
    detached_.push_back(req);
    publish();
}

void unix_link::publish() noexcept {
    while (!detached_.empty() && req_prod_pvt_ - rsp_cons_ < size_ - 1) {
        reqs_[req_prod_pvt_ & (size_ - 1)] = detached_.front();
        detached_.pop_front();
        ++req_prod_pvt_;
        unpublished_ = true;
    }
    if (!unpublished_ || gone_) return;
    unpublished_ = false;
    if (vr_ring_push(&shared_->req_prod, &shared_->req_event, req_prod_pvt_)) {
        std::uint64_t one = 1;
        [[maybe_unused]] auto n = ::write(req_efd_, &one, sizeof one);
    }
}

std::size_t unix_link::drain(const std::function<void(const vr_ring_rsp&)>& fn) {
    std::size_t count = 0;
    for (;;) {
        std::uint32_t prod = VR_RING_READ(shared_->rsp_prod);
        vr_ring_rmb();
        // Never more than we asked for, whatever the shared index says.
        if (prod - rsp_cons_ > req_prod_pvt_ - rsp_cons_) prod = req_prod_pvt_;
        while (rsp_cons_ != prod) {
            vr_ring_rsp rsp = rsps_[rsp_cons_ & (size_ - 1)];
            ++rsp_cons_;
            ++count;
            fn(rsp);
        }
        std::uint32_t again = vr_ring_final_check(&shared_->rsp_prod, &shared_->rsp_event, rsp_cons_);
        if (again == rsp_cons_ || again - rsp_cons_ > req_prod_pvt_ - rsp_cons_) break;
    }
    return count;
}

}  // namespace vmrdma::detail
