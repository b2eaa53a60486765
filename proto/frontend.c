// SPDX-License-Identifier: GPL-2.0 OR MIT
/* frontend.c - one frontend's tables and data path in a backend (frontend.h). */
#include "frontend.h"

#define VR_FE_COOKIE(fe, slot) (((u64)(fe)->id << 32) | (slot))

/* ------------------------------------------------------------ lookups */

static struct vr_fe_ep *ep_of(struct vr_fe *fe, u16 ep)
{
	return (struct vr_fe_ep *)vr_fe_ep_of(fe, ep);
}

static struct vr_fe_conn *conn_of(struct vr_fe *fe, u32 handle)
{
	u32 i;

	if (!handle)
		return NULL;
	for (i = 0; i < fe->conns_cap; i++)
		if (fe->conns[i].used && fe->conns[i].handle == handle)
			return &fe->conns[i];
	return NULL;
}

static struct vr_fe_region *region_of(struct vr_fe *fe, u64 key)
{
	u32 i;

	for (i = 0; i < fe->regions_cap; i++)
		if (fe->regions[i].used && fe->regions[i].key == key)
			return &fe->regions[i];
	return NULL;
}

/* Connections held or being opened: its share of the engine's table. */
static u32 conns_held(const struct vr_fe *fe)
{
	u32 i, n = fe->nconns;

	for (i = 0; i < fe->size; i++)
		n += fe->slots[i].req.opcode == VR_RING_CONNECT;
	return n;
}

/* Records engine connection `id` under a new handle; 0 if there is no
 * room (the connection is then closed). */
static u32 conn_add(struct vr_fe *fe, u32 id, u16 ep, const u8 *peer_mac, u16 peer_ep,
		    bool accepted)
{
	struct vr_fe_conn *c = NULL;
	u32 i;

	for (i = 0; i < fe->conns_cap && !c; i++)
		if (!fe->conns[i].used)
			c = &fe->conns[i];
	if (!c || fe->nconns >= fe->max_conns) {
		vr_disconnect(fe->eng, id);
		return 0;
	}
	do {
		if (++fe->next_handle == 0)
			fe->next_handle = 1;
	} while (conn_of(fe, fe->next_handle));
	memset(c, 0, sizeof(*c));
	c->used = true;
	c->handle = fe->next_handle;
	c->id = id;
	c->ep = ep;
	c->accepted = accepted;
	c->peer_ep = peer_ep;
	if (peer_mac)
		memcpy(c->peer_mac, peer_mac, 6);
	fe->nconns++;
	return c->handle;
}

/* An accepted connection: recorded with its peer, whose address the
 * ACCEPT's answer carries in value (vr_peer_word), as the engine's ACCEPT
 * completion does.  0 if there is no room. */
static u32 accepted_add(struct vr_fe *fe, u32 id, u16 ep, u64 *peer)
{
	u8 mac[6];
	u16 peer_ep;

	if (vr_conn_peer(fe->eng, id, mac, &peer_ep)) {
		vr_disconnect(fe->eng, id); /* gone already: cannot happen */
		return 0;
	}
	*peer = vr_peer_word(mac, peer_ep);
	return conn_add(fe, id, ep, mac, peer_ep, true);
}

static void closed_answer(struct vr_fe *fe, u32 handle, int status, u64 why);

static void conn_forget(struct vr_fe *fe, struct vr_fe_conn *c)
{
	c->used = false;
	fe->nconns--;
	closed_answer(fe, c->handle, -ECANCELED, 0); /* closed here: nothing to wait for */
}

/* ------------------------------------------------------------ slots */

static void slot_fill(struct vr_fe_slot *s, const struct vr_ring_req *req)
{
	memset(s, 0, sizeof(*s));
	s->req.cookie = req->cookie;
	s->req.opcode = req->opcode;
	s->req.ep = req->ep;
	s->req.conn = req->conn;
	s->req.len = req->len;
	if (req->opcode == VR_RING_CONNECT || req->opcode == VR_RING_ACCEPT) {
		s->req.lkey = req->lkey;
		s->req.loff = req->loff;
		s->req.room = req->operand;
	}
}

static u32 slot_get(struct vr_fe *fe, const struct vr_ring_req *req)
{
	u32 slot = fe->free_slots[--fe->nfree];

	slot_fill(&fe->slots[slot], req);
	return slot;
}

