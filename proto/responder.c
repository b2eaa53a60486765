// SPDX-License-Identifier: GPL-2.0 OR MIT
/* responder.c - inbound request stream: PSN admission (selective repeat or
 * go-back-N), ACK coalescing, WRITE placement, READ/ATOMIC execution, tagged receive
 * matching and the unexpected-message queue. */
#include "internal.h"

void vr_resp_queue_nak(struct vr_conn *c, u8 reason, u32 psn)
{
	c->nak_reason = reason;
	c->nak_psn = psn;
}

static bool tag_match(u64 a, u64 b, u64 mask)
{
	return (a & mask) == (b & mask);
}

/* First posted (not yet bound) receive, in posting order, matching tag. */
static struct vr_recv *match_recv(struct vr_engine *eng, struct vr_ep *e, u64 tag)
{
	struct vr_recv *best = NULL;
	u32 i;

	for (i = 0; i < eng->cfg.max_recvs; i++) {
		struct vr_recv *r = &e->recvs[i];

		if (r->state == VR_RECV_POSTED && tag_match(tag, r->tag, r->mask) &&
		    (!best || r->seq < best->seq))
			best = r;
	}
	return best;
}

/* A receive's completion names its source in value (vr_peer_word). */
static void recv_complete(struct vr_engine *eng, struct vr_ep *e, struct vr_recv *r,
			  int status, u32 conn, u64 bytes, u64 tag, u64 peer)
{
	r->state = VR_RECV_FREE;
	vr_complete(eng, e, VR_WC_RECV, r->cookie, status, conn, bytes, tag, peer);
}

/* ... from connection conn, still in the table (0: none). */
static void recv_done(struct vr_engine *eng, struct vr_ep *e, struct vr_recv *r,
		      int status, u32 conn, u64 bytes, u64 tag)
{
	u8 mac[6];
	u16 ep;

	recv_complete(eng, e, r, status, conn, bytes, tag,
		      conn && !vr_conn_peer(eng, conn, mac, &ep) ? vr_peer_word(mac, ep) : 0);
}

/* Copy into a receive buffer, re-checking its region.  Bytes beyond the
 * receive length are dropped (the completion then reports -EMSGSIZE). */
static int recv_place(struct vr_engine *eng, struct vr_ep *e, struct vr_recv *r,
		      u32 off, const u8 *data, u32 len)
{
	const struct vr_region *reg;
	int rc;

	if (off >= r->len)
		return 0;
	if (len > r->len - off)
		len = r->len - off;
	if (!len)
		return 0;
	rc = vr_region_check(&eng->rt, r->lkey, (u16)(e - eng->eps), VR_ACCESS_LOCAL_WRITE,
			     r->loff + off, len, &reg);
	if (rc)
		return rc;
	return eng->mem->copy_in(reg->mem, r->loff + off, data, len);
}

static void unexp_deliver(struct vr_engine *eng, struct vr_ep *e, struct vr_unexp *u)
{
	struct vr_recv *r = &e->recvs[u->recv];
	int rc = u->aborted ? -ECANCELED : recv_place(eng, e, r, 0, u->buf, u->total);

	if (!rc && u->total > r->len)
		rc = -EMSGSIZE;
	u->used = false;
	/* its connection may have gone since: the source is the one recorded */
	recv_complete(eng, e, r, rc, u->conn, u->total, u->tag, u->peer);
}

