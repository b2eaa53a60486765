/* SPDX-License-Identifier: GPL-2.0 OR MIT */
/*
 * ring.h - the split driver's data path ABI: one definition for the
 * user-space driver domain (vmrdmad), its frontends (coro's unix: and xen:
 * transports) and the kernel modules.  The control and admin messages are
 * control.h's.  docs/split-driver.md is the prose version.
 *
 * Data path: one shared-memory area holds a request ring (frontend ->
 * driver domain) and a response ring (driver domain -> frontend), laid out
 * like Xen's io/ring.h: free-running 32-bit producer indices in shared
 * memory, private consumer indices, req_event/rsp_event for notification
 * hold-off, power-of-two sizes.  Doorbells are eventfds (event channels).
 *
 * Invariants both sides keep (and neither may rely on the other keeping):
 *   - every request gets exactly one response;
 *   - the frontend keeps at most size-1 requests outstanding (posted and
 *     response not yet consumed), so neither ring can overflow;
 *   - the consumer copies an entry out of shared memory and validates the
 *     copy: the other side can change the shared entry under it;
 *   - the driver domain reads the producer index once per pass and refuses
 *     (prod - cons) > size as a protocol violation.
 *
 * All multi-byte fields are little-endian.  The user-space sides run only on
 * little-endian hosts (they assert it); a big-endian kernel would convert.
 */
#ifndef VR_RING_H
#define VR_RING_H
#include "os.h"

#define VR_RING_MAGIC   0x474e5256u /* "VRNG" */
#define VR_RING_VERSION 3u /* 2: 64-bit lkey and rkey; 3: protection domains */
#define VR_RING_MIN_SIZE 2u
#define VR_RING_MAX_SIZE 4096u

/* Request opcodes. */
enum vr_ring_op {
	VR_RING_WRITE = 1,   /* conn, lkey, loff, rkey, roff, len */
	VR_RING_READ,        /* conn, lkey, loff, rkey, roff, len */
	VR_RING_SEND,        /* conn, lkey, loff, len, tag */
	VR_RING_RECV,        /* ep, lkey, loff, len, tag, mask */
	VR_RING_FADD,        /* conn, rkey, roff, operand (addend) */
	VR_RING_CSWAP,       /* conn, rkey, roff, operand (compare), swap */
	/* CONNECT and ACCEPT: private data (wire.h) travels through lkey/loff:
	 * CONNECT sends len bytes from there (0: none); both write the peer's
	 * there, at most operand bytes, and rsp.bytes is its whole length. */
	VR_RING_CONNECT,     /* ep, peer_mac, peer_ep, lkey, loff, len, operand -> rsp.conn */
	VR_RING_ACCEPT,      /* ep (listening), lkey, loff, operand -> rsp.conn */
	VR_RING_DISCONNECT,  /* conn */
	/*
	 * Control requests: used only on the Xen ring between frontend_kmod and
	 * backend_kmod (proto/xen.h), where there is no control socket.
	 * vmrdmad refuses them (-EINVAL).
	 */
	VR_RING_OPEN_EP,     /* ep, operand = weight, mask = 1 to listen */
	VR_RING_CLOSE_EP,    /* ep */
	VR_RING_REG,         /* ep, loff = offset in the first page, operand = length,
			      * swap = page count, tag = grant ref of the directory
			      * page (proto/xen.h), mask = access -> rsp.value = key */
	VR_RING_DEREG,       /* lkey; answered once the backend no longer maps it */
	/*
	 * conn: answered when the connection ends, status 0 and rsp.value the
	 * positive errno of why (ECONNRESET: the peer closed or reset it,
	 * ETIMEDOUT: it went silent); at once if it already has.  -ECANCELED
	 * when this side disconnects it first.  Never reaches the engine.
	 */
	VR_RING_CLOSED,
	/* ep, lkey, loff, len: the accept data every CONNECT_ACK of the
	 * (listening) endpoint carries; len 0 clears it.  Answered at once. */
	VR_RING_ACCEPT_DATA,
	/* ep, lkey, loff, len: the name the endpoint answers RESOLVEs for;
	 * len 0 withdraws it; -EADDRINUSE if taken.  Answered at once. */
	VR_RING_NAME,
	/* ep, lkey, loff, len: find the endpoint that has this name ->
	 * rsp.tag = its endpoint id, rsp.value = its MAC (first byte in bits
	 * 47..40); -EHOSTUNREACH when nobody answered. */
	VR_RING_RESOLVE,
	/* Protection domains (engine.h vr_pd_*), answered at once: ALLOC: ep
	 * -> rsp.value = the domain; FREE: ep, operand = the domain; BIND: ep,
	 * operand = the domain (0: none), and conn (a handle, 0: none) and/or
	 * lkey (one of the endpoint's regions, 0: none) are put in it. */
	VR_RING_PD_ALLOC,
	VR_RING_PD_FREE,
	VR_RING_PD_BIND,
	/* ep, lkey, loff, len (32, or 0 to go back to the device's): the key
	 * the endpoint's connections are authenticated with from now on
	 * (engine.h vr_ep_set_auth_key).  Answered at once. */
	VR_RING_AUTH_KEY,
	/* ep: the endpoint listens from now on (engine.h vr_ep_listen), for
	 * one opened without listening so that its accept data is in place
	 * before the first connection.  Answered at once. */
	VR_RING_LISTEN,
	VR_RING_OP_MAX,
};