/* A request that names a small buffer (private data, a name) in its own
 * region: the region is the endpoint's, and writable where something will
 * be written back.  The engine checks the bounds. */
static int small_buffer_check(struct vr_fe *fe, const struct vr_ring_req *req)
{
	bool reads = req->len != 0;
	bool writes = (req->opcode == VR_RING_CONNECT || req->opcode == VR_RING_ACCEPT) &&
		      req->operand != 0;
	struct vr_fe_region *r;

	if (!reads && !writes)
		return 0;
	r = region_of(fe, req->lkey);
	if (!r || r->ep != req->ep)
		return -EACCES;
	if (writes && !r->writable)
		return -EPERM;
	return 0;
}

static void slot_put(struct vr_fe *fe, u32 slot)
{
	if (fe->slots[slot].bulk)
		fe->bulk_inflight -= fe->slots[slot].req.len; /* the engine let go of it */
	fe->slots[slot].bulk = false;
	fe->slots[slot].req.opcode = 0;
	fe->free_slots[fe->nfree++] = (u16)slot;
}

static void rsp_init(struct vr_ring_rsp *rsp, const struct vr_svc_pending *req)
{
	vr_svc_rsp_init(rsp, req->cookie, req->opcode, req->ep, req->conn);
}

/* Frees the slot, then answers what it held. */
static void slot_answer(struct vr_fe *fe, u32 slot, const struct vr_ring_rsp *rsp)
{
	struct vr_svc_pending req = fe->slots[slot].req;

	slot_put(fe, slot);
	fe->host.respond(fe->host.ctx, &req, rsp);
}

static void slot_fail(struct vr_fe *fe, u32 slot, int status)
{
	struct vr_ring_rsp rsp;

	rsp_init(&rsp, &fe->slots[slot].req);
	rsp.status = status;
	slot_answer(fe, slot, &rsp);
}

/* Answers every CLOSED request parked for a connection handle. */
static void closed_answer(struct vr_fe *fe, u32 handle, int status, u64 why)
{
	struct vr_ring_rsp rsp;
	u32 i;

	for (i = 0; i < fe->size; i++) {
		struct vr_fe_slot *s = &fe->slots[i];

		if (s->req.opcode != VR_RING_CLOSED || s->req.conn != handle || s->answered)
			continue;
		rsp_init(&rsp, &s->req);
		rsp.status = status;
		rsp.value = why;
		slot_answer(fe, i, &rsp);
	}
}

/* ------------------------------------------------------------ setup */

void vr_fe_init(struct vr_fe *fe)
{
	u32 i;

	for (i = 0; i < fe->size; i++)
		fe->free_slots[i] = (u16)(fe->size - 1 - i);
	fe->nfree = fe->size;
	memset(&fe->use, 0, sizeof(fe->use));
	fe->nconns = 0;
	fe->next_handle = 0;
	fe->bulk_inflight = 0;
}

/* ------------------------------------------------------------ control */

int vr_fe_open_ep(struct vr_fe *fe, u64 id, u64 weight, bool listen, const char **why)
{
	struct vr_fe_ep *e = NULL;
	u32 i, w;
	int rc;

	rc = vr_svc_check_open_ep(&fe->lim, &fe->use, id, fe->max_ep_id, why);
	if (rc)
		return rc;
	for (i = 0; i < fe->eps_cap && !e; i++)
		if (!fe->eps[i].used)
			e = &fe->eps[i];
	if (!e) {
		*why = "endpoint limit reached";
		return -ENOSPC;
	}
	w = vr_svc_ep_weight(weight, fe->lim.max_weight, fe->admin_weight);
	rc = vr_ep_open(fe->eng, (u16)id, w, listen);
	if (rc == -EEXIST) {
		*why = "endpoint id in use"; /* by this frontend or another */
		return -EINVAL;
	}
	if (rc == -EBUSY) {
		*why = "endpoint id still closing (its DISCONNECTs are not out yet)";
		return rc;
	}
	if (rc) {
		*why = "the engine refused the endpoint";
		return rc;
	}
	memset(e, 0, sizeof(*e));
	e->used = true;
	e->id = (u16)id;
	e->listen = listen;
	e->asked_weight = vr_svc_ep_weight(weight, fe->lim.max_weight, 0);
	e->weight = w;
	fe->use.endpoints++;
	return 0;
}

