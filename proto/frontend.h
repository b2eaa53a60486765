/* SPDX-License-Identifier: GPL-2.0 OR MIT */
/*
 * frontend.h - one frontend as a backend serves it: the tables of what it
 * owns (endpoints, connections, regions), its requests waiting for the
 * engine, and the data path between its ring and the engine.  Sans-I/O and
 * allocation-free like the engine: the host (backend_kmod; vmrdmad next)
 * gives it storage, calls it under its own lock, and gets each answer
 * through host.respond, exactly once per request.
 *
 * What it decides, so that every backend answers a guest the same way:
 *   - a request may name only the frontend's own endpoints, regions and
 *     connections: another is -EINVAL (endpoint, connection) or -EACCES
 *     (region), counted in `rejected`; a region granted read-only takes
 *     no READ or RECV (-EPERM);
 *   - connection handles are the frontend's own (1, 2, ...), never the
 *     engine's ids, so a frontend learns nothing about others';
 *   - a frontend holds at most lim.conns connections, counting those being
 *     opened; ACCEPTs take arrivals oldest-first, and arrivals wait (up to
 *     VR_FE_BACKLOG per endpoint) for an ACCEPT;
 *   - closing an endpoint answers its waiting ACCEPTs (-ECANCELED), forgets
 *     its connections and hands its regions back to the host.
 * Engine cookies are (id << 32 | slot); the host routes a completion to
 * the frontend whose id it carries.
 */
#ifndef VR_FRONTEND_H
#define VR_FRONTEND_H
#include "engine.h"
#include "ring.h"
#include "service.h"

#define VR_FE_BACKLOG 16u /* accepted connections waiting for an ACCEPT, per endpoint */

struct vr_fe_ep {
	u32 accepts;                /* posted ACCEPTs not yet answered */
	u32 nbacklog;
	u32 backlog[VR_FE_BACKLOG]; /* engine ids of accepted connections, oldest first */
	u32 asked_weight;           /* what the frontend asked for */
	u32 weight;                 /* in force */
	u16 id;
	bool used;
	bool listen;
};

struct vr_fe_conn {
	u32 handle;  /* the frontend's name for it */
	u32 id;      /* the engine's */
	u16 ep;
	u16 peer_ep;
	u8 peer_mac[6];
	bool used;
	bool accepted;
	bool failed; /* the engine failed it (the peer went away) */
	u8 why;      /* failed: the positive errno the engine gave */
};

struct vr_fe_region {
	void *host;  /* the host's record (its mapping) */
	u64 len;
	u64 key;
	u16 ep;
	bool used;
	bool writable;
};

struct vr_fe_slot {
	struct vr_svc_pending req; /* req.opcode 0: free */
	u32 seq;                   /* ACCEPT: order of posting */
	u16 peer_ep;               /* CONNECT: for the connection's record */
	u8 peer_mac[6];
	bool answered;             /* answered early (drain): the completion is swallowed */
	bool bulk;                 /* its len counts in the frontend's bulk_inflight */
};

struct vr_fe_host {
	/* One response for the ring; `req` is what it answers. */
	void (*respond)(void *ctx, const struct vr_svc_pending *req, const struct vr_ring_rsp *rsp);
	void *ctx;
};

/* Limits beyond vr_svc_limits': connections held at once. */
struct vr_fe {
	struct vr_engine *eng;
	struct vr_fe_host host;
	u32 id;
	struct vr_svc_limits lim;
	u32 max_conns;
	u32 admin_weight;  /* the administrator's weight for every endpoint, or 0 */
	u32 max_ep_id;     /* endpoint ids the engine has: 0..max_ep_id-1 */

	/* storage, from the host */
	struct vr_fe_ep *eps;
	u32 eps_cap;
	struct vr_fe_conn *conns;
	u32 conns_cap;
	struct vr_fe_region *regions;
	u32 regions_cap;
	struct vr_fe_slot *slots;  /* ring size entries */
	u16 *free_slots;
	u32 size;

	struct vr_svc_usage use;
	u32 nconns;
	u32 nfree;
	u32 accept_seq;
	u32 next_handle;
	u64 rejected;
	u64 bulk_inflight; /* WRITE, READ, SEND bytes at the engine (admission) */
};

