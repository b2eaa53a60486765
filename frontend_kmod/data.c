// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * data.c - a file's data path: consume its request ring (copy, then
 * validate the copy against the file's own endpoints, regions and
 * connections), forward valid requests to the shared ring, answer invalid
 * ones at once, and deliver the backend's responses into its response ring.
 */
#include "vmrdma_front.h"
#include <linux/eventfd.h>
#include <linux/slab.h>

/* f->lock held, not dead: one response into the file's ring. */
static void vrf_push_locked(struct vrf_file *f, const struct vr_ring_rsp *rsp)
{
	memcpy(&f->rsps[f->rsp_prod_pvt & (f->size - 1)], rsp, sizeof(*rsp));
	f->rsp_prod_pvt++;
	vr_ring_push(&f->sh->rsp_prod, &f->sh->rsp_event, f->rsp_prod_pvt);
	/* Always: a spurious wakeup costs less than a lost one. */
	eventfd_signal(f->efd, 1);
}

/*
 * The response to one of f's requests.  A successful CONNECT/ACCEPT makes
 * its connection f's (conn: preallocated at submission).  Responses for a
 * released file are dropped.
 */
void vrf_file_deliver(struct vrf_file *f, const struct vr_ring_rsp *rsp, struct vrf_conn *conn)
{
	spin_lock(&f->lock);
	if (f->dead) {
		spin_unlock(&f->lock);
		kfree(conn);
		return;
	}
	if (conn && rsp->status == 0 &&
	    (rsp->opcode == VR_RING_CONNECT || rsp->opcode == VR_RING_ACCEPT)) {
		conn->handle = rsp->conn;
		list_add_tail(&conn->node, &f->conns);
		conn = NULL;
	}
	vrf_push_locked(f, rsp);
	spin_unlock(&f->lock);
	kfree(conn);
}

/* f->lock held. */
static struct vrf_conn *vrf_conn_find(struct vrf_file *f, u32 handle)
{
	struct vrf_conn *c;

	list_for_each_entry(c, &f->conns, node)
		if (c->handle == handle)
			return c;
	return NULL;
}

/* f->lock held. */
static bool vrf_key_owned(struct vrf_file *f, u64 key, u16 ep)
{
	struct vrf_region *r = vrf_region_find(f, key);

	return r && r->ep == ep;
}

/* The single check of a data request against f's own objects. */
static int vrf_validate(struct vrf_file *f, const struct vr_ring_req *req)
{
	struct vrf_conn *c;
	int st = 0;

	if (req->flags != 0)
		return -EINVAL;
	spin_lock(&f->lock);
	switch (req->opcode) {
	case VR_RING_WRITE:
	case VR_RING_READ:
	case VR_RING_SEND:
		c = vrf_conn_find(f, req->conn);
		if (!c)
			st = -EINVAL;
		else if (!vrf_key_owned(f, req->lkey, c->ep))
			st = -EACCES;
		break;
	case VR_RING_RECV:
		if (!vrf_ep_owned(f, req->ep))
			st = -EINVAL;
		else if (!vrf_key_owned(f, req->lkey, req->ep))
			st = -EACCES;
		break;
	case VR_RING_FADD:
	case VR_RING_CSWAP:
	case VR_RING_DISCONNECT:
	case VR_RING_CLOSED:
		if (!vrf_conn_find(f, req->conn))
			st = -EINVAL;
		break;
	case VR_RING_CONNECT:
	case VR_RING_ACCEPT:
	case VR_RING_ACCEPT_DATA:
	case VR_RING_NAME:
	case VR_RING_RESOLVE:
	case VR_RING_AUTH_KEY:
		if (!vrf_ep_owned(f, req->ep))
			st = -EINVAL;
		/* private data or a name, in one of the endpoint's regions */
		else if ((req->len || ((req->opcode == VR_RING_CONNECT ||
					req->opcode == VR_RING_ACCEPT) && req->operand)) &&
			 !vrf_key_owned(f, req->lkey, req->ep))
			st = -EACCES;
		break;
	case VR_RING_LISTEN:
	case VR_RING_PD_ALLOC:
	case VR_RING_PD_FREE:
		/* only its own endpoint; the backend's engine ties a domain to it */
		if (!vrf_ep_owned(f, req->ep))
			st = -EINVAL;
		break;
	case VR_RING_PD_BIND:
		c = req->conn ? vrf_conn_find(f, req->conn) : NULL;
		if (!vrf_ep_owned(f, req->ep) || (req->conn && (!c || c->ep != req->ep)))
			st = -EINVAL;
		else if (req->lkey && !vrf_key_owned(f, req->lkey, req->ep))
			st = -EACCES;
		break;
	default: /* control opcodes are not the application's */
		st = -EINVAL;
		break;
	}
	spin_unlock(&f->lock);
	return st;
}