static void close_ep(struct vr_fe *fe, struct vr_fe_ep *e, void (*release)(void *, void *),
		     void *ctx)
{
	u16 ep = e->id;
	u32 i;

	vr_ep_close(fe->eng, ep); /* its operations complete (vr_fe_complete) */
	for (i = 0; e->accepts && i < fe->size; i++) {
		if (fe->slots[i].req.opcode == VR_RING_ACCEPT && fe->slots[i].req.ep == ep) {
			e->accepts--;
			slot_fail(fe, i, -ECANCELED);
		}
	}
	for (i = 0; i < fe->conns_cap; i++)
		if (fe->conns[i].used && fe->conns[i].ep == ep)
			conn_forget(fe, &fe->conns[i]); /* gone with the endpoint */
	for (i = 0; i < fe->regions_cap; i++) {
		struct vr_fe_region *r = &fe->regions[i];

		if (!r->used || r->ep != ep)
			continue;
		vr_dereg_mr(fe->eng, r->key); /* normally gone already: -ENOENT */
		r->used = false;
		fe->use.regions--;
		fe->use.registered_bytes -= r->len;
		release(ctx, r->host);
	}
	e->used = false;
	e->nbacklog = 0; /* the engine closed them with the endpoint */
	fe->use.endpoints--;
}

int vr_fe_close_ep(struct vr_fe *fe, u64 id, void (*release)(void *ctx, void *host), void *ctx)
{
	struct vr_fe_ep *e = id <= 0xffff ? ep_of(fe, (u16)id) : NULL;

	if (!e)
		return -ENOENT; /* not its endpoint */
	close_ep(fe, e, release, ctx);
	return 0;
}

int vr_fe_check_reg(const struct vr_fe *fe, u64 ep, u64 len, u64 access, const char **why)
{
	bool owned = ep <= 0xffff && vr_fe_ep_of(fe, (u16)ep);

	return vr_svc_check_reg(&fe->lim, &fe->use, owned, len, access, why);
}

int vr_fe_add_region(struct vr_fe *fe, u16 ep, void *mem, void *host, u64 len, u32 access,
		     bool writable, u64 *key)
{
	struct vr_fe_region *r = NULL;
	u32 i;
	int rc;

	for (i = 0; i < fe->regions_cap && !r; i++)
		if (!fe->regions[i].used)
			r = &fe->regions[i];
	if (!r)
		return -ENOSPC;
	rc = vr_reg_mr(fe->eng, ep, mem, len, access, key);
	if (rc)
		return rc;
	r->used = true;
	r->host = host;
	r->len = len;
	r->key = *key;
	r->ep = ep;
	r->writable = writable;
	fe->use.regions++;
	fe->use.registered_bytes += len;
	return 0;
}

int vr_fe_dereg(struct vr_fe *fe, u64 key, void **host)
{
	struct vr_fe_region *r = region_of(fe, key);

	if (!r)
		return -ENOENT; /* not its region */
	vr_dereg_mr(fe->eng, r->key); /* operations using it fail first */
	r->used = false;
	fe->use.regions--;
	fe->use.registered_bytes -= r->len;
	*host = r->host;
	return 0;
}

int vr_fe_set_admin_weight(struct vr_fe *fe, u32 weight)
{
	u32 i;

	if (weight > VR_WEIGHT_MAX)
		return -EINVAL;
	fe->admin_weight = weight;
	for (i = 0; i < fe->eps_cap; i++) {
		struct vr_fe_ep *e = &fe->eps[i];
		u32 w;

		if (!e->used)
			continue;
		w = vr_svc_ep_weight(e->asked_weight, fe->lim.max_weight, weight);
		if (vr_ep_set_weight(fe->eng, e->id, w) == 0)
			e->weight = w;
	}
	return 0;
}

/* An accepted connection whose private data could not be delivered (its
 * buffer went away): nobody will hear of its handle, so it closes. */
static void drop_new_conn(struct vr_fe *fe, u32 handle, u32 conn)
{
	struct vr_fe_conn *c = conn_of(fe, handle);

	if (c)
		conn_forget(fe, c);
	vr_disconnect(fe->eng, conn);
}

/* ------------------------------------------------------------ data path */