/* A request: 96 bytes. */
struct vr_ring_req {
	u64 cookie;     /* echoed in the response; opaque to the driver domain */
	u8 opcode;      /* enum vr_ring_op */
	u8 flags;       /* 0 */
	u16 ep;         /* endpoint id (RECV, CONNECT, ACCEPT) */
	u32 conn;       /* connection handle the driver domain gave out */
	u64 lkey;       /* key of one of this frontend's regions */
	u64 rkey;       /* the peer's key (not checked locally: the peer does) */
	u64 loff;
	u64 roff;
	u32 len;
	u16 peer_ep;    /* CONNECT */
	u8 peer_mac[6]; /* CONNECT */
	u32 reserved0;
	u64 tag;        /* SEND, RECV */
	u64 mask;       /* RECV */
	u64 operand;    /* FADD: addend; CSWAP: compare */
	u64 swap;       /* CSWAP */
};

/* A response: 48 bytes. */
struct vr_ring_rsp {
	u64 cookie;
	s32 status;     /* 0 or a negative errno (engine.h's meanings) */
	u8 opcode;      /* the request's */
	u8 nak_reason;  /* enum vr_nak_reason behind a remote refusal, else 0 */
	u16 ep;
	u32 conn;       /* CONNECT/ACCEPT: the new connection's handle */
	u32 reserved;
	u64 bytes;      /* bytes moved; RECV: message length */
	u64 tag;        /* RECV: the matched message's tag */
	u64 value;      /* FADD/CSWAP: the previous remote value; RECV: its
			 * source, CONNECT/ACCEPT: the peer (vr_peer_word) */
};

/*
 * The shared area starts with this header (VR_RING_HDR_SIZE bytes), then
 * `size` requests at req_off, then `size` responses at rsp_off.  The driver
 * domain writes magic..rsp_off once; neither side trusts what it reads
 * there afterwards (each keeps its own copy of size and offsets).
 */
struct vr_ring_shared {
	u32 magic;
	u32 version;
	u32 size;       /* entries per ring, a power of two */
	u32 req_off;
	u32 rsp_off;
	u32 pad0[11];
	/* written by the frontend: */
	u32 req_prod;
	u32 rsp_event;  /* "notify me when rsp_prod reaches this" */
	u32 pad1[14];
	/* written by the driver domain: */
	u32 rsp_prod;
	u32 req_event;  /* "notify me when req_prod reaches this" */
	u32 state;      /* enum vr_ring_state: the driver domain is shutting down */
	u32 pad2[13];
};

#define VR_RING_HDR_SIZE 256u

/*
 * vr_ring_shared.state, written by the driver domain only.  DRAINING: it
 * is shutting down; it finishes what it has, answers every new request
 * with -ESHUTDOWN and then closes the control socket.  A frontend may fail
 * new operations at once instead of posting them.
 */
enum vr_ring_state {
	VR_RING_STATE_OPEN = 0,
	VR_RING_STATE_DRAINING = 1,
};

static inline u32 vr_ring_req_off(void)
{
	return VR_RING_HDR_SIZE;
}

static inline u32 vr_ring_rsp_off(u32 size)
{
	return VR_RING_HDR_SIZE + size * (u32)sizeof(struct vr_ring_req);
}

/* Bytes of the shared area for `size` entries (not page-rounded). */
static inline u32 vr_ring_bytes(u32 size)
{
	return vr_ring_rsp_off(size) + size * (u32)sizeof(struct vr_ring_rsp);
}

static inline bool vr_ring_size_ok(u32 size)
{
	return size >= VR_RING_MIN_SIZE && size <= VR_RING_MAX_SIZE &&
	       (size & (size - 1)) == 0;
}

