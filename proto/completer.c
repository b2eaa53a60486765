// SPDX-License-Identifier: GPL-2.0 OR MIT
/* completer.c - requester-side completion: cumulative ACKs, NAK handling
 * (go-back-N, RNR back-off, fatal errors), READ/ATOMIC responses, flush
 * and cancellation.  Every request completes exactly once: the
 * `completed` flag is set before the callback runs. */
#include "internal.h"

static u32 wc_op(u8 kind)
{
	switch (kind) {
	case VR_K_WRITE: return VR_WC_WRITE;
	case VR_K_READ: return VR_WC_READ;
	case VR_K_SEND: return VR_WC_SEND;
	case VR_K_FADD: return VR_WC_FADD;
	default: return VR_WC_CSWAP;
	}
}

static void op_complete_nak(struct vr_engine *eng, struct vr_conn *c, struct vr_op *op,
			    int status, u64 value, u8 nak)
{
	if (op->completed || op->kind > VR_K_CSWAP)
		return;
	op->completed = true;
	vr_complete_nak(eng, &eng->eps[c->ep], wc_op(op->kind), op->cookie, status, c->id,
			status ? 0 : op->len, 0, value, nak);
	vr_op_maybe_free(c, op);
}

static void op_complete(struct vr_engine *eng, struct vr_conn *c, struct vr_op *op,
			int status, u64 value)
{
	op_complete_nak(eng, c, op, status, value, 0);
}

/*
 * Congestion window, in frames (a NewReno-like AIMD, counted in frames
 * because go-back-N resends frames): it starts at the configured window
 * (a LAN should not wait for slow start), halves once per loss event, falls
 * to 2 on a retransmission timeout, and grows back by slow start below
 * ssthresh and by one frame per window acknowledged above it.  Without it a
 * lossy link costs a whole window of retransmissions per loss.
 */
static u32 cc_floor(const struct vr_engine *eng)
{
	return eng->cfg.window < 2 ? eng->cfg.window : 2;
}

void vr_cc_init(struct vr_engine *eng, struct vr_conn *c)
{
	c->cwnd = c->ssthresh = eng->cfg.window;
	c->cwnd_acked = 0;
	c->recover = c->snd_una;
}

void vr_cc_on_ack(struct vr_engine *eng, struct vr_conn *c, u32 newly_acked)
{
	if (c->cwnd >= eng->cfg.window)
		return;
	if (c->cwnd < c->ssthresh) {
		c->cwnd += newly_acked;
	} else {
		c->cwnd_acked += newly_acked;
		while (c->cwnd_acked >= c->cwnd && c->cwnd < eng->cfg.window) {
			c->cwnd_acked -= c->cwnd;
			c->cwnd++;
		}
	}
	if (c->cwnd > eng->cfg.window)
		c->cwnd = eng->cfg.window;
}

void vr_cc_on_loss(struct vr_engine *eng, struct vr_conn *c, u32 psn, bool timeout)
{
	/* frames sent before the last reduction belong to that event */
	if (!timeout && vr_psn_lt(psn, c->recover))
		return;
	c->ssthresh = c->cwnd / 2 > cc_floor(eng) ? c->cwnd / 2 : cc_floor(eng);
	c->cwnd = timeout ? cc_floor(eng) : c->ssthresh;
	c->cwnd_acked = 0;
	c->recover = c->snd_hi;
	VR_CTR(eng, &eng->eps[c->ep], congestion_events, 1);
}

void vr_comp_rx_ack(struct vr_engine *eng, struct vr_conn *c, u32 ack, u64 now)
{
	u32 cap = 2 * eng->cfg.max_ops;

	/* only forward, and never beyond what was actually sent */
	if (!vr_psn_lt(c->snd_una, ack))
		return;
	if (vr_psn_lt(c->snd_hi, ack)) {
		VR_CTR(eng, &eng->eps[c->ep], drop_bad_ack, 1);
		return;
	}
	vr_cc_on_ack(eng, c, ack - c->snd_una);
	c->snd_una = ack;
	if (vr_psn_lt(c->snd_nxt, ack))
		c->snd_nxt = ack;
	while (c->ring_len) {
		struct vr_op *op = &c->ops[c->ring[c->ring_head]];

		if (!vr_psn_le(op->psn_first + op->nframes, ack))
			break;
		c->ring_head = (c->ring_head + 1) % cap;
		c->ring_len--;
		op->in_ring = false;
		if (op->kind == VR_K_WRITE || op->kind == VR_K_SEND)
			op_complete(eng, c, op, 0, 0);
		vr_op_maybe_free(c, op);
	}
	/* progress: reset back-off and retry budgets */
	c->retries = 0;
	c->stall_since = 0;
	c->rnr_retries = 0;
	c->rnr_since = 0;
	c->rto = eng->cfg.rto_ns;
	c->rto_deadline = c->snd_una == c->snd_hi ? VR_U64_MAX : now + c->rto;
}