/* SEND frames.  Returns a NAK reason or 0 (frame consumed). */
static u8 rx_send(struct vr_engine *eng, struct vr_conn *c, const struct vr_parsed *p)
{
	struct vr_ep *e = &eng->eps[c->ep];
	const struct vr_hdr *h = &p->h;
	bool first = h->opcode == VR_OP_SEND_FIRST || h->opcode == VR_OP_SEND_ONLY;
	bool last = h->opcode == VR_OP_SEND_LAST || h->opcode == VR_OP_SEND_ONLY;
	struct vr_recv *r;
	struct vr_unexp *u;
	u32 i;

	if (first) {
		if (c->rx_kind != VR_RX_NONE)
			vr_resp_flush_rx(eng, c, -EPROTO); /* peer skipped a LAST */
		c->rx_msg = h->msg_id;
		c->rx_total = h->total_len;
		if (h->flags & VR_F_ABORT) {
			c->rx_kind = last ? VR_RX_NONE : VR_RX_DISCARD;
			return 0;
		}
		r = match_recv(eng, e, h->operand_a);
		if (r && h->total_len > r->len) {
			/* Both sides learn it, as in RC: the receive fails here
			 * with nothing placed, the send with this NAK, which is
			 * fatal for the connection like every access error. */
			recv_done(eng, e, r, -EMSGSIZE, c->id, h->total_len, h->operand_a);
			c->rx_kind = last ? VR_RX_NONE : VR_RX_DISCARD;
			return VR_NAK_TOO_LONG;
		}
		if (r) {
			r->state = VR_RECV_BOUND;
			c->rx_kind = VR_RX_RECV;
			c->rx_idx = (u32)(r - e->recvs);
		} else {
			u = NULL;
			for (i = 0; i < eng->cfg.unexp_depth && h->total_len <= eng->cfg.unexp_buf_size; i++)
				if (!e->unexp[i].used) {
					u = &e->unexp[i];
					break;
				}
			if (!u)
				return VR_NAK_RNR;
			u->used = true;
			u->complete = u->aborted = false;
			u->conn = c->id;
			u->peer = vr_peer_word(c->peer_mac, c->peer_ep);
			u->seq = e->unexp_seq++;
			u->tag = h->operand_a;
			u->total = h->total_len;
			u->got = 0;
			u->recv = VR_NO_SLOT;
			c->rx_kind = VR_RX_UNEXP;
			c->rx_idx = (u32)(u - e->unexp);
		}
	} else if (c->rx_kind == VR_RX_NONE || c->rx_msg != h->msg_id) {
		return 0; /* continuation of a message we are not assembling */
	} else if (h->total_len != c->rx_total) {
		/* a length change mid-message would let offsets escape buffers */
		return VR_NAK_INVALID;
	}

	switch (c->rx_kind) {
	case VR_RX_RECV:
		/* rx_kind is updated before recv_done: the host may close c
		 * from the completion callback, which must not see r again. */
		r = &e->recvs[c->rx_idx];
		if (h->flags & VR_F_ABORT) {
			c->rx_kind = last ? VR_RX_NONE : VR_RX_DISCARD;
			recv_done(eng, e, r, -ECANCELED, c->id, h->total_len, h->operand_a);
			break;
		}
		if (recv_place(eng, e, r, (u32)h->remote_off, p->payload, h->payload_len)) {
			c->rx_kind = VR_RX_DISCARD;
			recv_done(eng, e, r, -ECANCELED, c->id, h->total_len, h->operand_a);
		} else if (last) {
			c->rx_kind = VR_RX_NONE;
			recv_done(eng, e, r, h->total_len > r->len ? -EMSGSIZE : 0, c->id,
				  h->total_len, h->operand_a);
		}
		break;
	case VR_RX_UNEXP:
		u = &e->unexp[c->rx_idx];
		if (h->flags & VR_F_ABORT) {
			u->aborted = true;
		} else {
			memcpy(u->buf + h->remote_off, p->payload, h->payload_len);
			u->got += h->payload_len;
		}
		if (last || u->aborted) {
			u->complete = true;
			if (u->recv != VR_NO_SLOT)
				unexp_deliver(eng, e, u);
			else if (u->aborted)
				u->used = false;
			c->rx_kind = last ? VR_RX_NONE : VR_RX_DISCARD;
		}
		break;
	default:
		break;
	}
	if (last)
		c->rx_kind = VR_RX_NONE;
	return 0;
}

