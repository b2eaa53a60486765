// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * chan.c - the shared ring to the backend: the op table (a slot names the
 * file and the application's cookie, or a waiting control call), posting,
 * the response work and failing everything when the backend goes away.
 *
 * A request's cookie on the shared ring is slot | generation << 32; a
 * response naming a free slot or an old generation is dropped.
 */
#include "vmrdma_front.h"
#include <linux/jiffies.h>
#include <linux/sched.h>
#include <xen/events.h>

static u64 vrf_cookie(u32 idx, u32 gen)
{
	return ((u64)gen << 32) | idx;
}

void vrf_chan_init(void)
{
	spin_lock_init(&vrf.lock);
	INIT_LIST_HEAD(&vrf.waiting);
	init_waitqueue_head(&vrf.slot_wq);
	INIT_WORK(&vrf.work, vrf_chan_work);
}

/* A new ring (state_lock held, not connected, no slot busy). */
void vrf_chan_reset(struct vr_ring_shared *sh)
{
	spin_lock(&vrf.lock);
	vrf.sh = sh;
	vrf.reqs = (struct vr_ring_req *)((char *)sh + vr_ring_req_off());
	vrf.rsps = (struct vr_ring_rsp *)((char *)sh + vr_ring_rsp_off(VRF_RING_SIZE));
	vrf.req_prod_pvt = 0;
	vrf.rsp_cons = 0;
	vrf.broken = false;
	spin_unlock(&vrf.lock);
}

bool vrf_chan_live(u32 epoch)
{
	bool live;

	spin_lock(&vrf.lock);
	live = vrf.connected && vrf.epoch == epoch;
	spin_unlock(&vrf.lock);
	return live;
}

/* vrf.lock held. */
static int vrf_slot_find(void)
{
	u32 i;

	for (i = 0; i < VRF_NSLOTS; i++)
		if (!vrf.slots[i].busy)
			return (int)i;
	return -1;
}

/* vrf.lock held, connected: copy into the shared ring and publish. */
static void vrf_post_locked(const struct vr_ring_req *req)
{
	struct vr_ring_req *dst = &vrf.reqs[vrf.req_prod_pvt & (VRF_RING_SIZE - 1)];

	memcpy(dst, req, sizeof(*dst));
	vrf.req_prod_pvt++;
	if (vr_ring_push(&vrf.sh->req_prod, &vrf.sh->req_event, vrf.req_prod_pvt))
		notify_remote_via_irq(vrf.irq);
}

/*
 * vrf.lock held: free a slot; returns the file reference a data slot held
 * (the caller drops it without vrf.lock).
 */
static struct vrf_file *vrf_slot_free(struct vrf_slot *s)
{
	struct vrf_file *f = s->file;

	s->busy = 0;
	s->file = NULL;
	s->wait = NULL;
	s->conn = NULL;
	vrf.nr_busy--;
	if (!s->ctl) {
		vrf.nr_data--;
		if (f)
			f->inflight--;
	}
	return f;
}

static int vrf_try_ctl(u32 epoch, struct vr_ring_req *req, struct vrf_wait *w)
{
	struct vrf_slot *s;
	int idx;

	spin_lock(&vrf.lock);
	if (!vrf.connected || vrf.epoch != epoch) {
		spin_unlock(&vrf.lock);
		return -ESHUTDOWN;
	}
	idx = vrf_slot_find();
	if (idx < 0) {
		spin_unlock(&vrf.lock);
		return -EAGAIN;
	}
	s = &vrf.slots[idx];
	s->busy = 1;
	s->ctl = 1;
	s->gen++;
	s->wait = w;
	s->file = NULL;
	s->conn = NULL;
	s->opcode = req->opcode;
	s->ep = req->ep;
	vrf.nr_busy++;
	w->slot = (u32)idx;
	req->cookie = vrf_cookie((u32)idx, s->gen);
	vrf_post_locked(req);
	spin_unlock(&vrf.lock);
	return 0;
}

static bool vrf_slot_available(void)
{
	return READ_ONCE(vrf.nr_busy) < VRF_NSLOTS || !READ_ONCE(vrf.connected);
}

/*
 * A control request (OPEN_EP, CLOSE_EP, REG, DEREG): post it and sleep for
 * its response, at most VRF_TIMEOUT in all.  Returns 0 and *rsp (whose
 * status is the backend's), -ESHUTDOWN (no backend, or it went away) or
 * -ETIMEDOUT (the slot is abandoned: its late response is dropped).
 */
