// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * vb_ring.c - one frontend's request ring.  The work item consumes
 * requests (producer index read once per pass, each entry copied out of
 * shared memory before it is looked at), checks them against the
 * frontend's own endpoints, connections and regions, executes them on the
 * engine and answers each exactly once: at once, or from the engine's
 * completion (vb_complete) through the frontend's slot table.  Semantics
 * and status codes follow vmrdmad/daemon.cc.
 */
#include <linux/kernel.h>
#include <linux/sched.h>
#include <linux/slab.h>
#include <xen/events.h>

#include "vb.h"

#define VB_COOKIE(fe, slot) (((u64)(fe)->id << 32) | (slot))

/* ------------------------------------------------------------ lookups */

static struct vb_fe *vb_fe_find(u32 id)
{
	struct vb_fe *fe;

	list_for_each_entry(fe, &vb.frontends, node)
		if (fe->id == id)
			return fe;
	return NULL;
}

static struct vb_ep *vb_ep_of(struct vb_fe *fe, u16 ep)
{
	u32 i;

	for (i = 0; i < fe->max_eps; i++)
		if (fe->eps[i].used && fe->eps[i].id == ep)
			return &fe->eps[i];
	return NULL;
}

static struct vb_conn *vb_conn_of(struct vb_fe *fe, u32 id)
{
	u32 i;

	if (!id)
		return NULL;
	for (i = 0; i < VB_ENG_CONNS; i++)
		if (fe->conns[i].used && fe->conns[i].id == id)
			return &fe->conns[i];
	return NULL;
}

/*
 * Connections a frontend holds or is opening: its share of the engine's
 * connection table, capped by max_conns so one guest cannot take them all.
 */
static u32 vb_conns_held(const struct vb_fe *fe)
{
	u32 i, n = 0;

	for (i = 0; i < VB_ENG_CONNS; i++)
		n += fe->conns[i].used;
	for (i = 0; i < fe->size; i++)
		n += fe->ops[i].req.opcode == VR_RING_CONNECT;
	return n;
}

static struct vb_region *vb_region_of(struct vb_fe *fe, u32 key)
{
	struct vb_region *r;

	list_for_each_entry(r, &fe->regions, node)
		if (r->key == key)
			return r;
	return NULL;
}

/* Room is certain: the table has as many entries as the engine has conns. */
static void vb_conn_add(struct vb_fe *fe, u32 id, u16 ep)
{
	u32 i;

	for (i = 0; i < VB_ENG_CONNS; i++) {
		if (!fe->conns[i].used) {
			fe->conns[i].used = true;
			fe->conns[i].id = id;
			fe->conns[i].ep = ep;
			return;
		}
	}
	vr_disconnect(vb.eng, id); /* cannot happen; do not leak it */
}

/* ---------------------------------------------------------- responses */

/* Under vb.lock: write one response and notify if the frontend asked. */
static void vb_respond(struct vb_fe *fe, const struct vr_ring_rsp *rsp)
{
	if (rsp->status) {
		fe->failed++;
		if (fe->tearing)
			fe->teardown_failed++;
	}
	if (!fe->ring_va)
		return;
	fe->responses++;
	memcpy(&fe->rsps[fe->rsp_prod_pvt & (fe->size - 1)], rsp, sizeof(*rsp));
	fe->rsp_prod_pvt++;
	if (vr_ring_push(&fe->shared->rsp_prod, &fe->shared->rsp_event, fe->rsp_prod_pvt) &&
	    fe->notify)
		notify_remote_via_irq(fe->irq);
}

static void vb_rsp_init(struct vr_ring_rsp *rsp, const struct vb_op *op)
{
	memset(rsp, 0, sizeof(*rsp));
	rsp->cookie = op->req.cookie;
	rsp->opcode = op->req.opcode;
	rsp->ep = op->req.ep;
	rsp->conn = op->req.conn;
}

/* ------------------------------------------------------ slot handling */

static u32 vb_op_get(struct vb_fe *fe, const struct vr_ring_req *req)
{
	u32 slot = fe->op_free[--fe->nfree];
	struct vb_op *op = &fe->ops[slot];

	op->req.cookie = req->cookie;
	op->req.opcode = req->opcode;
	op->req.ep = req->ep;
	op->req.conn = req->conn;
	op->req.len = req->len;
	op->seq = 0;
	return slot;
}

static void vb_op_put(struct vb_fe *fe, u32 slot)
{
	fe->ops[slot].req.opcode = 0;
	fe->op_free[fe->nfree++] = (u16)slot;
}