static inline u8 rx_write(struct vr_engine *eng, struct vr_conn *c, const struct vr_parsed *p)
{
	const struct vr_region *reg;
	int rc;

	if (p->h.flags & VR_F_ABORT)
		return 0;
	rc = vr_region_check_pd(&eng->rt, p->h.rkey, c->ep, c->pd, VR_ACCESS_REMOTE_WRITE,
			     p->h.remote_off, p->h.payload_len, &reg);
	if (rc)
		return vr_errno_to_nak(rc);
	if (p->h.payload_len &&
	    eng->mem->copy_in(reg->mem, p->h.remote_off, p->payload, p->h.payload_len))
		return VR_NAK_INVALID;
	return 0;
}

/* READ_REQ: validate the whole range now, answer through the reliable
 * response stream (data is re-read from the region at each transmission). */
static u8 rx_read(struct vr_engine *eng, struct vr_conn *c, const struct vr_parsed *p)
{
	struct vr_op *op;
	int rc = vr_region_check_pd(&eng->rt, p->h.rkey, c->ep, c->pd, VR_ACCESS_REMOTE_READ,
				 p->h.remote_off, p->h.total_len, NULL);

	if (rc)
		return vr_errno_to_nak(rc);
	op = vr_op_alloc(eng, c, true);
	if (!op)
		return VR_NAK_RESOURCES;
	op->kind = VR_K_READ_RESP;
	op->msg_id = p->h.msg_id;
	op->rkey = p->h.rkey;
	op->roff = p->h.remote_off;
	op->len = p->h.total_len;
	vr_op_enqueue(eng, c, op);
	return 0;
}

/* Atomics execute exactly once: only the in-order first copy of the PSN
 * gets here; duplicates stop at PSN admission and the result travels in a
 * reliable ATOMIC_RESP that is retransmitted until acknowledged. */
static u8 rx_atomic(struct vr_engine *eng, struct vr_conn *c, const struct vr_parsed *p)
{
	const struct vr_region *reg;
	struct vr_op *op;
	u64 old, nv;
	int rc;

	if (p->h.remote_off & 7)
		return VR_NAK_INVALID;
	rc = vr_region_check_pd(&eng->rt, p->h.rkey, c->ep, c->pd, VR_ACCESS_REMOTE_ATOMIC,
			     p->h.remote_off, 8, &reg);
	if (rc)
		return vr_errno_to_nak(rc);
	op = vr_op_alloc(eng, c, true); /* reserve before executing */
	if (!op)
		return VR_NAK_RESOURCES;
	if (eng->mem->copy_out(reg->mem, p->h.remote_off, &old, 8))
		return VR_NAK_INVALID;
	if (p->h.opcode == VR_OP_ATOMIC_FADD)
		nv = old + p->h.operand_a;
	else
		nv = old == p->h.operand_a ? p->h.operand_b : old;
	if (nv != old && eng->mem->copy_in(reg->mem, p->h.remote_off, &nv, 8))
		return VR_NAK_INVALID;
	op->kind = VR_K_ATOMIC_RESP;
	op->msg_id = p->h.msg_id;
	op->len = 8;
	op->a = old;
	vr_op_enqueue(eng, c, op);
	return 0;
}

/*
 * A SEND frame ahead of rcv_nxt: placed now only in the middle of the
 * message being received, whose first frame matched it to a buffer in
 * order; its last frame completes the receive, so it waits its turn.
 */
static bool rx_send_ahead(struct vr_engine *eng, struct vr_conn *c, const struct vr_parsed *p)
{
	struct vr_ep *e = &eng->eps[c->ep];
	const struct vr_hdr *h = &p->h;
	struct vr_unexp *u;

	if (h->opcode != VR_OP_SEND_MIDDLE || (h->flags & VR_F_ABORT) ||
	    c->rx_msg != h->msg_id || c->rx_total != h->total_len)
		return false;
	if (c->rx_kind == VR_RX_RECV)
		return !recv_place(eng, e, &e->recvs[c->rx_idx], (u32)h->remote_off, p->payload,
				   h->payload_len);
	if (c->rx_kind != VR_RX_UNEXP)
		return false;
	u = &e->unexp[c->rx_idx];
	memcpy(u->buf + h->remote_off, p->payload, h->payload_len); /* <= total: parsed */
	u->got += h->payload_len;
	return true;
}