void vr_comp_rx_nak(struct vr_engine *eng, struct vr_conn *c, const struct vr_parsed *p,
		    u64 now)
{
	struct vr_ep *e = &eng->eps[c->ep];
	u32 psn = p->h.psn;
	struct vr_op *op;
	u8 why = p->h.nak_reason;

	VR_CTR(eng, e, naks_rx[why], 1);
	/* a NAK names a PSN we sent and that is not yet acknowledged */
	if (vr_psn_lt(psn, c->snd_una) || !vr_psn_lt(psn, c->snd_hi)) {
		VR_CTR(eng, e, drop_bad_ack, 1);
		return;
	}
	vr_comp_rx_ack(eng, c, psn, now);
	switch (why) {
	case VR_NAK_SEQ:
		vr_cc_on_loss(eng, c, psn, false);
		c->snd_nxt = psn;
		break;
	case VR_NAK_RNR:
	case VR_NAK_RESOURCES:
		VR_CTR(eng, e, rnr_waits, 1);
		if (!c->rnr_since)
			c->rnr_since = now ? now : 1;
		if (++c->rnr_retries > eng->cfg.rnr_retry_limit &&
		    now - c->rnr_since >= eng->cfg.rnr_timeout_ns) {
			op = vr_op_for_psn(eng, c, psn);
			if (op)
				op_complete_nak(eng, c, op, -ENOBUFS, 0, why);
			vr_conn_fail(eng, c, -ECONNRESET, true);
			return;
		}
		c->snd_nxt = psn;
		c->rnr_until = now + eng->cfg.rnr_delay_ns;
		if (!c->rnr_until)
			c->rnr_until = 1;
		c->rto_deadline = c->rnr_until + c->rto;
		break;
	default:
		/* remote access error: fatal for the connection, as in RC */
		op = vr_op_for_psn(eng, c, psn);
		if (op)
			op_complete_nak(eng, c, op, vr_nak_to_errno(why), 0, why);
		vr_conn_fail(eng, c, -ECONNRESET, true);
		break;
	}
}

static struct vr_op *op_by_msg(struct vr_engine *eng, struct vr_conn *c, u32 msg_id)
{
	u32 idx = msg_id & 0xFFFF;
	struct vr_op *op;

	if (idx >= eng->cfg.max_ops)
		return NULL;
	op = &c->ops[idx];
	if (op->kind == VR_K_FREE || op->msg_id != msg_id)
		return NULL;
	return op;
}

/* READ_RESP / ATOMIC_RESP, already admitted in PSN order. */
void vr_comp_rx_resp(struct vr_engine *eng, struct vr_conn *c, const struct vr_parsed *p)
{
	const struct vr_hdr *h = &p->h;
	struct vr_op *op = op_by_msg(eng, c, h->msg_id);
	const struct vr_region *reg;
	int rc;

	if (!op || op->completed)
		return; /* cancelled locally: consume and drop */
	if (h->opcode == VR_OP_ATOMIC_RESP) {
		if (op->kind == VR_K_FADD || op->kind == VR_K_CSWAP)
			op_complete(eng, c, op, 0, h->operand_a);
		return;
	}
	if (op->kind != VR_K_READ || h->total_len != op->len)
		return;
	if (h->flags & VR_F_ABORT) {
		op_complete_nak(eng, c, op, vr_nak_to_errno(h->nak_reason), 0, h->nak_reason);
		return;
	}
	if (h->payload_len) {
		rc = vr_region_check_pd(&eng->rt, op->lkey, c->ep, c->pd, VR_ACCESS_LOCAL_WRITE,
				     op->loff + h->remote_off, h->payload_len, &reg);
		if (!rc)
			rc = eng->mem->copy_in(reg->mem, op->loff + h->remote_off, p->payload,
					       h->payload_len);
		if (rc) {
			op_complete(eng, c, op, -ECANCELED, 0);
			return;
		}
	}
	if (h->remote_off + h->payload_len == op->len)
		op_complete(eng, c, op, 0, 0);
}

/* Fail every request on c and forget the outbound stream. */
void vr_comp_flush(struct vr_engine *eng, struct vr_conn *c, int status)
{
	u32 i, n = 2 * eng->cfg.max_ops;

	for (i = 0; i < n; i++) {
		struct vr_op *op = &c->ops[i];

		if (op->kind == VR_K_FREE)
			continue;
		op->in_ring = false;
		op_complete(eng, c, op, status, 0);
		op->kind = VR_K_FREE;
	}
	c->ring_len = 0;
	c->snd_una = c->snd_nxt = c->snd_hi = c->snd_max;
	c->rto_deadline = VR_U64_MAX;
}

/* Local close of a live connection: every request completes -ECANCELED
 * now, but the outbound ring is kept so that responses already queued for
 * the peer can still be sent (in PSN order) before the DISCONNECT.
 * Cancelled requests stay in the ring only as PSN placeholders; nothing
 * past the first of them is sent. */
void vr_comp_close(struct vr_engine *eng, struct vr_conn *c)
{
	u32 i, n = 2 * eng->cfg.max_ops;

	for (i = 0; i < n; i++) {
		struct vr_op *op = &c->ops[i];

		if (op->kind != VR_K_FREE && op->kind <= VR_K_CSWAP)
			op_complete(eng, c, op, -ECANCELED, 0);
	}
	c->rto_deadline = VR_U64_MAX;
}

/* A local key went away: requests that read from or write into it fail
 * now; frames still owed to the peer go out as ABORT (payload-free). */
void vr_comp_cancel_key(struct vr_engine *eng, u64 key)
{
	u32 i, j, n = 2 * eng->cfg.max_ops;

	for (i = 0; i < eng->cfg.max_conns; i++) {
		struct vr_conn *c = &eng->conns[i];

		if (c->state == VR_CONN_FREE)
			continue;
		for (j = 0; j < n; j++) {
			struct vr_op *op = &c->ops[j];

			if ((op->kind == VR_K_WRITE || op->kind == VR_K_SEND ||
			     op->kind == VR_K_READ) && op->lkey == key && !op->completed) {
				op->aborted = true;
				op_complete(eng, c, op, -ECANCELED, 0);
			}
		}
	}
}