/* Answer a waiting slot with status and free it. */
static void vb_op_fail(struct vb_fe *fe, u32 slot, int status)
{
	struct vr_ring_rsp rsp;

	vb_rsp_init(&rsp, &fe->ops[slot]);
	rsp.status = status;
	vb_op_put(fe, slot);
	vb_respond(fe, &rsp);
}

/* ------------------------------------------------------ engine callbacks */

/* A listening endpoint's new connection: the oldest posted ACCEPT takes it. */
static void vb_accepted(u16 ep, u32 conn)
{
	struct vb_fe *fe = ep < VB_ENG_ENDPOINTS ? vb.ep_owner[ep] : NULL;
	struct vb_ep *e = fe ? vb_ep_of(fe, ep) : NULL;
	struct vr_ring_rsp rsp;
	u32 i, best = U32_MAX;

	if (!e) {
		vb.stray_completions++; /* vb_accept refused it: cannot happen */
		return;
	}
	if (e->accepts) {
		for (i = 0; i < fe->size; i++) {
			const struct vb_op *op = &fe->ops[i];

			if (op->req.opcode == VR_RING_ACCEPT && op->req.ep == ep &&
			    (best == U32_MAX || (s32)(op->seq - fe->ops[best].seq) < 0))
				best = i;
		}
	}
	if (best != U32_MAX) {
		e->accepts--;
		vb_rsp_init(&rsp, &fe->ops[best]);
		rsp.conn = conn;
		vb_conn_add(fe, conn, ep);
		vb_op_put(fe, best);
		vb_respond(fe, &rsp);
		return;
	}
	if (e->nbacklog < VB_BACKLOG)
		e->backlog[e->nbacklog++] = conn;
	else
		vb.stray_completions++; /* vb_accept keeps room: cannot happen */
}

/* Engine accept policy: only endpoints a live frontend listens on, with room. */
int vb_accept(void *ctx, u16 ep, const u8 peer_mac[6], u16 peer_ep)
{
	struct vb_fe *fe = ep < VB_ENG_ENDPOINTS ? vb.ep_owner[ep] : NULL;
	struct vb_ep *e;

	if (!fe || fe->stopping)
		return -ECONNREFUSED;
	e = vb_ep_of(fe, ep);
	if (!e || !e->listen)
		return -ECONNREFUSED;
	if (!e->accepts && e->nbacklog >= VB_BACKLOG)
		return -ENOBUFS;
	if (vb_conns_held(fe) + e->nbacklog >= fe->max_conns)
		return -ENOBUFS;
	return 0;
}

/* Engine completion, under vb.lock: answer the request that caused it. */
void vb_complete(void *ctx, const struct vr_completion *c)
{
	struct vr_ring_rsp rsp;
	struct vb_fe *fe;
	struct vb_op *op;
	u32 slot;

	if (c->op == VR_WC_DISCONNECT)
		return; /* the connection is in error: its next operations fail */
	if (c->op == VR_WC_ACCEPT) {
		vb_accepted(c->ep, c->conn);
		return;
	}
	fe = vb_fe_find((u32)(c->cookie >> 32));
	slot = (u32)c->cookie;
	if (!fe || !fe->ops || slot >= fe->size || !fe->ops[slot].req.opcode ||
	    vr_svc_wc_of_ring_op(fe->ops[slot].req.opcode) != c->op) {
		vb.stray_completions++;
		return;
	}
	op = &fe->ops[slot];
	/* The kernel hands out the engine's connection ids as they are. */
	vr_svc_rsp_of_wc(&op->req, c, c->conn, &rsp);
	if (op->req.opcode == VR_RING_CONNECT && !c->status)
		vb_conn_add(fe, c->conn, op->req.ep);
	vb_op_put(fe, slot);
	vb_respond(fe, &rsp);
}

/* ---------------------------------------------------------- requests */