/*
 * Selective repeat: a frame ahead of rcv_nxt is held when placing it now is
 * all it would do in order (docs/proto.md, Reliability); anything that acts
 * (executes, matches, completes, fails) waits for rcv_nxt.  Whatever
 * happens, the peer hears at once what we hold.
 */
static void rx_ahead(struct vr_engine *eng, struct vr_conn *c, const struct vr_parsed *p)
{
	struct vr_ep *e = &eng->eps[c->ep];
	const struct vr_hdr *h = &p->h;
	bool near = h->psn - c->rcv_nxt < VR_SR_SPAN, hold, ends = false;
	int rc;

	c->ack_now = true;
	if (near && vr_sr_test(c->sr->held, h->psn)) {
		VR_CTR(eng, e, dups, 1);
		return;
	}
	VR_CTR(eng, e, out_of_order, 1);
	switch (h->opcode) {
	case VR_OP_WRITE_FIRST: case VR_OP_WRITE_MIDDLE:
	case VR_OP_WRITE_LAST: case VR_OP_WRITE_ONLY:
		hold = near && !rx_write(eng, c, p);
		break;
	case VR_OP_READ_RESP_FIRST: case VR_OP_READ_RESP_MIDDLE:
	case VR_OP_READ_RESP_LAST: case VR_OP_READ_RESP_ONLY:
		rc = near ? vr_comp_rx_resp_ahead(eng, c, p) : 0;
		hold = rc != 0;
		ends = rc == 2;
		break;
	case VR_OP_SEND_MIDDLE:
		hold = near && rx_send_ahead(eng, c, p);
		break;
	default:
		hold = false;
		break;
	}
	if (hold) {
		vr_sr_set(c->sr->held, h->psn);
		c->n_held++;
		VR_CTR(eng, e, held_ahead, 1);
	}
	if (ends) {
		vr_sr_set(c->sr->ends, h->psn);
		c->sr->end_msg[h->psn % VR_SR_SPAN] = h->msg_id;
	}
	if (!hold && !c->seq_nak_sent) {
		/* Dropped: answered as go-back-N does, once per gap; the peer
		 * sends again everything from the gap that it does not see held. */
		vr_resp_queue_nak(c, VR_NAK_SEQ, c->rcv_nxt);
		c->seq_nak_sent = true;
	}
}

/* The peer asked for an ACK (a message's end): at once, or by
 * cfg.ackreq_delay_ns, so that a reply sent meanwhile carries it. */
static void ack_asked(struct vr_engine *eng, struct vr_conn *c, u64 now)
{
	u64 by = now + eng->cfg.ackreq_delay_ns;

	if (!eng->cfg.ackreq_delay_ns)
		c->ack_now = true;
	else if (by < c->ack_deadline)
		c->ack_deadline = by;
}

/* rcv_nxt has moved: past every frame held right after it too, completing
 * in order the READs whose last frame was held. */
static void rx_advance(struct vr_engine *eng, struct vr_conn *c)
{
	u32 psn;

	if (!c->n_held)
		return;
	c->ack_now = true; /* a gap closed: the peer's window opens now */
	/* which message the held frames end in is not kept: say none is
	 * unfinished (a host's wait then only wakes sooner than it had to) */
	eng->rx_mid_message = false;
	while (vr_sr_test(c->sr->held, c->rcv_nxt)) {
		psn = c->rcv_nxt++;
		vr_sr_clear(c->sr->held, psn);
		c->n_held--;
		if (vr_sr_test(c->sr->ends, psn)) {
			vr_sr_clear(c->sr->ends, psn);
			vr_comp_resp_end(eng, c, c->sr->end_msg[psn % VR_SR_SPAN]);
			if (c->state != VR_CONN_CONNECTED)
				return; /* the host closed c from the completion */
		}
	}
}