/* After DISCONNECT is posted the handle is no longer f's. */
static void vrf_conn_forget(struct vrf_file *f, u32 handle)
{
	struct vrf_conn *c;

	spin_lock(&f->lock);
	c = vrf_conn_find(f, handle);
	if (c)
		list_del(&c->node);
	spin_unlock(&f->lock);
	kfree(c);
}

/* Returns 0 (consumed: posted or answered) or -EAGAIN (no slot, retry later). */
static int vrf_submit(struct vrf_file *f, struct vr_ring_req *req)
{
	struct vrf_conn *conn = NULL;
	struct vr_ring_rsp rsp;
	u64 cookie = req->cookie;
	int st;

	st = vrf_validate(f, req);
	if (!st && (req->opcode == VR_RING_CONNECT || req->opcode == VR_RING_ACCEPT)) {
		conn = kzalloc(sizeof(*conn), GFP_KERNEL);
		if (conn)
			conn->ep = req->ep;
		else
			st = -ENOMEM;
	}
	if (!st) {
		req->reserved0 = 0;
		st = vrf_chan_post_data(f, req, conn);
		if (st == -EAGAIN) {
			kfree(conn);
			return -EAGAIN;
		}
		if (!st) {
			if (req->opcode == VR_RING_DISCONNECT)
				vrf_conn_forget(f, req->conn);
			return 0;
		}
		kfree(conn);
	}
	memset(&rsp, 0, sizeof(rsp));
	rsp.cookie = cookie;
	rsp.status = st;
	rsp.opcode = req->opcode;
	rsp.ep = req->ep;
	rsp.conn = req->conn;
	vrf_file_deliver(f, &rsp, NULL);
	return 0;
}

static void vrf_violation(struct vrf_file *f, const char *what)
{
	f->broken = true;
	pr_warn_ratelimited("pid %d broke the ring protocol (%s): its requests are ignored\n",
			    task_tgid_nr(current), what);
}

/*
 * Consume f's request ring (VR_IOC_KICK, or resumed when slots freed).
 * Returns 0, or -EPROTO when f broke the ring protocol (now or before).
 */
int vrf_file_consume(struct vrf_file *f)
{
	struct vr_ring_req req;
	const char *broken;
	u32 prod;
	int ret = 0;

	mutex_lock(&f->req_lock);
	if (f->broken) {
		ret = -EPROTO;
		goto out;
	}
	if (f->dead || !smp_load_acquire(&f->hello))
		goto out;
	for (;;) {
		prod = VR_RING_READ(f->sh->req_prod);
		vr_ring_rmb(); /* the index before the entries */
		broken = vr_ring_check_prod(prod, f->req_cons, f->size);
		if (broken) {
			vrf_violation(f, broken);
			ret = -EPROTO;
			goto out;
		}
		while (f->req_cons != prod) {
			spin_lock(&f->lock);
			broken = vr_ring_check_outstanding(f->req_cons, f->rsp_prod_pvt, f->size);
			spin_unlock(&f->lock);
			if (broken) {
				vrf_violation(f, broken);
				ret = -EPROTO;
				goto out;
			}
			/* Copy out first: the application can rewrite the entry any time. */
			memcpy(&req, &f->reqs[f->req_cons & (f->size - 1)], sizeof(req));
			barrier();
			if (vrf_submit(f, &req) == -EAGAIN)
				goto out; /* resumed by the response work */
			f->req_cons++;
		}
		if (vr_ring_final_check(&f->sh->req_prod, &f->sh->req_event, f->req_cons) ==
		    f->req_cons)
			break;
	}
out:
	mutex_unlock(&f->req_lock);
	return ret;
}
