/* SPDX-License-Identifier: GPL-2.0 OR MIT */
/*
 * service.h - the frontend service's rules: what a backend (vmrdmad or
 * backend_kmod) checks before it passes a frontend's request to the engine,
 * and how it answers.  Both backends call these, so a guest gets the same
 * answer from either; each function is pure (no tables, no I/O) and the
 * host keeps its own record of what each frontend owns, the usage below.
 * Every refusal comes with a short reason for the host's log and reply.
 */
#ifndef VR_SERVICE_H
#define VR_SERVICE_H
#include "engine.h"
#include "ring.h"

/* What one frontend may hold; set per frontend by the backend's
 * administrator (vmrdmactl, xenstore). */
struct vr_svc_limits {
	u32 endpoints;
	u32 regions;
	u64 registered_bytes;
	u32 max_weight;    /* the most a frontend may ask for itself */
};

/* What one frontend holds now (kept by the host). */
struct vr_svc_usage {
	u32 endpoints;
	u32 regions;
	u64 registered_bytes;
};

/* An endpoint's weight into the engine's range: 0 counts as 1, and no more
 * than VR_WEIGHT_MAX. */
static inline u32 vr_svc_clamp_weight(u64 w)
{
	return w == 0 ? 1 : w > VR_WEIGHT_MAX ? VR_WEIGHT_MAX : (u32)w;
}

/*
 * Shares of a pool among principals (vmrdmad: the uids of its frontends;
 * docs/split-driver.md, Per-uid limits).  A principal holding `held` units
 * of a pool of `total`, `used` of which are taken, may take one more when it
 * stays below its `limit` and still leaves `reserve` units free for the
 * others, unless it holds fewer than `reserve` itself: so one principal
 * never takes the whole pool, and a newcomer still finds a reserve.
 */
static inline bool vr_svc_share_allows(u32 held, u32 used, u32 total, u32 limit, u32 reserve)
{
	if (held >= limit || used >= total)
		return false;
	return total - used - 1 >= reserve || held < reserve;
}

/*
 * Admission by weight (docs/split-driver.md, "Weights"): the engine's DRR
 * shares a transmit queue only while it is backlogged, and over a real link
 * each connection is paced by its own window, so the backends also share
 * the bytes in flight.  The bulk requests (WRITE, READ, SEND) of all
 * frontends together may keep `budget` bytes at the engine; under
 * contention a frontend's share is in proportion to its weight among the
 * active frontends (those with bulk bytes at the engine or a request
 * waiting for admission, itself included; `active` is the sum of their
 * weights): it may add `len` bytes to its `inflight` while
 * inflight + len <= budget * weight / active.  One with nothing in flight
 * may always post one operation, however big.  budget 0: no admission (DRR
 * only).  Requests beyond it wait, in ring order, holding back the
 * frontend's later ones.  (Multiplications only: no 64-bit division in the
 * kernel.)
 */
static inline bool vr_svc_is_bulk(u32 ring_op)
{
	return ring_op == VR_RING_WRITE || ring_op == VR_RING_READ || ring_op == VR_RING_SEND;
}

static inline bool vr_svc_admissible(u64 budget, u64 inflight, u64 len, u64 weight, u64 active)
{
	return !budget || !inflight || (inflight + len) * active <= budget * weight;
}

/*
 * The weight policy: the frontend's ask (0 = 1), capped at its max_weight;
 * an administrator's weight (admin_weight != 0) overrides both.  Always in
 * 1..VR_WEIGHT_MAX.
 */
u32 vr_svc_ep_weight(u64 asked, u32 max_weight, u32 admin_weight);

/*
 * OPEN_EP: id must be an engine endpoint id (< max_ep_id) and the frontend
 * below its endpoint limit.  0, -EINVAL or -ENOSPC with *why set.
 */
int vr_svc_check_open_ep(const struct vr_svc_limits *lim, const struct vr_svc_usage *use,
			 u64 id, u32 max_ep_id, const char **why);

/*
 * REG: the endpoint must be the frontend's own (ep_owned), the length not
 * 0, the access bits known, and the frontend below its region and byte
 * limits.  0, -ENOENT, -EINVAL or -ENOSPC with *why set.
 */
int vr_svc_check_reg(const struct vr_svc_limits *lim, const struct vr_svc_usage *use,
		     bool ep_owned, u64 len, u64 access, const char **why);

