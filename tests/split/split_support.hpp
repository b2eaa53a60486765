// Fixtures for the split-driver tests: vmrdmad on one end of a veth pair
// (its own thread and event loop, as it would be its own process) and an
// eth: peer on the other end (its own thread and loop), inside the test's
// private network namespace. Frontends talk to the daemon over unix:PATH.
#pragma once

#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

#include <exception>
#include <functional>
#include <future>
#include <stdexcept>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/private_net.hpp"
#include "vmrdma/rdma.hpp"
#include "vmrdma/runtime.hpp"
#include "vmrdmad/daemon.hpp"

namespace split_test {

inline std::vector<std::byte> pattern(std::size_t n, unsigned seed) {
    std::vector<std::byte> v(n);
    std::mt19937 rng(seed);
    for (auto& b : v) b = static_cast<std::byte>(rng());
    return v;
}

// vmrdmad serving eth:IFNAME on a socket, on its own thread.
class daemon_thread {
public:
    daemon_thread(const std::string& ifname, std::string socket_path, vmrdmad::limits lim = {})
        : daemon_thread(ifname, options_for(std::move(socket_path), lim)) {}
    daemon_thread(const std::string& ifname, vmrdmad::options opts) : path_(opts.socket_path) {
        std::promise<void> ready;
        auto started = ready.get_future();
        thread_ = std::thread([this, ifname, opts, ready = std::move(ready)]() mutable {
            try {
                vmrdma::event_loop loop;
                vmrdmad::daemon d(loop, "eth:" + ifname, opts);
                daemon_ = &d;
                ready.set_value();
                loop.run(d.serve(stop_.get_token()));
                daemon_ = nullptr;
            } catch (...) {
                try {
                    ready.set_exception(std::current_exception());
                } catch (...) {
                    error_ = std::current_exception();
                }
            }
        });
        started.get();
    }
    ~daemon_thread() {
        stop_.request_stop();
        thread_.join();
    }
    const std::string& path() const { return path_; }
    std::string uri() const { return "unix:" + path_; }
    static vmrdmad::options options_for(std::string socket_path, const vmrdmad::limits& lim) {
        vmrdmad::options o;
        o.socket_path = std::move(socket_path);
        o.socket_mode = 0666;
        o.per_frontend = lim;
        return o;
    }
    const vmrdmad::stats& stats() const { return daemon_->counters(); }

private:
    std::string path_;
    std::stop_source stop_;
    vmrdmad::daemon* daemon_ = nullptr;
    std::exception_ptr error_;
    std::thread thread_;
};

// An eth: device on its own thread running `body(device)` to the end.
class peer_thread {
public:
    // `stop` fires when the test gives up (the peer thread's destructor).
    using body_fn = std::function<vmrdma::task<void>(vmrdma::event_loop&, vmrdma::device&, std::stop_token stop)>;
    peer_thread(const std::string& ifname, body_fn body) {
        std::promise<vmrdma::mac_address> mac;
        auto got = mac.get_future();
        thread_ = std::thread([this, ifname, body = std::move(body), mac = std::move(mac)]() mutable {
            bool told = false;
            try {
                vmrdma::event_loop loop;
                struct publish {  // lets the destructor stop us from the loop thread
                    peer_thread* self;
                    publish(peer_thread* s, vmrdma::event_loop* l) : self(s) {
                        std::lock_guard lock(s->mutex_);
                        s->loop_ = l;
                    }
                    ~publish() {
                        std::lock_guard lock(self->mutex_);
                        self->loop_ = nullptr;
                    }
                } published(this, &loop);
                auto dev = vmrdma::device::open(loop, "eth:" + ifname);
                mac.set_value(dev->mac());
                told = true;
                loop.run(body(loop, *dev, stop_.get_token()));
            } catch (...) {
                if (!told)
                    mac.set_exception(std::current_exception());
                else
                    error_ = std::current_exception();
            }
        });
        mac_ = got.get();
    }
    // Waits for the body; rethrows what it threw.
    void join() {
        if (thread_.joinable()) thread_.join();
        if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
    }
    ~peer_thread() {
        {
            // Stop callbacks run where request_stop() is called: on the loop.
            std::lock_guard lock(mutex_);
            if (loop_)
                loop_->post([this] { stop_.request_stop(); });
            else
                stop_.request_stop();
        }
        if (thread_.joinable()) thread_.join();
    }
    const vmrdma::mac_address& mac() const { return mac_; }

private:
    vmrdma::mac_address mac_;
    std::exception_ptr error_;
    std::stop_source stop_;
    std::mutex mutex_;
    vmrdma::event_loop* loop_ = nullptr;
    std::thread thread_;
};

// A frontend written against proto/ring.h by hand, to misbehave: raw
// control messages (any fd attached), direct access to the shared ring.
class raw_frontend {
public:
    explicit raw_frontend(const std::string& path) {
        sock_ = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        std::memcpy(addr.sun_path, path.data(), path.size());
        if (::connect(sock_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0)
            throw std::runtime_error("connect to vmrdmad failed");
    }
    ~raw_frontend() {
        if (ring_) munmap(ring_, vr_ring_bytes(size_));
        for (int fd : {ring_fd_, req_efd_, rsp_efd_, sock_})
            if (fd >= 0) ::close(fd);
    }
    // Sends one control message; returns the reply (status and text).
    // Returns a reply with status 1 when the daemon closed the socket.
    vr_ctl_msg call(std::uint16_t type, std::initializer_list<std::uint64_t> args, int send_fd = -1,
                    std::uint16_t version = VR_CTL_VERSION) {
        vr_ctl_msg msg{};
        msg.magic = VR_CTL_MAGIC;
        msg.version = version;
        msg.type = type;
        msg.seq = ++seq_;
        int i = 0;
        for (auto a : args) msg.arg[i++] = a;
        iovec iov{&msg, sizeof msg};
        alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 3)]{};
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
        vr_ctl_msg reply{};
        reply.status = 1;
        if (::sendmsg(sock_, &mh, MSG_NOSIGNAL) != sizeof msg) return reply;
        iov = {&reply, sizeof reply};
        mh = {};
        mh.msg_iov = &iov;
        mh.msg_iovlen = 1;
        mh.msg_control = control;
        mh.msg_controllen = sizeof control;
        if (::recvmsg(sock_, &mh, MSG_CMSG_CLOEXEC) != sizeof reply) {
            reply.status = 1;
            return reply;
        }
        for (cmsghdr* c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
            int fds[3] = {-1, -1, -1};
            std::memcpy(fds, CMSG_DATA(c), c->cmsg_len - CMSG_LEN(0));
            ring_fd_ = fds[0];
            req_efd_ = fds[1];
            rsp_efd_ = fds[2];
        }
        return reply;
    }
    // Hello and map the ring.
    void hello(std::uint32_t size) {
        auto r = call(VR_CTL_HELLO, {size});
        if (r.status != 0 || ring_fd_ < 0) throw std::runtime_error("hello failed");
        size_ = static_cast<std::uint32_t>(r.arg[0]);
        ring_ = mmap(nullptr, vr_ring_bytes(size_), PROT_READ | PROT_WRITE, MAP_SHARED, ring_fd_, 0);
        if (ring_ == MAP_FAILED) throw std::runtime_error("cannot map the ring");
    }
    vr_ring_shared* shared() { return static_cast<vr_ring_shared*>(ring_); }
    vr_ring_req* reqs() { return reinterpret_cast<vr_ring_req*>(static_cast<char*>(ring_) + vr_ring_req_off()); }
    vr_ring_rsp* rsps() {
        return reinterpret_cast<vr_ring_rsp*>(static_cast<char*>(ring_) + vr_ring_rsp_off(size_));
    }
    std::uint32_t size() const { return size_; }
    void ring_doorbell() {
        std::uint64_t one = 1;
        if (::write(req_efd_, &one, sizeof one) != sizeof one) throw std::runtime_error("doorbell");
    }
    // Posts one request and waits (polling, up to 5 s) for its response.
    vr_ring_rsp roundtrip(vr_ring_req req) {
        auto* sh = shared();
        std::uint32_t prod = sh->req_prod;
        reqs()[prod & (size_ - 1)] = req;
        __atomic_store_n(&sh->req_prod, prod + 1, __ATOMIC_RELEASE);
        ring_doorbell();
        for (int i = 0; i < 5000; ++i) {
            if (__atomic_load_n(&sh->rsp_prod, __ATOMIC_ACQUIRE) != rsp_cons_)
                return rsps()[rsp_cons_++ & (size_ - 1)];
            usleep(1000);
        }
        throw std::runtime_error("no response from vmrdmad");
    }
    void send_bytes(const void* data, std::size_t n) {
        if (::send(sock_, data, n, MSG_NOSIGNAL) != static_cast<ssize_t>(n)) throw std::runtime_error("send");
    }
    // True once the daemon has closed our socket.
    bool closed_by_daemon(int wait_ms) {
        for (int i = 0; i < wait_ms; ++i) {
            char b;
            auto n = ::recv(sock_, &b, 1, MSG_DONTWAIT);
            if (n == 0) return true;
            usleep(1000);
        }
        return false;
    }

private:
    int sock_ = -1, ring_fd_ = -1, req_efd_ = -1, rsp_efd_ = -1;
    void* ring_ = nullptr;
    std::uint32_t size_ = 0, seq_ = 0, rsp_cons_ = 0;
};

// Waits up to `ms` for `pred`.
template <typename Pred>
bool eventually(Pred pred, int ms = 5000) {
    for (int i = 0; i < ms; ++i) {
        if (pred()) return true;
        usleep(1000);
    }
    return pred();
}

inline std::string socket_path(const char* name) {
    return "/tmp/vmrdma-" + std::string(name) + "-" + std::to_string(getpid()) + ".sock";
}

}  // namespace split_test