void vr_resp_rx_data(struct vr_engine *eng, struct vr_conn *c, const struct vr_parsed *p,
		     u64 now)
{
	struct vr_ep *e = &eng->eps[c->ep];
	const struct vr_hdr *h = &p->h;
	u8 nak = 0;

	if (h->psn != c->rcv_nxt) {
		if (vr_psn_lt(h->psn, c->rcv_nxt)) {
			/* duplicate: never re-executed, just re-acknowledged */
			VR_CTR(eng, e, dups, 1);
			c->ack_now = true;
		} else if (c->sack) {
			rx_ahead(eng, c, p);
		} else {
			VR_CTR(eng, e, out_of_order, 1);
			if (!c->seq_nak_sent) {
				vr_resp_queue_nak(c, VR_NAK_SEQ, c->rcv_nxt);
				c->seq_nak_sent = true;
			}
		}
		return;
	}
	switch (h->opcode) {
	case VR_OP_WRITE_FIRST: case VR_OP_WRITE_MIDDLE:
	case VR_OP_WRITE_LAST: case VR_OP_WRITE_ONLY:
		nak = rx_write(eng, c, p);
		break;
	case VR_OP_SEND_FIRST: case VR_OP_SEND_MIDDLE:
	case VR_OP_SEND_LAST: case VR_OP_SEND_ONLY:
		nak = rx_send(eng, c, p);
		break;
	case VR_OP_READ_REQ:
		nak = rx_read(eng, c, p);
		break;
	case VR_OP_ATOMIC_FADD: case VR_OP_ATOMIC_CSWAP:
		nak = rx_atomic(eng, c, p);
		break;
	default: /* READ_RESP_*, ATOMIC_RESP */
		vr_comp_rx_resp(eng, c, p);
		break;
	}
	if (c->state != VR_CONN_CONNECTED) {
		/* The host closed c from a completion callback for this very
		 * frame: it was consumed, so the DISCONNECT acknowledges it. */
		if (c->state == VR_CONN_CLOSING && !nak) {
			c->rcv_nxt++;
			rx_advance(eng, c);
		}
		return;
	}
	if (nak) {
		/* not admitted: rcv_nxt stays, the sender resends from here */
		vr_resp_queue_nak(c, nak, h->psn);
		/* keep later in-flight frames from replacing this NAK by a SEQ NAK */
		c->seq_nak_sent = true;
		return;
	}
	eng->rx_mid_message = vr_op_mid_message(h->opcode);
	c->rcv_nxt++;
	rx_advance(eng, c);
	if (c->state != VR_CONN_CONNECTED)
		return;
	c->seq_nak_sent = false;
	if (c->nak_reason == VR_NAK_RNR || c->nak_reason == VR_NAK_RESOURCES)
		c->nak_reason = 0; /* stale: the frame got in after all */
	if (++c->unacked_rx >= c->ack_every)
		c->ack_now = true;
	else if (h->flags & VR_F_ACKREQ)
		ack_asked(eng, c, now);
	else if (c->ack_deadline == VR_U64_MAX)
		c->ack_deadline = now + eng->cfg.ack_delay_ns;
}

/* Abandon the inbound SEND being assembled on c. */
void vr_resp_flush_rx(struct vr_engine *eng, struct vr_conn *c, int status)
{
	struct vr_ep *e = &eng->eps[c->ep];
	u32 i;

	if (c->rx_kind == VR_RX_RECV)
		recv_done(eng, e, &e->recvs[c->rx_idx], status, c->id, 0, 0);
	c->rx_kind = VR_RX_NONE;
	/* unexpected messages still arriving from c can never complete */
	for (i = 0; i < eng->cfg.unexp_depth; i++) {
		struct vr_unexp *u = &e->unexp[i];

		if (u->used && !u->complete && u->conn == c->id) {
			u->used = false;
			if (u->recv != VR_NO_SLOT)
				recv_done(eng, e, &e->recvs[u->recv], status, c->id, 0, 0);
		}
	}
}

/*
 * e had connections and every one has failed (none connected or still
 * connecting): a receive posted now could only be matched by a peer that is
 * gone.  It is refused (-ENOTCONN) rather than left waiting, which closes the
 * race with vr_resp_orphan_recvs (the peer left between two receives).  Once
 * the host has disconnected the failed connections the endpoint waits for
 * new peers again.
 */