/* Under vb.lock.  Returns 1 if answered later (slot taken), else the status. */
static int vb_post(struct vb_fe *fe, const struct vr_ring_req *req, struct vr_ring_rsp *rsp)
{
	struct vb_conn *c = NULL;
	struct vb_region *r;
	struct vb_ep *e;
	u32 slot, conn;
	int rc;

	if (!fe->nfree)
		return -EBUSY; /* cannot happen: at most size-1 requests outstanding */
	switch (req->opcode) {
	case VR_RING_WRITE:
	case VR_RING_READ:
	case VR_RING_SEND:
	case VR_RING_FADD:
	case VR_RING_CSWAP:
		c = vb_conn_of(fe, req->conn);
		if (!c)
			goto reject_inval; /* not a connection of this frontend */
		if (req->opcode <= VR_RING_SEND) {
			r = vb_region_of(fe, req->lkey);
			if (!r || r->ep != c->ep)
				goto reject_acces; /* not its region: bad key */
		}
		slot = vb_op_get(fe, req);
		break;
	case VR_RING_RECV:
		if (!vb_ep_of(fe, req->ep))
			goto reject_inval;
		r = vb_region_of(fe, req->lkey);
		if (!r || r->ep != req->ep)
			goto reject_acces;
		slot = vb_op_get(fe, req);
		break;
	case VR_RING_CONNECT:
		if (!vb_ep_of(fe, req->ep))
			goto reject_inval;
		slot = vb_op_get(fe, req);
		break;
	case VR_RING_ACCEPT:
		e = vb_ep_of(fe, req->ep);
		if (!e || !e->listen)
			goto reject_inval;
		if (e->nbacklog) {
			conn = e->backlog[0];
			e->nbacklog--;
			memmove(&e->backlog[0], &e->backlog[1], e->nbacklog * sizeof(u32));
			vb_conn_add(fe, conn, e->id);
			rsp->conn = conn;
			return 0;
		}
		slot = vb_op_get(fe, req);
		fe->ops[slot].seq = fe->accept_seq++;
		e->accepts++;
		return 1;
	case VR_RING_DISCONNECT:
		c = vb_conn_of(fe, req->conn);
		if (!c)
			goto reject_inval;
		c->used = false; /* forget first: its operations fail below */
		vr_svc_post(vb.eng, req, c->id, 0, &conn);
		return 0;
	default:
		goto reject_inval;
	}

	/* The slot is ready before the engine sees the cookie: a completion
	 * may come from inside the call. */
	if (req->opcode == VR_RING_CONNECT && vb_conns_held(fe) > fe->max_conns)
		rc = -ENOSPC; /* this request's slot already counts as one being opened */
	else
		rc = vr_svc_post(vb.eng, req, c ? c->id : 0, VB_COOKIE(fe, slot), &conn);
	if (rc) {
		vb_op_put(fe, slot);
		return rc;
	}
	return 1;

reject_inval:
	fe->rejected++;
	return -EINVAL;
reject_acces:
	fe->rejected++;
	return -EACCES;
}

static int vb_open_ep(struct vb_fe *fe, const struct vr_ring_req *req)
{
	const struct vr_svc_limits lim = { .endpoints = fe->max_eps };
	const struct vr_svc_usage use = { .endpoints = fe->neps };
	const char *why;
	u32 i;
	int rc;

	rc = vr_svc_check_open_ep(&lim, &use, req->ep, VB_ENG_ENDPOINTS, &why);
	if (rc)
		return rc;
	rc = vr_ep_open(vb.eng, req->ep,
			vr_svc_ep_weight(req->operand, fe->max_weight, fe->admin_weight),
			req->mask & 1);
	if (rc)
		return rc;
	for (i = 0; i < fe->max_eps; i++) {
		struct vb_ep *e = &fe->eps[i];

		if (!e->used) {
			memset(e, 0, sizeof(*e));
			e->used = true;
			e->id = req->ep;
			e->listen = req->mask & 1;
			break;
		}
	}
	fe->neps++;
	vb.nendpoints++;
	vb.ep_owner[req->ep] = fe;
	return 0;
}

/*
 * Under vb.lock: close endpoint e in the engine (its operations complete),
 * answer its posted ACCEPTs, forget its connections, and move its regions
 * (deregistered by the engine) to list for unmapping after the lock.
 */
static void vb_close_ep_locked(struct vb_fe *fe, struct vb_ep *e, struct list_head *list)
{
	struct vb_region *r, *tmp;
	u16 ep = e->id;
	u32 i;

	vr_ep_close(vb.eng, ep);
	for (i = 0; e->accepts && i < fe->size; i++) {
		if (fe->ops[i].req.opcode == VR_RING_ACCEPT && fe->ops[i].req.ep == ep) {
			e->accepts--;
			vb_op_fail(fe, i, -ECANCELED);
		}
	}
	for (i = 0; i < VB_ENG_CONNS; i++)
		if (fe->conns[i].used && fe->conns[i].ep == ep)
			fe->conns[i].used = false;
	list_for_each_entry_safe(r, tmp, &fe->regions, node) {
		if (r->ep != ep)
			continue;
		vr_dereg_mr(vb.eng, r->key); /* normally gone already: -ENOENT */
		list_move_tail(&r->node, list);
		fe->nregions--;
		fe->reg_bytes -= r->len;
		vb.nregions--;
	}
	e->used = false;
	e->nbacklog = 0;
	fe->neps--;
	vb.nendpoints--;
	if (ep < VB_ENG_ENDPOINTS && vb.ep_owner[ep] == fe)
		vb.ep_owner[ep] = NULL;
}