int vr_fe_request(struct vr_fe *fe, const struct vr_ring_req *req, struct vr_ring_rsp *rsp)
{
	struct vr_fe_conn *c = NULL;
	struct vr_fe_region *r;
	struct vr_fe_ep *e;
	u32 slot, conn, handle;
	int rc;

	vr_svc_rsp_init(rsp, req->cookie, req->opcode, req->ep, req->conn);
	if (req->flags)
		goto reject_inval;
	switch (req->opcode) {
	case VR_RING_WRITE:
	case VR_RING_READ:
	case VR_RING_SEND:
	case VR_RING_FADD:
	case VR_RING_CSWAP:
		c = conn_of(fe, req->conn);
		if (!c)
			goto reject_inval; /* not a connection of this frontend */
		if (req->opcode == VR_RING_WRITE || req->opcode == VR_RING_READ ||
		    req->opcode == VR_RING_SEND) {
			r = region_of(fe, req->lkey);
			if (!r || r->ep != c->ep)
				goto reject_acces; /* not its region: bad key */
			if (req->opcode == VR_RING_READ && !r->writable)
				goto reject_perm; /* granted read-only: nothing may land in it */
		}
		break;
	case VR_RING_RECV:
		if (!ep_of(fe, req->ep))
			goto reject_inval;
		r = region_of(fe, req->lkey);
		if (!r || r->ep != req->ep)
			goto reject_acces;
		if (!r->writable)
			goto reject_perm;
		break;
	case VR_RING_CONNECT:
		if (!ep_of(fe, req->ep))
			goto reject_inval;
		rc = small_buffer_check(fe, req);
		if (rc)
			goto reject;
		if (conns_held(fe) >= fe->max_conns)
			return -ENOSPC;
		break;
	case VR_RING_RESOLVE:
		if (!ep_of(fe, req->ep))
			goto reject_inval;
		rc = small_buffer_check(fe, req);
		if (rc)
			goto reject;
		break;
	case VR_RING_ACCEPT_DATA:
	case VR_RING_NAME:
	case VR_RING_AUTH_KEY:
		if (!ep_of(fe, req->ep))
			goto reject_inval;
		rc = small_buffer_check(fe, req);
		if (rc)
			goto reject;
		return vr_svc_post(fe->eng, req, 0, 0, &conn);
	case VR_RING_LISTEN:
		e = ep_of(fe, req->ep);
		if (!e)
			goto reject_inval;
		rc = vr_svc_post(fe->eng, req, 0, 0, &conn);
		if (!rc)
			e->listen = true; /* its ACCEPTs are taken from now on */
		return rc;
	case VR_RING_PD_ALLOC:
	case VR_RING_PD_FREE:
		/* The engine ties a domain to its endpoint: another frontend's
		 * domains are another endpoint's, so naming one fails there. */
		if (!ep_of(fe, req->ep))
			goto reject_inval;
		rc = vr_svc_post(fe->eng, req, 0, 0, &conn);
		if (!rc && req->opcode == VR_RING_PD_ALLOC)
			rsp->value = conn;
		return rc;
	case VR_RING_PD_BIND:
		if (!ep_of(fe, req->ep))
			goto reject_inval;
		if (req->conn) {
			c = conn_of(fe, req->conn);
			if (!c || c->ep != req->ep)
				goto reject_inval;
		}
		if (req->lkey) {
			r = region_of(fe, req->lkey);
			if (!r || r->ep != req->ep)
				goto reject_acces;
		}
		return vr_svc_post(fe->eng, req, c ? c->id : 0, 0, &conn);
	case VR_RING_ACCEPT:
		e = ep_of(fe, req->ep);
		if (!e || !e->listen)
			goto reject_inval;
		rc = small_buffer_check(fe, req);
		if (rc)
			goto reject;
		if (e->nbacklog) {
			struct vr_fe_slot probe;

			conn = e->backlog[0];
			e->nbacklog--;
			memmove(&e->backlog[0], &e->backlog[1], e->nbacklog * sizeof(u32));
			handle = accepted_add(fe, conn, e->id, &rsp->value);
			if (!handle)
				return -ENOSPC;
			rsp->conn = handle;
			slot_fill(&probe, req);
			rc = vr_svc_peer_data(fe->eng, &probe.req, conn, &rsp->bytes);
			if (rc)
				drop_new_conn(fe, handle, conn);
			return rc;
		}
		if (!fe->nfree)
			return -EBUSY;
		slot = slot_get(fe, req);
		fe->slots[slot].seq = fe->accept_seq++;
		e->accepts++;
		return 1;
	case VR_RING_CLOSED:
		c = conn_of(fe, req->conn);
		if (!c)
			goto reject_inval;
		if (c->failed) {
			rsp->value = c->why; /* it has already ended */
			return 0;
		}
		if (!fe->nfree)
			return -EBUSY;
		slot_get(fe, req); /* parked: vr_fe_conn_failed or a DISCONNECT answers it */
		return 1;
	case VR_RING_DISCONNECT:
		c = conn_of(fe, req->conn);
		if (!c)
			goto reject_inval;
		conn_forget(fe, c); /* forget first: its operations fail below */
		vr_svc_post(fe->eng, req, c->id, 0, &conn);
		return 0;
	default:
		goto reject_inval;
	}
	if (!fe->nfree)
		return -EBUSY; /* a frontend keeps at most size-1 outstanding */
	slot = slot_get(fe, req);
	if (req->opcode == VR_RING_CONNECT) {
		fe->slots[slot].peer_ep = req->peer_ep;
		memcpy(fe->slots[slot].peer_mac, req->peer_mac, 6);
	}
	/* The slot is ready, its bulk bytes counted, before the engine sees
	 * the cookie: a completion may come from inside the call. */
	if (vr_svc_is_bulk(req->opcode)) {
		fe->slots[slot].bulk = true;
		fe->bulk_inflight += req->len;
	}
	rc = vr_svc_post(fe->eng, req, c ? c->id : 0, VR_FE_COOKIE(fe, slot), &conn);
	if (rc) {
		slot_put(fe, slot);
		return rc;
	}
	return 1;

reject:
	fe->rejected++;
	return rc;
reject_inval:
	fe->rejected++;
	return -EINVAL;
reject_acces:
	fe->rejected++;
	return -EACCES;
reject_perm:
	fe->rejected++;
	return -EPERM;
}