/* Shared-index access and ordering. */
#ifdef __KERNEL__
#include <linux/compiler.h>
#include <asm/barrier.h>
#define VR_RING_READ(x)      READ_ONCE(x)
#define VR_RING_WRITE(x, v)  WRITE_ONCE(x, v)
#define vr_ring_rmb()        virt_rmb()
#define vr_ring_wmb()        virt_wmb()
#define vr_ring_mb()         virt_mb()
#else
#define VR_RING_READ(x)      __atomic_load_n(&(x), __ATOMIC_RELAXED)
#define VR_RING_WRITE(x, v)  __atomic_store_n(&(x), (v), __ATOMIC_RELAXED)
#define vr_ring_rmb()        __atomic_thread_fence(__ATOMIC_ACQUIRE)
#define vr_ring_wmb()        __atomic_thread_fence(__ATOMIC_RELEASE)
#define vr_ring_mb()         __atomic_thread_fence(__ATOMIC_SEQ_CST)
#endif

/*
 * The side that allocates the shared area (vmrdmad for unix:, the guest
 * for Xen) writes the header once, before the other side can see it; both
 * event indices start at 1: "notify me at the first entry".
 */
static inline void vr_ring_init(struct vr_ring_shared *sh, u32 size)
{
	sh->magic = VR_RING_MAGIC;
	sh->version = VR_RING_VERSION;
	sh->size = size;
	sh->req_off = vr_ring_req_off();
	sh->rsp_off = vr_ring_rsp_off(size);
	sh->req_event = 1;
	sh->rsp_event = 1;
}

/*
 * The other side checks the header once against the size it was told
 * elsewhere (xenstore, HELLO), then uses only its own copies.
 */
static inline bool vr_ring_header_ok(const struct vr_ring_shared *sh, u32 size)
{
	return VR_RING_READ(sh->magic) == VR_RING_MAGIC &&
	       VR_RING_READ(sh->version) == VR_RING_VERSION &&
	       VR_RING_READ(sh->size) == size &&
	       VR_RING_READ(sh->req_off) == vr_ring_req_off() &&
	       VR_RING_READ(sh->rsp_off) == vr_ring_rsp_off(size);
}

/*
 * Producer side (either direction): publish `new_prod` after the entries
 * are written; returns true when the consumer asked to be woken for an
 * index in (old_prod, new_prod] (Xen's RING_PUSH_*_AND_CHECK_NOTIFY).
 */
static inline bool vr_ring_push(u32 *shared_prod, const u32 *shared_event, u32 new_prod)
{
	u32 old_prod = VR_RING_READ(*shared_prod);

	vr_ring_wmb(); /* entries before the index */
	VR_RING_WRITE(*shared_prod, new_prod);
	vr_ring_mb(); /* index before reading the event */
	return (u32)(new_prod - VR_RING_READ(*shared_event)) < (u32)(new_prod - old_prod);
}

/*
 * Consumer side, the two rules every request consumer keeps (vmrdmad,
 * backend_kmod, frontend_kmod): the producer index read once per pass may
 * be at most `size` ahead, and a frontend keeps at most size-1 requests
 * outstanding (taken and not yet answered).  NULL, or the violation for
 * the log (the frontend is then disconnected).
 */
static inline const char *vr_ring_check_prod(u32 prod, u32 cons, u32 size)
{
	return prod - cons > size ? "request producer index out of range" : NULL;
}

static inline const char *vr_ring_check_outstanding(u32 req_cons, u32 rsp_prod_pvt, u32 size)
{
	return req_cons - rsp_prod_pvt >= size - 1 ? "more than size-1 requests outstanding" : NULL;
}

/*
 * Consumer side: after draining up to `cons`, ask to be woken at the next
 * entry, then look again (Xen's RING_FINAL_CHECK_FOR_*).  Returns the
 * producer index read after setting the event; more work if != cons.
 */
static inline u32 vr_ring_final_check(const u32 *shared_prod, u32 *shared_event, u32 cons)
{
	VR_RING_WRITE(*shared_event, cons + 1);
	vr_ring_mb();
	return VR_RING_READ(*shared_prod);
}

VR_STATIC_ASSERT(sizeof(struct vr_ring_req) == 96, "request ABI");
VR_STATIC_ASSERT(sizeof(struct vr_ring_rsp) == 48, "response ABI");
VR_STATIC_ASSERT(sizeof(struct vr_ring_shared) <= VR_RING_HDR_SIZE, "ring header ABI");

#endif /* VR_RING_H */