/*
 * REG of granted pages (proto/xen.h): the offset inside the first page,
 * the length and the page count must agree and stay within
 * VR_XEN_MAX_REG_PAGES.  0 or -EINVAL with *why set.
 */
int vr_svc_check_grant_reg(u64 first_page_off, u64 len, u64 pages, const char **why);

/* Whether a region with these access bits must be mapped writable: local
 * writes, remote writes and atomics (which write the target too) all do. */
static inline bool vr_svc_reg_writable(u64 access)
{
	return (access & (VR_ACCESS_LOCAL_WRITE | VR_ACCESS_REMOTE_WRITE |
			  VR_ACCESS_REMOTE_ATOMIC)) != 0;
}

/*
 * The completion kind (enum vr_wc_op) that answers a ring request's opcode
 * (enum vr_ring_op): CONNECT and ACCEPT both make a connection
 * (VR_WC_CONNECT).  0 for opcodes that the backend answers itself.
 */
u32 vr_svc_wc_of_ring_op(u32 ring_op);

/*
 * Ring request -> engine call: the one place a request in proto/ring.h's
 * form becomes an engine operation.  Every host describes an operation as
 * a vr_ring_req (the in-process library too), so this is its only
 * dispatch.  The host has already checked ownership; `conn` is the engine's
 * connection id (the ring's handle may be the host's own), `cookie` the
 * engine's cookie.  WRITE, READ, SEND, RECV, FADD, CSWAP, RESOLVE,
 * CONNECT (the new id in *new_conn, also in its completion; its private
 * data read from the request's region), DISCONNECT (0 or -ENOENT; no
 * completion), ACCEPT_DATA and NAME (0 or the refusal; no completion),
 * PD_ALLOC (the domain in *new_conn), PD_FREE and PD_BIND (`conn` 0: no
 * connection; no completion), AUTH_KEY and LISTEN (no completion); any other opcode is -EINVAL.  Otherwise the
 * engine's status.
 */
int vr_svc_post(struct vr_engine *eng, const struct vr_ring_req *req, u32 conn, u64 cookie,
		u32 *new_conn);

/* What a backend remembers of a request the engine still holds: enough
 * to answer it. */
struct vr_svc_pending {
	u64 cookie; /* the frontend's */
	u8 opcode;
	u16 ep;
	u32 conn;   /* the frontend's handle */
	u32 len;
	u64 lkey;   /* CONNECT, ACCEPT: where the peer's private data goes, */
	u64 loff;
	u64 room;   /* at most this much (the request's operand) */
};

/*
 * A CONNECT or ACCEPT request whose connection (engine id conn) is made:
 * the peer's private data goes to the request's lkey/loff, at most
 * req->room bytes, and *bytes is its whole length (the response's
 * bytes).  0 or the copy's error (the region went away, or is read-only).
 */
int vr_svc_peer_data(struct vr_engine *eng, const struct vr_svc_pending *req, u32 conn,
		     u64 *bytes);

/*
 * Engine completion -> ring response for the pending request it answers:
 * status and NAK reason; bytes moved (the request's length for WRITE,
 * READ, SEND on success; RECV the message's); RECV's tag; FADD/CSWAP's
 * old value; a connection's id for CONNECT/ACCEPT on success (`new_conn`,
 * the handle the backend gives out for wc->conn).
 */
void vr_svc_rsp_of_wc(const struct vr_svc_pending *req, const struct vr_completion *wc,
		      u32 new_conn, struct vr_ring_rsp *rsp);

/* The response header that answers req: its cookie, opcode, endpoint and
 * connection, everything else 0. */
static inline void vr_svc_rsp_init(struct vr_ring_rsp *rsp, u64 cookie, u8 opcode, u16 ep, u32 conn)
{
	memset(rsp, 0, sizeof(*rsp));
	rsp->cookie = cookie;
	rsp->opcode = opcode;
	rsp->ep = ep;
	rsp->conn = conn;
}

/* Ring response -> the completion a frontend's library hands its waiter
 * (the inverse of vr_svc_rsp_of_wc, opcode to completion kind included). */
void vr_svc_wc_of_rsp(const struct vr_ring_rsp *rsp, struct vr_completion *wc);

#endif