bool vr_fe_complete(struct vr_fe *fe, const struct vr_completion *wc)
{
	u32 slot = (u32)wc->cookie, handle = 0;
	struct vr_fe_slot *s;
	struct vr_ring_rsp rsp;
	struct vr_completion c;

	if ((u32)(wc->cookie >> 32) != fe->id || slot >= fe->size)
		return false;
	s = &fe->slots[slot];
	if (!s->req.opcode || s->req.opcode == VR_RING_ACCEPT ||
	    vr_svc_wc_of_ring_op(s->req.opcode) != wc->op)
		return false;
	c = *wc;
	if (s->req.opcode == VR_RING_CONNECT && !wc->status) {
		if (s->answered) {
			vr_disconnect(fe->eng, wc->conn); /* nobody waits for it any more */
		} else {
			c.status = vr_svc_peer_data(fe->eng, &s->req, wc->conn, &c.bytes);
			handle = c.status ? 0 : conn_add(fe, wc->conn, s->req.ep, s->peer_mac,
							 s->peer_ep, false);
			if (!c.status && !handle)
				c.status = -ENOSPC;
			if (c.status)
				vr_disconnect(fe->eng, wc->conn);
		}
	}
	if (s->answered) {
		slot_put(fe, slot);
		return true;
	}
	vr_svc_rsp_of_wc(&s->req, &c, handle, &rsp);
	slot_answer(fe, slot, &rsp);
	return true;
}

bool vr_fe_conn_failed(struct vr_fe *fe, u32 id, int status)
{
	u32 i;

	for (i = 0; i < fe->conns_cap; i++)
		if (fe->conns[i].used && fe->conns[i].id == id) {
			fe->conns[i].failed = true;
			fe->conns[i].why = (u8)(status < 0 && status > -256 ? -status : ECONNRESET);
			closed_answer(fe, fe->conns[i].handle, 0, fe->conns[i].why);
			return true;
		}
	return false;
}

int vr_fe_accept_policy(const struct vr_fe *fe, u16 ep)
{
	const struct vr_fe_ep *e = vr_fe_ep_of(fe, ep);

	if (!e || !e->listen)
		return -ECONNREFUSED;
	if (!e->accepts && e->nbacklog >= VR_FE_BACKLOG)
		return -ENOBUFS;
	if (conns_held(fe) + e->nbacklog >= fe->max_conns)
		return -ENOBUFS;
	return 0;
}