static bool ep_orphaned(const struct vr_engine *eng, const struct vr_ep *e)
{
	bool failed = false;
	u32 k;

	for (k = e->conn_head; k != VR_NO_SLOT; k = eng->conns[k].ep_next) {
		u8 state = eng->conns[k].state;

		if (state == VR_CONN_ERROR)
			failed = true;
		else if (state != VR_CONN_CLOSING) /* closed here: neither way */
			return false;
	}
	return failed;
}

/*
 * A connection of e failed.  If it was the last one connected, a posted
 * receive could only be matched by a peer that is gone: it fails with
 * status instead of waiting forever (the application re-posts for the next
 * peer).  Receives fed by a buffered message keep it.
 */
void vr_resp_orphan_recvs(struct vr_engine *eng, struct vr_ep *e, int status)
{
	u32 i, k;

	for (k = e->conn_head; k != VR_NO_SLOT; k = eng->conns[k].ep_next)
		if (eng->conns[k].state == VR_CONN_CONNECTED)
			return;
	for (i = 0; i < eng->cfg.max_recvs; i++)
		if (e->recvs[i].state == VR_RECV_POSTED)
			recv_done(eng, e, &e->recvs[i], status, 0, 0, 0);
}

/* Region key deregistered: fail receives that would write into it. */
void vr_resp_cancel_key(struct vr_engine *eng, u64 key)
{
	u32 i, j, k;

	for (i = 0; i < eng->cfg.max_endpoints; i++) {
		struct vr_ep *e = &eng->eps[i];

		if (!e->used)
			continue;
		for (j = 0; j < eng->cfg.max_recvs; j++) {
			struct vr_recv *r = &e->recvs[j];

			if (r->state == VR_RECV_FREE || r->lkey != key)
				continue;
			/* detach from whatever feeds it */
			for (k = 0; k < eng->cfg.unexp_depth; k++)
				if (e->unexp[k].used && e->unexp[k].recv == j)
					e->unexp[k].recv = VR_NO_SLOT;
			for (k = e->conn_head; k != VR_NO_SLOT; k = eng->conns[k].ep_next)
				if (eng->conns[k].rx_kind == VR_RX_RECV && eng->conns[k].rx_idx == j)
					eng->conns[k].rx_kind = VR_RX_DISCARD;
			recv_done(eng, e, r, -ECANCELED, 0, 0, 0);
		}
	}
}

int vr_resp_post_recv(struct vr_engine *eng, u16 ep, u64 lkey, u64 loff, u32 len,
		      u64 tag, u64 mask, u64 cookie)
{
	struct vr_ep *e = vr_ep_get_open(eng, ep);
	struct vr_recv *r = NULL;
	struct vr_unexp *best = NULL;
	u32 i;
	int rc;

	if (!e)
		return -ENOENT;
	rc = vr_region_check(&eng->rt, lkey, ep, VR_ACCESS_LOCAL_WRITE, loff, len, NULL);
	if (rc)
		return rc;
	for (i = 0; i < eng->cfg.max_recvs; i++)
		if (e->recvs[i].state == VR_RECV_FREE) {
			r = &e->recvs[i];
			break;
		}
	if (!r) {
		VR_CTR(eng, e, pool_exhausted, 1);
		return -EAGAIN;
	}
	r->lkey = lkey;
	r->loff = loff;
	r->len = len;
	r->tag = tag;
	r->mask = mask;
	r->cookie = cookie;
	r->seq = e->recv_seq++;
	/* Unexpected messages are matched in arrival order. */
	for (i = 0; i < eng->cfg.unexp_depth; i++) {
		struct vr_unexp *u = &e->unexp[i];

		if (u->used && u->recv == VR_NO_SLOT && tag_match(u->tag, tag, mask) &&
		    (!best || u->seq < best->seq))
			best = u;
	}
	if (!best) {
		if (ep_orphaned(eng, e))
			return -ENOTCONN; /* r stays free */
		r->state = VR_RECV_POSTED;
		return 0;
	}
	r->state = VR_RECV_BOUND;
	best->recv = (u32)(r - e->recvs);
	if (best->complete)
		unexp_deliver(eng, e, best);
	return 0;
}