int vrf_chan_call(u32 epoch, struct vr_ring_req *req, struct vr_ring_rsp *rsp)
{
	unsigned long deadline = jiffies + VRF_TIMEOUT;
	struct vrf_wait w;
	long left;
	int ret;

	init_completion(&w.done);
	for (;;) {
		ret = vrf_try_ctl(epoch, req, &w);
		if (ret != -EAGAIN)
			break;
		left = (long)(deadline - jiffies);
		if (left <= 0)
			return -ETIMEDOUT;
		wait_event_timeout(vrf.slot_wq, vrf_slot_available(), left);
	}
	if (ret)
		return ret;
	left = (long)(deadline - jiffies);
	if (left < 1)
		left = 1;
	if (!wait_for_completion_timeout(&w.done, (unsigned long)left)) {
		spin_lock(&vrf.lock);
		if (!completion_done(&w.done)) {
			vrf.slots[w.slot].wait = NULL; /* a late response is dropped */
			ret = -ETIMEDOUT;
		}
		spin_unlock(&vrf.lock);
		if (ret)
			return ret;
	}
	/* Completed under vrf.lock: w.rsp is complete. */
	*rsp = w.rsp;
	if (rsp->status == -ESHUTDOWN && !vrf_chan_live(epoch))
		return -ESHUTDOWN;
	return 0;
}

/* vrf.lock held. */
static void vrf_wait_slot_locked(struct vrf_file *f)
{
	if (f->waiting)
		return;
	f->waiting = true;
	kref_get(&f->ref);
	list_add_tail(&f->wait_node, &vrf.waiting);
}

/*
 * A validated data request of file f.  Returns 0 (posted: the slot keeps
 * the application's cookie and conn), -EAGAIN (no slot: f waits and is
 * resumed when responses free slots) or -ESHUTDOWN.
 */
int vrf_chan_post_data(struct vrf_file *f, struct vr_ring_req *req, struct vrf_conn *conn)
{
	struct vrf_slot *s;
	int idx = -1;

	spin_lock(&vrf.lock);
	if (!vrf.connected || vrf.epoch != f->epoch) {
		spin_unlock(&vrf.lock);
		return -ESHUTDOWN;
	}
	if (vrf.nr_data < VRF_NSLOTS - VRF_CTL_RESERVE && f->inflight < VRF_FILE_MAX_INFLIGHT)
		idx = vrf_slot_find();
	if (idx < 0) {
		vrf_wait_slot_locked(f);
		spin_unlock(&vrf.lock);
		return -EAGAIN;
	}
	s = &vrf.slots[idx];
	s->busy = 1;
	s->ctl = 0;
	s->gen++;
	s->wait = NULL;
	kref_get(&f->ref);
	s->file = f;
	s->conn = conn;
	s->cookie = req->cookie;
	s->conn_handle = req->conn;
	s->opcode = req->opcode;
	s->ep = req->ep;
	vrf.nr_busy++;
	vrf.nr_data++;
	f->inflight++;
	req->cookie = vrf_cookie((u32)idx, s->gen);
	vrf_post_locked(req);
	spin_unlock(&vrf.lock);
	return 0;
}

/* A released file leaves the waiting list. */
void vrf_chan_unwait(struct vrf_file *f)
{
	bool put = false;

	spin_lock(&vrf.lock);
	if (f->waiting) {
		list_del_init(&f->wait_node);
		f->waiting = false;
		put = true;
	}
	spin_unlock(&vrf.lock);
	if (put)
		kref_put(&f->ref, vrf_file_free);
}

/* Files that waited for a slot consume their rings again (once each). */
static void vrf_chan_resume(void)
{
	LIST_HEAD(todo);
	struct vrf_file *f;

	spin_lock(&vrf.lock);
	list_splice_init(&vrf.waiting, &todo);
	for (;;) {
		f = list_first_entry_or_null(&todo, struct vrf_file, wait_node);
		if (!f)
			break;
		list_del_init(&f->wait_node);
		f->waiting = false;
		spin_unlock(&vrf.lock);
		vrf_file_consume(f);
		kref_put(&f->ref, vrf_file_free);
		spin_lock(&vrf.lock);
	}
	spin_unlock(&vrf.lock);
}

/* Route a data response (the slot's fields, taken under vrf.lock). */
static void vrf_route(struct vrf_file *f, struct vr_ring_rsp *rsp, u64 cookie, u8 opcode,
		      u16 ep, struct vrf_conn *conn)
{
	rsp->cookie = cookie;
	rsp->opcode = opcode;
	rsp->ep = ep;
	vrf_file_deliver(f, rsp, conn);
	kref_put(&f->ref, vrf_file_free);
}

