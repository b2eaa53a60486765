// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * vb_ring.c - one frontend's request ring.  The work item consumes
 * requests (producer index read once per pass, each entry copied out of
 * shared memory before it is looked at) and hands each to the frontend
 * service (proto/frontend.h), which checks it against the frontend's own
 * endpoints, connections and regions, posts it to the engine and answers
 * it exactly once: at once, or from the engine's completion (vb_complete).
 * What stays here is the kernel's part: the ring, the grant mappings of
 * regions, which frontend owns an engine endpoint, and the locking.
 */
#include <linux/kernel.h>
#include <linux/sched.h>
#include <linux/slab.h>
#include <xen/events.h>

#include "vb.h"

/* ------------------------------------------------------------ lookups */

static struct vb_fe *vb_fe_find(u32 id)
{
	struct vb_fe *fe;

	list_for_each_entry(fe, &vb.frontends, node)
		if (fe->id == id)
			return fe;
	return NULL;
}

static struct vb_fe *vb_ep_owner(u16 ep)
{
	return ep < VB_ENG_ENDPOINTS ? vb.ep_owner[ep] : NULL;
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

/* ---------------------------------------------------------- admission */

/*
 * Under vb.lock: whether fe may hand req to the engine now, by
 * proto/service.h's rule (vr_svc_admissible) over this backend's frontends
 * (which of them share the budget: vr_fe_contending_weight).
 */
static bool vb_admissible(struct vb_fe *fe, const struct vr_ring_req *req)
{
	struct vb_fe *g;
	u64 active = 0;

	if (!vb_inflight_bytes || !vr_svc_is_bulk(req->opcode))
		return true;
	list_for_each_entry(g, &vb.frontends, node)
		active += vr_fe_contending_weight(&g->svc, g == fe, g->admission_wait);
	return vr_svc_admissible(vb_inflight_bytes, fe->svc.bulk_inflight, req->len,
				 vr_fe_weight(&fe->svc), active);
}

/* Under vb.lock: fe's next request waits (or no longer does). */
static void vb_admission_wait(struct vb_fe *fe, bool wait)
{
	if (fe->admission_wait == wait)
		return;
	fe->admission_wait = wait;
	if (wait) {
		vb.admission_waiters++;
		vb.admission_waits++;
	} else {
		vb.admission_waiters--;
	}
}

/*
 * Under vb.lock: bulk bytes left the engine, so the frontends waiting for
 * admission look at their rings again.  Each stays waiting (and counts as
 * active for the others' shares) until its work takes the request.
 */
static void vb_admission_kick(void)
{
	struct vb_fe *g;

	list_for_each_entry(g, &vb.frontends, node)
		if (g->admission_wait && !g->stopping)
			queue_work(vb.wq, &g->work);
}

/* The service's answers (proto/frontend.h host.respond), under vb.lock. */
void vb_svc_respond(void *ctx, const struct vr_svc_pending *req, const struct vr_ring_rsp *rsp)
{
	vb_respond(ctx, rsp);
	/* The service has taken its bytes off the frontend's bulk_inflight. */
	if (vb.admission_waiters && vr_svc_is_bulk(req->opcode))
		vb_admission_kick();
}

/* The service hands a region back: unmapped after the lock is dropped. */
static void vb_svc_release(void *ctx, void *host)
{
	struct vb_region *r = host;

	list_move_tail(&r->node, ctx);
	vb.nregions--;
}

/* ------------------------------------------------------ engine callbacks */

/* Engine accept policy: only endpoints a live frontend listens on, with room. */
int vb_accept(void *ctx, u16 ep, const u8 peer_mac[6], u16 peer_ep)
{
	struct vb_fe *fe = vb_ep_owner(ep);

	if (!fe || fe->stopping)
		return -ECONNREFUSED;
	return vr_fe_accept_policy(&fe->svc, ep);
}

/* Engine completion, under vb.lock: the frontend whose request caused it answers. */
void vb_complete(void *ctx, const struct vr_completion *c)
{
	struct vb_fe *fe;

	if (c->op == VR_WC_DISCONNECT) {
		/* The connection is in error: its next operations fail, and the
		 * owner's CLOSED requests for it are answered. */
		fe = vb_ep_owner(c->ep);
		if (fe && fe->svc.slots)
			vr_fe_conn_failed(&fe->svc, c->conn, c->status);
		return;
	}
	if (c->op == VR_WC_ACCEPT) {
		fe = vb_ep_owner(c->ep);
		if (fe)
			vr_fe_accepted(&fe->svc, c->ep, c->conn);
		else
			vb.stray_completions++; /* vb_accept refused it: cannot happen */
		return;
	}
	fe = vb_fe_find((u32)(c->cookie >> 32));
	if (!fe || !fe->svc.slots || !vr_fe_complete(&fe->svc, c))
		vb.stray_completions++;
}

/* ---------------------------------------------------------- control */

static int vb_open_ep(struct vb_fe *fe, const struct vr_ring_req *req)
{
	const char *why;
	int rc;

	rc = vr_fe_open_ep(&fe->svc, req->ep, req->operand, req->mask & 1, &why);
	if (rc) {
		pr_debug(VB_NAME ": dom%u: OPEN_EP %u refused: %s\n", fe->domid, req->ep, why);
		return rc;
	}
	vb.nendpoints++;
	vb.ep_owner[req->ep] = fe;
	return 0;
}

/*
 * Under vb.lock: the service closes endpoint ep in the engine (its
 * operations complete), answers its ACCEPTs, forgets its connections and
 * moves its regions to list for unmapping after the lock.
 */
static int vb_close_ep_locked(struct vb_fe *fe, u16 ep, struct list_head *list)
{
	int rc = vr_fe_close_ep(&fe->svc, ep, vb_svc_release, list);

	if (rc)
		return rc; /* not its endpoint */
	vb.nendpoints--;
	if (vb_ep_owner(ep) == fe)
		vb.ep_owner[ep] = NULL;
	return 0;
}

static int vb_close_ep(struct vb_fe *fe, u16 ep)
{
	LIST_HEAD(list);
	int rc;

	vb_lock();
	rc = vb_close_ep_locked(fe, ep, &list);
	vb_unlock();
	vb_regions_release(&list, NULL, NULL);
	return rc;
}

static int vb_reg(struct vb_fe *fe, const struct vr_ring_req *req, u64 *key_out)
{
	u64 len = req->operand;
	u32 access = (u32)req->mask;
	u64 key;
	struct vb_region *r;
	const char *why;
	bool writable;
	int rc;

	vb_lock();
	rc = vr_fe_check_reg(&fe->svc, req->ep, len, req->mask, &why);
	vb_unlock();
	if (!rc)
		rc = vr_svc_check_grant_reg(req->loff, len, req->swap, &why);
	if (rc) {
		pr_debug(VB_NAME ": dom%u: REG refused: %s\n", fe->domid, why);
		return rc;
	}

	writable = vr_svc_reg_writable(access);
	rc = vb_region_map(fe->domid, (u32)req->tag, (u32)req->swap, (u32)req->loff, len,
			   writable, &r);
	if (rc)
		return rc;

	vb_lock();
	/* Checked again: the frontend may have closed the endpoint meanwhile. */
	rc = vr_fe_check_reg(&fe->svc, req->ep, len, req->mask, &why);
	if (!rc)
		rc = vr_fe_add_region(&fe->svc, req->ep, r, r, len, access, writable, &key);
	if (!rc) {
		r->key = key;
		r->ep = req->ep;
		list_add_tail(&r->node, &fe->regions);
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

static int vb_dereg(struct vb_fe *fe, u64 key)
{
	LIST_HEAD(list);
	void *host;
	u32 n = 0;
	int rc;

	vb_lock();
	rc = vr_fe_dereg(&fe->svc, key, &host); /* operations using it fail first */
	if (!rc)
		vb_svc_release(&list, host);
	vb_unlock();
	if (rc)
		return rc; /* not its region */
	vb_regions_release(&list, &n, NULL);
	return n ? 0 : -EBUSY; /* -EBUSY: still mapped, the stack holds its pages */
}

static void vb_handle(struct vb_fe *fe, const struct vr_ring_req *req)
{
	struct vr_ring_rsp rsp;
	int rc;

	vr_svc_rsp_init(&rsp, req->cookie, req->opcode, req->ep, req->conn);

	if (req->flags) {
		vb_lock();
		fe->svc.rejected++;
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
			rc = vr_fe_request(&fe->svc, req, &rsp);
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
		const char *broken;
		u32 prod;

		if (READ_ONCE(fe->stopping) || fe->broken)
			return did;
		prod = VR_RING_READ(fe->shared->req_prod);
		vr_ring_rmb(); /* the index before the entries */
		broken = vr_ring_check_prod(prod, fe->req_cons, fe->size);
		if (broken) {
			vb_violation(fe, broken);
			return did;
		}
		while (fe->req_cons != prod) {
			struct vr_ring_req req;

			if (READ_ONCE(fe->stopping))
				return did;
			spin_lock_bh(&vb.lock);
			broken = vr_ring_check_outstanding(fe->req_cons, fe->rsp_prod_pvt, fe->size);
			spin_unlock_bh(&vb.lock);
			if (broken) {
				vb_violation(fe, broken);
				return did;
			}
			/* Copy out first: the frontend can rewrite the entry at any time. */
			memcpy(&req, &fe->reqs[fe->req_cons & (fe->size - 1)], sizeof(req));
			barrier();
			spin_lock_bh(&vb.lock);
			if (!vb_admissible(fe, &req)) {
				/*
				 * Beyond its share: the request stays in the ring,
				 * holding back the later ones, until bytes come back
				 * (vb_admission_kick).  What this pass posted leaves.
				 */
				vb_admission_wait(fe, true);
				spin_unlock_bh(&vb.lock);
				vb_lock();
				vb_unlock();
				return true; /* requests wait: not a spurious event */
			}
			vb_admission_wait(fe, false);
			fe->requests++;
			spin_unlock_bh(&vb.lock);
			fe->req_cons++;
			did = true;
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
	fe->svc.slots = kvcalloc(size, sizeof(*fe->svc.slots), GFP_KERNEL);
	fe->svc.free_slots = kvcalloc(size, sizeof(*fe->svc.free_slots), GFP_KERNEL);
	if (!fe->svc.slots || !fe->svc.free_slots) {
		vb_fe_ring_free(fe);
		return -ENOMEM;
	}
	fe->svc.size = size;
	vr_fe_init(&fe->svc);
	return 0;
}

/*
 * Under vb.lock, requests stopped: close every endpoint of fe (the engine
 * fails their operations, which are answered), answer whatever still waits,
 * and hand its regions over for unmapping.
 */
void vb_fe_close_all(struct vb_fe *fe, struct list_head *regions, u32 *neps)
{
	u32 i;

	fe->tearing = true;
	vb_admission_wait(fe, false);
	for (i = 0; i < fe->svc.eps_cap; i++) {
		u16 ep = fe->svc.eps[i].id;

		if (!fe->svc.eps[i].used)
			continue;
		(*neps)++;
		vb.nendpoints--;
		if (vb_ep_owner(ep) == fe)
			vb.ep_owner[ep] = NULL;
	}
	vr_fe_close_all(&fe->svc, vb_svc_release, regions);
}

void vb_fe_ring_free(struct vb_fe *fe)
{
	kvfree(fe->svc.slots);
	kvfree(fe->svc.free_slots);
	fe->svc.slots = NULL;
	fe->svc.free_slots = NULL;
	fe->svc.size = 0;
	fe->svc.nfree = 0;
}
