// A Xen guest served by vmrdmad (daemon::serve_guest, what `vmrdmad --xen`
// runs per guest) without Xen: a fake guest_port whose "grants" are pages
// of a memfd (the guest's memory), mapped MAP_FIXED side by side like
// gntdev maps them, read-only when asked. Control requests come on the
// ring; regions are granted pages; a WRITE reaches a real eth: peer; what
// the guest had is unmapped when it goes. tests/xen proves the real thing.
#include <doctest/doctest.h>
#include <sys/eventfd.h>
#include <sys/mman.h>

#include <cerrno>
#include <cstring>
#include <future>
#include <optional>

#include "tests/split/split_support.hpp"
#include "vmrdma/async_scope.hpp"

extern "C" {
#include "proto/region.h"
#include "proto/xen.h"
}

using vmrdma::access;
using vmrdma::task;

namespace {

constexpr std::uint32_t page = VR_XEN_PAGE_SIZE;

// Grant ref r (1..pages) is page r-1 of the guest's memory.
class fake_grants final : public vmrdmad::guest_port {
public:
    explicit fake_grants(std::uint32_t pages) : pages_(pages) {
        fd_ = memfd_create("guest", MFD_CLOEXEC);
        REQUIRE(fd_ >= 0);
        REQUIRE(ftruncate(fd_, off_t{pages} * page) == 0);
        guest_ = static_cast<std::byte*>(mmap(nullptr, std::size_t{pages} * page, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0));
        REQUIRE(guest_ != MAP_FAILED);
        efd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        REQUIRE(efd_ >= 0);
    }
    ~fake_grants() override {
        munmap(guest_, std::size_t{pages_} * page);
        close(fd_);
        close(efd_);
    }
    std::byte* guest(std::uint32_t ref) { return guest_ + std::size_t{ref - 1} * page; }
    void kick() {
        std::uint64_t one = 1;
        REQUIRE(::write(efd_, &one, sizeof one) == sizeof one);
    }
    int doorbell_fd() const override { return efd_; }
    void doorbell_ack() override {
        std::uint64_t v;
        [[maybe_unused]] auto n = ::read(efd_, &v, sizeof v);
    }
    void notify() override { ++notified; }
    void* map(const std::uint32_t* refs, std::uint32_t count, bool writable) override {
        for (std::uint32_t i = 0; i < count; ++i)
            if (refs[i] == 0 || refs[i] > pages_) {
                errno = EINVAL;
                return nullptr;
            }
        void* base = mmap(nullptr, std::size_t{count} * page, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (base == MAP_FAILED) return nullptr;
        for (std::uint32_t i = 0; i < count; ++i)
            if (mmap(static_cast<std::byte*>(base) + std::size_t{i} * page, page,
                     writable ? PROT_READ | PROT_WRITE : PROT_READ, MAP_SHARED | MAP_FIXED, fd_,
                     off_t{refs[i] - 1} * page) == MAP_FAILED)
                return nullptr;
        mapped += count;
        return base;
    }
    void unmap(void* addr, std::uint32_t count) override {
        munmap(addr, std::size_t{count} * page);
        mapped -= count;
    }
    std::uint32_t mapped = 0, notified = 0;

private:
    std::uint32_t pages_;
    int fd_ = -1, efd_ = -1;
    std::byte* guest_ = nullptr;
};

// The guest's side of the ring (its own view of the pages).
struct guest_ring {
    vr_ring_shared* sh;
    std::uint32_t size, prod = 0, cons = 0;
    std::uint64_t cookie = 0;
    vr_ring_req* reqs() { return reinterpret_cast<vr_ring_req*>(reinterpret_cast<char*>(sh) + vr_ring_req_off()); }
    vr_ring_rsp* rsps() { return reinterpret_cast<vr_ring_rsp*>(reinterpret_cast<char*>(sh) + vr_ring_rsp_off(size)); }
};

task<vr_ring_rsp> call(vmrdma::event_loop& loop, fake_grants& port, guest_ring& g, vr_ring_req req) {
    req.cookie = ++g.cookie;
    g.reqs()[g.prod & (g.size - 1)] = req;
    ++g.prod;
    if (vr_ring_push(&g.sh->req_prod, &g.sh->req_event, g.prod)) port.kick();
    for (int i = 0; i < 10000 && VR_RING_READ(g.sh->rsp_prod) == g.cons; ++i)
        co_await loop.sleep_for(std::chrono::milliseconds(1));
    REQUIRE(VR_RING_READ(g.sh->rsp_prod) != g.cons);
    vr_ring_rmb();
    vr_ring_rsp rsp = g.rsps()[g.cons & (g.size - 1)];
    ++g.cons;
    VR_RING_WRITE(g.sh->rsp_event, g.cons + 1);
    CHECK(rsp.cookie == req.cookie);
    co_return rsp;
}

vr_ring_req make(std::uint8_t op) {
    vr_ring_req r{};
    r.opcode = op;
    return r;
}

task<void> serve(vmrdmad::daemon& d, fake_grants& port, void* ring, std::uint32_t size, std::stop_token end,
                 bool& broke) {
    broke = co_await d.serve_guest(port, ring, size, {7, 0}, end);
}

}  // namespace

TEST_CASE("a Xen guest (fake grants): control on the ring, granted regions, a WRITE to a peer, all unmapped at the end") {
    if (vmrdma::testing::skip_network_tests()) return;
    alarm(60);
    vmrdma::testing::veth_pair veth("vsg0", "vsgp0", 1500);
    constexpr std::size_t peer_size = 64 * 1024;
    std::vector<std::byte> peer_mem(peer_size, std::byte{0});
    std::promise<std::uint64_t> rkey_promise;
    auto rkey_future = rkey_promise.get_future();
    std::optional<split_test::peer_thread> peer;
    peer.emplace(veth.b, [&](vmrdma::event_loop& l, vmrdma::device& dev, std::stop_token stop) -> task<void> {
        auto ep = dev.open_endpoint(1, {.weight = 1, .listen = true});
        auto mr = ep.register_memory(peer_mem, access::remote_write | access::remote_read);
        rkey_promise.set_value(mr.key());
        auto conn = co_await ep.accept(stop);
        try {
            co_await l.sleep_for(std::chrono::seconds(60), stop);
        } catch (const vmrdma::error&) {
        }
    });
    std::uint64_t rkey = rkey_future.get();

    vmrdma::event_loop loop;
    vmrdmad::options opts;
    opts.socket_path = split_test::socket_path("guest");
    vmrdmad::daemon d(loop, "eth:" + veth.a, opts);
    fake_grants port(64);
    // The ring: 64 entries in grant refs 1..3, header written by the guest.
    constexpr std::uint32_t size = 64;
    std::uint32_t ring_refs[] = {1, 2, 3};
    REQUIRE(vr_ring_bytes(size) <= 3 * page);
    guest_ring g{reinterpret_cast<vr_ring_shared*>(port.guest(1)), size};
    vr_ring_init(g.sh, size);
    void* ring = port.map(ring_refs, 3, true);
    REQUIRE(ring != nullptr);

    // Guest memory: data pages 10..12 (a region at offset 100), page 13 (read-only
    // region); directory 20 -> index 21 -> {10, 11, 12}; directory 22 -> index 23 -> {13}.
    auto put_refs = [&](std::uint32_t at, std::initializer_list<std::uint32_t> refs) {
        std::memcpy(port.guest(at), std::data(refs), refs.size() * sizeof(std::uint32_t));
    };
    put_refs(20, {21});
    put_refs(21, {10, 11, 12});
    put_refs(22, {23});
    put_refs(23, {13});
    constexpr std::uint32_t len = 2 * page;
    auto src = split_test::pattern(len, 5);
    std::memcpy(port.guest(10) + 100, src.data(), len);

    bool broke = true;
    std::stop_source end, daemon_stop;
    auto body = [&]() -> task<void> {
        vmrdma::async_scope scope;
        scope.spawn(serve(d, port, ring, size, end.get_token(), broke));
        auto open = make(VR_RING_OPEN_EP);
        open.ep = 5;
        open.operand = 2;
        CHECK((co_await call(loop, port, g, open)).status == 0);

        auto reg = make(VR_RING_REG);
        reg.ep = 5;
        reg.loff = 100;
        reg.operand = len;
        reg.swap = vr_xen_reg_pages(100, len);
        reg.tag = 20;
        reg.mask = VR_ACCESS_LOCAL_WRITE | VR_ACCESS_REMOTE_READ;
        auto r = co_await call(loop, port, g, reg);
        REQUIRE(r.status == 0);
        auto key = r.value;
        CHECK(port.mapped == 3 + 3);  // ring + data pages; directory and index unmapped

        auto bad = reg;
        bad.ep = 6;  // not its endpoint
        CHECK((co_await call(loop, port, g, bad)).status == -ENOENT);
        bad = reg;
        bad.swap = 2;  // page count does not match loff + length
        CHECK((co_await call(loop, port, g, bad)).status == -EINVAL);
        bad = reg;
        bad.tag = 999;  // no such grant
        CHECK((co_await call(loop, port, g, bad)).status == -EINVAL);

        auto ro = make(VR_RING_REG);
        ro.ep = 5;
        ro.operand = page;
        ro.swap = 1;
        ro.tag = 22;
        ro.mask = VR_ACCESS_REMOTE_READ;  // granted read-only
        r = co_await call(loop, port, g, ro);
        REQUIRE(r.status == 0);
        auto ro_key = r.value;
        CHECK(port.mapped == 3 + 3 + 1);

        auto conn = make(VR_RING_CONNECT);
        conn.ep = 5;
        conn.peer_ep = 1;
        std::memcpy(conn.peer_mac, peer->mac().bytes.data(), 6);
        r = co_await call(loop, port, g, conn);
        REQUIRE(r.status == 0);
        auto handle = r.conn;

        auto write = make(VR_RING_WRITE);
        write.conn = handle;
        write.lkey = key;
        write.rkey = rkey;
        write.roff = 64;
        write.len = len;
        r = co_await call(loop, port, g, write);
        CHECK(r.status == 0);
        CHECK(r.bytes == len);

        auto read = make(VR_RING_READ);  // into read-only pages: refused, the daemon does not fault
        read.conn = handle;
        read.lkey = ro_key;
        read.rkey = rkey;
        read.len = 64;
        CHECK((co_await call(loop, port, g, read)).status == -EPERM);

        auto dereg = make(VR_RING_DEREG);
        dereg.lkey = ro_key;
        CHECK((co_await call(loop, port, g, dereg)).status == 0);
        CHECK(port.mapped == 3 + 3);
        CHECK((co_await call(loop, port, g, dereg)).status == -ENOENT);

        // A second endpoint with a region, left for the teardown.
        open.ep = 8;
        CHECK((co_await call(loop, port, g, open)).status == 0);
        ro.ep = 8;
        CHECK((co_await call(loop, port, g, ro)).status == 0);
        CHECK(port.mapped == 3 + 3 + 1);

        auto close = make(VR_RING_CLOSE_EP);
        close.ep = 5;  // its connection and region go with it
        CHECK((co_await call(loop, port, g, close)).status == 0);
        CHECK(port.mapped == 3 + 1);
        CHECK((co_await call(loop, port, g, close)).status == -ENOENT);
        CHECK(port.notified > 0);

        end.request_stop();  // the guest went away
        co_await scope.join();
    };
    loop.run(body());
    CHECK_FALSE(broke);
    CHECK(port.mapped == 3);  // only the ring, which the caller maps and unmaps
    port.unmap(ring, 3);
    CHECK(d.counters().frontends_cleaned_up == 1);
    peer.reset();
    CHECK(std::memcmp(peer_mem.data() + 64, src.data(), len) == 0);
}