/* Drain the shared response ring. */
static void vrf_chan_drain(void)
{
	struct vr_ring_rsp rsp;
	struct vrf_slot *s;
	struct vrf_file *f;
	struct vrf_conn *conn;
	u64 cookie;
	u32 prod, idx, gen;
	u16 ep;
	u8 opcode;

	for (;;) {
		spin_lock(&vrf.lock);
		if (!vrf.connected || vrf.broken) {
			spin_unlock(&vrf.lock);
			return;
		}
		prod = VR_RING_READ(vrf.sh->rsp_prod);
		vr_ring_rmb(); /* the index before the entries */
		if (prod - vrf.rsp_cons > vrf.req_prod_pvt - vrf.rsp_cons) {
			vrf.broken = true;
			spin_unlock(&vrf.lock);
			pr_err("the backend broke the ring protocol (response producer %u, consumer %u, requests %u): ring stopped\n",
			       prod, vrf.rsp_cons, vrf.req_prod_pvt);
			return;
		}
		if (prod == vrf.rsp_cons) {
			prod = vr_ring_final_check(&vrf.sh->rsp_prod, &vrf.sh->rsp_event,
						   vrf.rsp_cons);
			spin_unlock(&vrf.lock);
			if (prod == vrf.rsp_cons)
				return;
			continue;
		}
		/* Copy, then validate the copy. */
		memcpy(&rsp, &vrf.rsps[vrf.rsp_cons & (VRF_RING_SIZE - 1)], sizeof(rsp));
		barrier();
		vrf.rsp_cons++;
		idx = (u32)rsp.cookie;
		gen = (u32)(rsp.cookie >> 32);
		if (idx >= VRF_NSLOTS || !vrf.slots[idx].busy || vrf.slots[idx].gen != gen) {
			spin_unlock(&vrf.lock);
			pr_warn_ratelimited("response with an unknown cookie %llx dropped\n",
					    (unsigned long long)rsp.cookie);
			continue;
		}
		s = &vrf.slots[idx];
		if (s->ctl) {
			if (s->wait) {
				rsp.opcode = s->opcode;
				s->wait->rsp = rsp;
				complete(&s->wait->done);
			}
			vrf_slot_free(s);
			spin_unlock(&vrf.lock);
			wake_up(&vrf.slot_wq);
			continue;
		}
		cookie = s->cookie;
		opcode = s->opcode;
		ep = s->ep;
		conn = s->conn;
		f = vrf_slot_free(s);
		spin_unlock(&vrf.lock);
		wake_up(&vrf.slot_wq);
		vrf_route(f, &rsp, cookie, opcode, ep, conn);
	}
}

void vrf_chan_work(struct work_struct *work)
{
	vrf_chan_drain();
	vrf_chan_resume();
}

/*
 * The backend is gone (not connected any more, irq unbound, work
 * cancelled): every outstanding request fails with -ESHUTDOWN, waiting
 * files are answered -ESHUTDOWN by their next consumption.
 */
void vrf_chan_fail_all(void)
{
	struct vr_ring_rsp rsp;
	struct vrf_slot *s;
	struct vrf_file *f;
	struct vrf_conn *conn;
	u64 cookie;
	u32 i;
	u16 ep;
	u8 opcode;

	for (i = 0; i < VRF_NSLOTS; i++) {
		memset(&rsp, 0, sizeof(rsp));
		rsp.status = -ESHUTDOWN;
		spin_lock(&vrf.lock);
		s = &vrf.slots[i];
		if (!s->busy) {
			spin_unlock(&vrf.lock);
			continue;
		}
		if (s->ctl) {
			if (s->wait) {
				rsp.cookie = vrf_cookie(i, s->gen);
				rsp.opcode = s->opcode;
				s->wait->rsp = rsp;
				complete(&s->wait->done);
			}
			vrf_slot_free(s);
			spin_unlock(&vrf.lock);
			continue;
		}
		cookie = s->cookie;
		opcode = s->opcode;
		ep = s->ep;
		rsp.conn = s->conn_handle;
		conn = s->conn;
		f = vrf_slot_free(s);
		spin_unlock(&vrf.lock);
		vrf_route(f, &rsp, cookie, opcode, ep, conn);
	}
	wake_up_all(&vrf.slot_wq);
	vrf_chan_resume();
}