static int vb_close_ep(struct vb_fe *fe, u16 ep)
{
	struct vb_ep *e;
	LIST_HEAD(list);

	vb_lock();
	e = vb_ep_of(fe, ep);
	if (!e) {
		vb_unlock();
		return -ENOENT; /* not your endpoint */
	}
	vb_close_ep_locked(fe, e, &list);
	vb_unlock();
	vb_regions_release(&list, NULL, NULL);
	return 0;
}

static int vb_reg(struct vb_fe *fe, const struct vr_ring_req *req, u64 *key_out)
{
	u64 len = req->operand;
	u32 access = (u32)req->mask, key;
	struct vb_region *r;
	bool writable;
	int rc;

	const struct vr_svc_limits lim = {
		.regions = fe->max_regs, .registered_bytes = fe->max_bytes,
	};
	struct vr_svc_usage use;
	const char *why;

	vb_lock();
	use = (struct vr_svc_usage){
		.regions = fe->nregions, .registered_bytes = fe->reg_bytes,
	};
	rc = vr_svc_check_reg(&lim, &use, vb_ep_of(fe, req->ep) != NULL, len,
			      req->mask, &why);
	vb_unlock();
	if (!rc)
		rc = vr_svc_check_grant_reg(req->loff, len, req->swap, &why);
	if (rc)
		return rc;

	writable = vr_svc_reg_writable(access);
	rc = vb_region_map(fe->domid, (u32)req->tag, (u32)req->swap, (u32)req->loff, len,
			   writable, &r);
	if (rc)
		return rc;

	vb_lock();
	rc = vr_reg_mr(vb.eng, req->ep, r, len, access, &key);
	if (!rc) {
		r->key = key;
		r->ep = req->ep;
		list_add_tail(&r->node, &fe->regions);
		fe->nregions++;
		fe->reg_bytes += len;
		vb.nregions++;
	}
	vb_unlock();
	if (rc) {
		LIST_HEAD(list);

		list_add(&r->node, &list);
		vb_regions_release(&list, NULL, NULL);
		return rc;
	}
	*key_out = key;
	return 0;
}

static int vb_dereg(struct vb_fe *fe, u32 key)
{
	struct vb_region *r;
	LIST_HEAD(list);
	u32 n = 0;

	vb_lock();
	r = vb_region_of(fe, key);
	if (!r) {
		vb_unlock();
		return -ENOENT; /* not your region */
	}
	vr_dereg_mr(vb.eng, key); /* operations using it fail first */
	list_move(&r->node, &list);
	fe->nregions--;
	fe->reg_bytes -= r->len;
	vb.nregions--;
	vb_unlock();
	vb_regions_release(&list, &n, NULL);
	return n ? 0 : -EBUSY; /* -EBUSY: still mapped, the stack holds its pages */
}

static void vb_handle(struct vb_fe *fe, const struct vr_ring_req *req)
{
	struct vr_ring_rsp rsp;
	int rc;

	memset(&rsp, 0, sizeof(rsp));
	rsp.cookie = req->cookie;
	rsp.opcode = req->opcode;
	rsp.ep = req->ep;
	rsp.conn = req->conn;

	if (req->flags) {
		vb_lock();
		fe->rejected++;
		rc = -EINVAL;
	} else {
		switch (req->opcode) {
		case VR_RING_OPEN_EP:
			vb_lock();
			rc = vb_open_ep(fe, req);
			break;
		case VR_RING_CLOSE_EP:
			rc = vb_close_ep(fe, req->ep);
			vb_lock();
			break;
		case VR_RING_REG:
			rc = vb_reg(fe, req, &rsp.value);
			vb_lock();
			break;
		case VR_RING_DEREG:
			rc = vb_dereg(fe, req->lkey);
			vb_lock();
			break;
		default:
			vb_lock();
			rc = vb_post(fe, req, &rsp);
			if (rc == 1) {
				vb_unlock_unpumped();
				return;
			}
			break;
		}
	}
	rsp.status = rc;
	vb_respond(fe, &rsp);
	vb_unlock_unpumped(); /* vb_consume pumps once per batch */
}

/* ----------------------------------------------------------- the work */

static void vb_violation(struct vb_fe *fe, const char *what)
{
	vb_lock();
	fe->violations++;
	fe->broken = true;
	vb_unlock();
	pr_warn(VB_NAME ": dom%u broke the ring protocol (%s): disconnected\n", fe->domid, what);
	xenbus_dev_fatal(fe->dev, -EPROTO, "ring protocol violation: %s", what);
}