void vr_fe_accepted(struct vr_fe *fe, u16 ep, u32 conn)
{
	struct vr_fe_ep *e = ep_of(fe, ep);
	struct vr_ring_rsp rsp;
	u32 i, best = ~0u;

	if (!e) {
		vr_disconnect(fe->eng, conn); /* the policy refuses these: cannot happen */
		return;
	}
	for (i = 0; e->accepts && i < fe->size; i++) {
		const struct vr_fe_slot *s = &fe->slots[i];

		if (s->req.opcode == VR_RING_ACCEPT && s->req.ep == ep &&
		    (best == ~0u || (s32)(s->seq - fe->slots[best].seq) < 0))
			best = i;
	}
	if (best != ~0u) {
		e->accepts--;
		rsp_init(&rsp, &fe->slots[best].req);
		rsp.conn = accepted_add(fe, conn, ep, &rsp.value);
		if (!rsp.conn)
			rsp.status = -ENOSPC;
		else
			rsp.status = vr_svc_peer_data(fe->eng, &fe->slots[best].req, conn, &rsp.bytes);
		if (rsp.status && rsp.conn)
			drop_new_conn(fe, rsp.conn, conn);
		slot_answer(fe, best, &rsp);
		return;
	}
	if (e->nbacklog < VR_FE_BACKLOG)
		e->backlog[e->nbacklog++] = conn;
	else
		vr_disconnect(fe->eng, conn); /* the policy keeps room: cannot happen */
}

void vr_fe_answer_waiting(struct vr_fe *fe, u32 opcodes, int status)
{
	struct vr_ring_rsp rsp;
	u32 i;

	for (i = 0; i < fe->size; i++) {
		struct vr_fe_slot *s = &fe->slots[i];

		if (!s->req.opcode || s->answered || !(opcodes & (1u << s->req.opcode)))
			continue;
		if (s->req.opcode == VR_RING_CLOSED) { /* parked here, not in the engine */
			slot_fail(fe, i, status);
			continue;
		}
		if (s->req.opcode == VR_RING_ACCEPT) { /* not in the engine: gone now */
			struct vr_fe_ep *e = ep_of(fe, s->req.ep);

			if (e)
				e->accepts--;
			slot_fail(fe, i, status);
			continue;
		}
		s->answered = true; /* the slot waits for the engine's completion */
		rsp_init(&rsp, &s->req);
		rsp.status = status;
		fe->host.respond(fe->host.ctx, &s->req, &rsp);
	}
}

void vr_fe_close_all(struct vr_fe *fe, void (*release)(void *ctx, void *host), void *ctx)
{
	u32 i;

	for (i = 0; i < fe->eps_cap; i++)
		if (fe->eps[i].used)
			close_ep(fe, &fe->eps[i], release, ctx);
	/* Every operation belonged to an endpoint above; whatever still waits
	 * is answered now. */
	for (i = 0; i < fe->size; i++) {
		if (!fe->slots[i].req.opcode)
			continue;
		if (fe->slots[i].answered)
			slot_put(fe, i);
		else
			slot_fail(fe, i, -ECANCELED);
	}
	for (i = 0; i < fe->regions_cap; i++) {
		struct vr_fe_region *r = &fe->regions[i];

		if (!r->used)
			continue;
		vr_dereg_mr(fe->eng, r->key);
		r->used = false;
		release(ctx, r->host);
	}
	fe->use.regions = 0;
	fe->use.registered_bytes = 0;
}

u32 vr_fe_in_engine(const struct vr_fe *fe)
{
	u32 i, n = 0;

	for (i = 0; i < fe->size; i++)
		n += fe->slots[i].req.opcode && fe->slots[i].req.opcode != VR_RING_ACCEPT &&
		     fe->slots[i].req.opcode != VR_RING_CLOSED; /* both wait here, not in the engine */
	return n;
}

u64 vr_fe_weight(const struct vr_fe *fe)
{
	u64 w = 0;
	u32 i;

	for (i = 0; i < fe->eps_cap; i++)
		if (fe->eps[i].used)
			w += fe->eps[i].weight;
	return w ? w : 1;
}

u64 vr_fe_contending_weight(const struct vr_fe *fe, bool asking, bool waiting)
{
	return asking || waiting || fe->bulk_inflight ? vr_fe_weight(fe) : 0;
}
