#include "bench/support/xdp_path.hpp"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/if_link.h>
#include <net/if.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>
#include <xdp/xsk.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <stdexcept>
#include <vector>

// Linux 6.6's multi-buffer AF_XDP; Debian 12's headers (6.1) predate it.
#ifndef XDP_USE_SG
#define XDP_USE_SG (1 << 4)
#endif
#ifndef XDP_PKT_CONTD
#define XDP_PKT_CONTD (1 << 0)
#endif

namespace vmrdma::bench {

namespace {

using clock_type = std::chrono::steady_clock;
constexpr std::uint32_t chunk = XSK_UMEM__DEFAULT_FRAME_SIZE;  // 4 KiB, a page
constexpr std::uint32_t chunks = 4096;                         // 16 MiB of UMEM
constexpr std::uint32_t ring = 2048;                           // descriptors per ring
constexpr std::uint32_t batch = 64;                            // frames per kick

[[noreturn]] void fail(const std::string& what, int err) {
    throw std::runtime_error("AF_XDP: " + what + ": " + std::strerror(err < 0 ? -err : err));
}

// The UMEM and its fill and completion rings; unmapped on destruction.
struct umem_area {
    void* bytes = nullptr;
    xsk_umem* umem = nullptr;
    xsk_ring_prod fill{};
    xsk_ring_cons comp{};
    umem_area() {
        bytes = mmap(nullptr, std::size_t{chunks} * chunk, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (bytes == MAP_FAILED) fail("mmap of the UMEM", errno);
        xsk_umem_config cfg{};
        cfg.fill_size = chunks;  // every chunk can wait in the fill ring
        cfg.comp_size = chunks;
        cfg.frame_size = chunk;
        if (int err = xsk_umem__create(&umem, bytes, std::size_t{chunks} * chunk, &fill, &comp, &cfg); err)
            fail("xsk_umem__create", err);
    }
    ~umem_area() {
        if (umem) xsk_umem__delete(umem);
        munmap(bytes, std::size_t{chunks} * chunk);
    }
    umem_area(const umem_area&) = delete;
    umem_area& operator=(const umem_area&) = delete;
    std::uint8_t* at(std::uint64_t addr) { return static_cast<std::uint8_t*>(xsk_umem__get_data(bytes, addr)); }
};

// An XDP socket on queue 0 of ifname, copy mode, multi-buffer; libxdp
// loads no program of its own (the receiver brings one, the sender needs none).
struct xdp_socket {
    xsk_socket* xsk = nullptr;
    xsk_ring_cons rx{};
    xsk_ring_prod tx{};
    xdp_socket(const std::string& ifname, umem_area& u, bool receive) {
        xsk_socket_config cfg{};
        cfg.rx_size = receive ? ring : 0;
        cfg.tx_size = receive ? 0 : ring;
        cfg.libxdp_flags = XSK_LIBXDP_FLAGS__INHIBIT_PROG_LOAD;
        cfg.bind_flags = XDP_COPY | XDP_USE_SG;
        if (int err = xsk_socket__create(&xsk, ifname.c_str(), 0, u.umem, receive ? &rx : nullptr,
                                         receive ? nullptr : &tx, &cfg);
            err)
            fail("xsk_socket__create on " + ifname + " (multi-buffer needs Linux 6.6+)", err);
    }
    ~xdp_socket() { xsk_socket__delete(xsk); }
    xdp_socket(const xdp_socket&) = delete;
    xdp_socket& operator=(const xdp_socket&) = delete;
    int fd() const { return xsk_socket__fd(xsk); }
};

// The receiver's XDP program, eBPF assembled here (a dozen instructions do
// not warrant a clang-to-BPF step in the build): frames of raw_ethertype go
// to the XDP socket of their queue, everything else to the stack.
//   r2 = ctx->data; r3 = ctx->data_end; if r2 + 14 > r3 goto pass
//   if *(u16 *)(r2 + 12) != htons(raw_ethertype) goto pass
//   return bpf_redirect_map(xsks, ctx->rx_queue_index, XDP_PASS)
//   pass: return XDP_PASS
std::vector<bpf_insn> redirect_program(int map_fd) {
    auto insn = [](std::uint8_t code, std::uint8_t dst, std::uint8_t src, std::int16_t off, std::int32_t imm) {
        bpf_insn i{};
        i.code = code;
        i.dst_reg = dst & 0xf;
        i.src_reg = src & 0xf;
        i.off = off;
        i.imm = imm;
        return i;
    };
    const std::int32_t ethertype_be = static_cast<std::int32_t>(((raw_ethertype & 0xff) << 8) | (raw_ethertype >> 8));
    return {
        insn(BPF_LDX | BPF_MEM | BPF_W, 2, 1, offsetof(xdp_md, data), 0),
        insn(BPF_LDX | BPF_MEM | BPF_W, 3, 1, offsetof(xdp_md, data_end), 0),
        insn(BPF_ALU64 | BPF_MOV | BPF_X, 4, 2, 0, 0),
        insn(BPF_ALU64 | BPF_ADD | BPF_K, 4, 0, 0, 14),
        insn(BPF_JMP | BPF_JGT | BPF_X, 4, 3, 8, 0),  // to pass
        insn(BPF_LDX | BPF_MEM | BPF_H, 4, 2, 12, 0),
        insn(BPF_JMP | BPF_JNE | BPF_K, 4, 0, 6, ethertype_be),  // to pass
        insn(BPF_LDX | BPF_MEM | BPF_W, 2, 1, offsetof(xdp_md, rx_queue_index), 0),
        insn(BPF_LD | BPF_DW | BPF_IMM, 1, BPF_PSEUDO_MAP_FD, 0, map_fd),
        insn(0, 0, 0, 0, 0),
        insn(BPF_ALU64 | BPF_MOV | BPF_K, 3, 0, 0, XDP_PASS),
        insn(BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_redirect_map),
        insn(BPF_JMP | BPF_EXIT, 0, 0, 0, 0),
        insn(BPF_ALU64 | BPF_MOV | BPF_K, 0, 0, 0, XDP_PASS),  // pass:
        insn(BPF_JMP | BPF_EXIT, 0, 0, 0, 0),
    };
}

// The XSKMAP and the program, attached to ifname until destruction.
struct redirect_attachment {
    int ifindex, map_fd = -1, prog_fd = -1;
    std::uint32_t flags;
    bool attached = false;
    redirect_attachment(const std::string& ifname, xdp_attach mode)
        : ifindex(static_cast<int>(if_nametoindex(ifname.c_str()))),
          flags(mode == xdp_attach::native ? XDP_FLAGS_DRV_MODE : XDP_FLAGS_SKB_MODE) {
        if (ifindex == 0) fail("no interface " + ifname, errno);
        map_fd = bpf_map_create(BPF_MAP_TYPE_XSKMAP, "vmrdma_xsks", 4, 4, 1, nullptr);
        if (map_fd < 0) fail("XSKMAP", errno);
        auto insns = redirect_program(map_fd);
        std::vector<char> log(16384);
        LIBBPF_OPTS(bpf_prog_load_opts, opts, .prog_flags = BPF_F_XDP_HAS_FRAGS);
        opts.log_level = 1;
        opts.log_buf = log.data();
        opts.log_size = static_cast<std::uint32_t>(log.size());
        prog_fd = bpf_prog_load(BPF_PROG_TYPE_XDP, "vmrdma_xsk", "GPL", insns.data(), insns.size(), &opts);
        if (prog_fd < 0) fail("loading the redirect program (verifier: " + std::string(log.data()) + ")", errno);
        if (int err = bpf_xdp_attach(ifindex, prog_fd, flags, nullptr); err)
            fail(std::string("attaching XDP in ") + (mode == xdp_attach::native ? "native" : "skb") + " mode to " +
                     ifname,
                 err);
        attached = true;
    }
    ~redirect_attachment() {
        if (attached) bpf_xdp_detach(ifindex, flags, nullptr);
        if (prog_fd >= 0) close(prog_fd);
        if (map_fd >= 0) close(map_fd);
    }
    redirect_attachment(const redirect_attachment&) = delete;
    redirect_attachment& operator=(const redirect_attachment&) = delete;
};

}  // namespace

raw_counts xdp_blast(const std::string& ifname, const raw_options& o, const std::uint8_t dst[6]) {
    umem_area u;
    xdp_socket s(ifname, u, false);
    // Every chunk starts with the Ethernet header, so any chunk can begin a
    // frame: the free list needs no per-frame bookkeeping.
    std::vector<std::uint64_t> free_chunks;
    for (std::uint32_t i = 0; i < chunks; ++i) {
        std::uint8_t* c = u.at(std::uint64_t{i} * chunk);
        std::memcpy(c, dst, 6);
        std::memset(c + 6, 0x02, 6);
        c[12] = raw_ethertype >> 8;
        c[13] = raw_ethertype & 0xff;
        for (std::uint32_t b = 14; b < chunk; ++b) c[b] = static_cast<std::uint8_t>(b);
        free_chunks.push_back(std::uint64_t{i} * chunk);
    }
    const std::uint32_t per_frame = static_cast<std::uint32_t>((o.frame + chunk - 1) / chunk);
    raw_counts r;
    std::uint64_t completed = 0;  // descriptors
    auto reap = [&] {
        std::uint32_t idx;
        std::uint32_t n = xsk_ring_cons__peek(&u.comp, chunks, &idx);
        for (std::uint32_t i = 0; i < n; ++i) free_chunks.push_back(*xsk_ring_cons__comp_addr(&u.comp, idx + i));
        xsk_ring_cons__release(&u.comp, n);
        completed += n;
    };
    auto t0 = clock_type::now();
    auto end = t0 + std::chrono::duration<double>(o.seconds);
    while (clock_type::now() < end) {
        reap();
        std::uint32_t frames = std::min<std::uint32_t>(batch, static_cast<std::uint32_t>(free_chunks.size() / per_frame));
        std::uint32_t idx;
        if (frames && xsk_ring_prod__reserve(&s.tx, frames * per_frame, &idx) == frames * per_frame) {
            for (std::uint32_t f = 0; f < frames; ++f) {
                std::size_t left = o.frame;
                for (std::uint32_t d = 0; d < per_frame; ++d) {
                    xdp_desc* desc = xsk_ring_prod__tx_desc(&s.tx, idx++);
                    desc->addr = free_chunks.back();
                    free_chunks.pop_back();
                    desc->len = static_cast<std::uint32_t>(std::min<std::size_t>(left, chunk));
                    desc->options = d + 1 < per_frame ? XDP_PKT_CONTD : 0;
                    left -= desc->len;
                }
            }
            xsk_ring_prod__submit(&s.tx, frames * per_frame);
        }
        // Copy mode transmits in the system call, at most 32 descriptors a call
        // (XDP_MAX_TX_SKB_BUDGET, Linux 6.17, raises that: no faster here).
        if (sendto(s.fd(), nullptr, 0, MSG_DONTWAIT, nullptr, 0) < 0 && errno != EAGAIN && errno != EBUSY &&
            errno != ENOBUFS)
            fail("sendto (transmit kick)", errno);
    }
    r.seconds = std::chrono::duration<double>(clock_type::now() - t0).count();
    reap();
    r.frames = completed / per_frame;
    r.bytes = r.frames * o.frame;
    return r;
}

raw_counts xdp_sink(const std::string& ifname, xdp_attach attach, const std::function<void()>& ready) {
    umem_area u;
    redirect_attachment prog(ifname, attach);
    xdp_socket s(ifname, u, true);
    if (int err = xsk_socket__update_xskmap(s.xsk, prog.map_fd); err) fail("adding the socket to the XSKMAP", err);
    std::uint32_t idx;
    if (xsk_ring_prod__reserve(&u.fill, chunks, &idx) != chunks) fail("stocking the fill ring", ENOSPC);
    for (std::uint32_t i = 0; i < chunks; ++i) *xsk_ring_prod__fill_addr(&u.fill, idx + i) = std::uint64_t{i} * chunk;
    xsk_ring_prod__submit(&u.fill, chunks);
    if (ready) ready();
    raw_counts r;
    clock_type::time_point first{}, last{};
    for (;;) {
        std::uint32_t n = xsk_ring_cons__peek(&s.rx, ring, &idx);
        if (n == 0) {
            pollfd p{s.fd(), POLLIN, 0};
            if (poll(&p, 1, 500) <= 0) break;
            continue;
        }
        if (r.frames == 0) first = clock_type::now();
        last = clock_type::now();
        std::uint32_t fidx;
        while (xsk_ring_prod__reserve(&u.fill, n, &fidx) != n) {
        }  // cannot stay full: every chunk handed out comes back here
        for (std::uint32_t i = 0; i < n; ++i) {
            const xdp_desc* d = xsk_ring_cons__rx_desc(&s.rx, idx + i);
            r.bytes += d->len;
            if (!(d->options & XDP_PKT_CONTD)) ++r.frames;
            *xsk_ring_prod__fill_addr(&u.fill, fidx + i) = d->addr & ~std::uint64_t{chunk - 1};  // the chunk
        }
        xsk_ring_prod__submit(&u.fill, n);
        xsk_ring_cons__release(&s.rx, n);
    }
    r.seconds = std::chrono::duration<double>(last - first).count();
    return r;
}

}  // namespace vmrdma::bench