/* Sets fe up over the host's zeroed storage (counts as given in fe). */
void vr_fe_init(struct vr_fe *fe);

/* Control: 0 or a negative errno with *why for the host's log. */
int vr_fe_open_ep(struct vr_fe *fe, u64 id, u64 weight, bool listen, const char **why);
/* The engine fails its operations; its regions go to release(ctx, host)
 * (already deregistered in the engine). */
int vr_fe_close_ep(struct vr_fe *fe, u64 id, void (*release)(void *ctx, void *host), void *ctx);
/* REG's checks before the host maps anything (ownership, limits). */
int vr_fe_check_reg(const struct vr_fe *fe, u64 ep, u64 len, u64 access, const char **why);
/* Registers `mem` (the engine's memory handle) for ep; records `host`. */
int vr_fe_add_region(struct vr_fe *fe, u16 ep, void *mem, void *host, u64 len, u32 access,
		     bool writable, u64 *key);
/* DEREG: the engine forgets it (operations using it fail first); *host is
 * the host's record to release.  -ENOENT: not the frontend's. */
int vr_fe_dereg(struct vr_fe *fe, u64 key, void **host);
/* Sets the administrator's weight for every endpoint, now and later. */
int vr_fe_set_admin_weight(struct vr_fe *fe, u32 weight);

/* Data path: a ring request (WRITE..CSWAP, RECV, CONNECT, ACCEPT,
 * DISCONNECT).  Returns 1 when the answer comes later (host.respond),
 * else the status, *rsp filled for the host to send. */
int vr_fe_request(struct vr_fe *fe, const struct vr_ring_req *req, struct vr_ring_rsp *rsp);
/* An engine completion whose cookie carries fe's id.  false: not one of
 * fe's requests (counted by the host as stray). */
bool vr_fe_complete(struct vr_fe *fe, const struct vr_completion *wc);
/* The engine failed connection `id` (VR_WC_DISCONNECT): marked, for the
 * administrator's lists; its operations fail with their own completions.
 * false: not one of fe's. */
/* The engine failed connection id with status: answers the frontend's
 * CLOSED requests for it.  Returns whether it was this frontend's. */
bool vr_fe_conn_failed(struct vr_fe *fe, u32 id, int status);
/* The engine's accept policy for one of fe's endpoints (host.accept). */
int vr_fe_accept_policy(const struct vr_fe *fe, u16 ep);
/* A listening endpoint of fe accepted engine connection `conn`. */
void vr_fe_accepted(struct vr_fe *fe, u16 ep, u32 conn);
/* Answers every request of these opcodes still waiting (a mask of
 * 1 << VR_RING_*) with status now; their completions are swallowed. */
void vr_fe_answer_waiting(struct vr_fe *fe, u32 opcodes, int status);
/* Teardown: close every endpoint (release as for vr_fe_close_ep), answer
 * every request still waiting with -ECANCELED, hand over every region. */
void vr_fe_close_all(struct vr_fe *fe, void (*release)(void *ctx, void *host), void *ctx);
/* Requests the engine still holds (the storage must outlive them). */
u32 vr_fe_in_engine(const struct vr_fe *fe);
/* The frontend's weight for admission (vr_svc_admissible): the sum of its
 * endpoints' weights in force, at least 1. */
u64 vr_fe_weight(const struct vr_fe *fe);
/* What fe adds to the weights that share admission's budget (the active
 * of vr_svc_admissible, summed by the host over its frontends): its weight
 * while it is the one asking, has bulk bytes at the engine or waits for
 * admission (waiting: the host's queue), else 0. */
u64 vr_fe_contending_weight(const struct vr_fe *fe, bool asking, bool waiting);

static inline const struct vr_fe_ep *vr_fe_ep_of(const struct vr_fe *fe, u16 ep)
{
	u32 i;

	for (i = 0; i < fe->eps_cap; i++)
		if (fe->eps[i].used && fe->eps[i].id == ep)
			return &fe->eps[i];
	return NULL;
}

#endif