/* Consume requests until the ring is empty; returns whether any was taken. */
static bool vb_consume(struct vb_fe *fe)
{
	bool did = false;

	for (;;) {
		u32 prod, outstanding;

		if (READ_ONCE(fe->stopping) || fe->broken)
			return did;
		prod = VR_RING_READ(fe->shared->req_prod);
		vr_ring_rmb(); /* the index before the entries */
		if (prod - fe->req_cons > fe->size) {
			vb_violation(fe, "request producer index out of range");
			return did;
		}
		while (fe->req_cons != prod) {
			struct vr_ring_req req;

			if (READ_ONCE(fe->stopping))
				return did;
			spin_lock_bh(&vb.lock);
			outstanding = fe->req_cons - fe->rsp_prod_pvt;
			spin_unlock_bh(&vb.lock);
			if (outstanding >= fe->size - 1) {
				vb_violation(fe, "more than size-1 requests outstanding");
				return did;
			}
			/* Copy out first: the frontend can rewrite the entry at any time. */
			memcpy(&req, &fe->reqs[fe->req_cons & (fe->size - 1)], sizeof(req));
			barrier();
			fe->req_cons++;
			did = true;
			spin_lock_bh(&vb.lock);
			fe->requests++;
			spin_unlock_bh(&vb.lock);
			vb_handle(fe, &req);
			cond_resched();
		}
		/*
		 * One pump for the whole batch: what it posted leaves together,
		 * small frames to one peer in bundles.  The early returns above
		 * skip it only for a frontend that is stopping or broken, whose
		 * teardown closes its endpoints (and pumps).
		 */
		vb_lock();
		vb_unlock();
		if (vr_ring_final_check(&fe->shared->req_prod, &fe->shared->req_event,
					fe->req_cons) == fe->req_cons)
			return did;
	}
}

void vb_ring_work(struct work_struct *work)
{
	struct vb_fe *fe = container_of(work, struct vb_fe, work);
	bool did = false;

	if (!READ_ONCE(fe->stopping))
		did = vb_consume(fe);
	mutex_lock(&fe->irq_mutex);
	if (fe->irq_bound && atomic_xchg(&fe->eoi_pending, 0))
		xen_irq_lateeoi(fe->irq, did ? 0 : XEN_EOI_FLAG_SPURIOUS);
	mutex_unlock(&fe->irq_mutex);
}

/* ------------------------------------------------------- setup/teardown */

int vb_fe_ring_init(struct vb_fe *fe, u32 size)
{
	u32 i;

	fe->ops = kvcalloc(size, sizeof(*fe->ops), GFP_KERNEL);
	fe->op_free = kvcalloc(size, sizeof(*fe->op_free), GFP_KERNEL);
	if (!fe->ops || !fe->op_free) {
		kvfree(fe->ops);
		kvfree(fe->op_free);
		fe->ops = NULL;
		fe->op_free = NULL;
		return -ENOMEM;
	}
	for (i = 0; i < size; i++)
		fe->op_free[i] = (u16)(size - 1 - i);
	fe->nfree = size;
	return 0;
}

/*
 * Under vb.lock, requests stopped: close every endpoint of fe (the engine
 * fails their operations, which are answered), answer whatever still waits,
 * and hand its regions over for unmapping.
 */
void vb_fe_close_all(struct vb_fe *fe, struct list_head *regions, u32 *neps)
{
	struct vb_region *r, *tmp;
	u32 i;

	fe->tearing = true;
	for (i = 0; i < fe->max_eps; i++) {
		if (fe->eps[i].used) {
			vb_close_ep_locked(fe, &fe->eps[i], regions);
			(*neps)++;
		}
	}
	/* Connections outlive nothing: all belonged to the endpoints above. */
	for (i = 0; fe->ops && i < fe->size; i++)
		if (fe->ops[i].req.opcode)
			vb_op_fail(fe, i, -ECANCELED);
	list_for_each_entry_safe(r, tmp, &fe->regions, node) {
		vr_dereg_mr(vb.eng, r->key);
		list_move_tail(&r->node, regions);
		vb.nregions--;
	}
	fe->nregions = 0;
	fe->reg_bytes = 0;
}

void vb_fe_ring_free(struct vb_fe *fe)
{
	kvfree(fe->ops);
	kvfree(fe->op_free);
	fe->ops = NULL;
	fe->op_free = NULL;
	fe->nfree = 0;
}
