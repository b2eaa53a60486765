// SPDX-License-Identifier: GPL-2.0 OR MIT
/* completer.c - requester-side completion: cumulative and selective ACKs,
 * what is lost and sent again (selective repeat or go-back-N), NAK handling
 * (RNR back-off, fatal errors), READ/ATOMIC responses, flush and
 * cancellation.  Every request completes exactly once: the
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
 * because frames are what is resent): it starts at the connection's window
 * (a LAN should not wait for slow start), shrinks once per loss event (by
 * half with go-back-N, by 3/10 with selective repeat), falls to 2 on a
 * retransmission timeout, and grows back by slow start below ssthresh and
 * by one frame per window acknowledged above it.  Without it a lossy link
 * costs go-back-N a whole window of retransmissions per loss, and a full
 * queue keeps overflowing.
 */
static u32 cc_floor(const struct vr_conn *c)
{
	return c->wnd < 2 ? c->wnd : 2;
}

void vr_cc_init(struct vr_conn *c)
{
	c->cwnd = c->ssthresh = c->wnd;
	c->cwnd_acked = 0;
	c->recover = c->snd_una;
}

void vr_cc_on_ack(struct vr_conn *c, u32 newly_acked)
{
	if (c->cwnd >= c->wnd)
		return;
	if (c->cwnd < c->ssthresh) {
		c->cwnd += newly_acked;
	} else {
		c->cwnd_acked += newly_acked;
		while (c->cwnd_acked >= c->cwnd && c->cwnd < c->wnd) {
			c->cwnd_acked -= c->cwnd;
			c->cwnd++;
		}
	}
	if (c->cwnd > c->wnd)
		c->cwnd = c->wnd;
}

void vr_cc_on_loss(struct vr_engine *eng, struct vr_conn *c, u32 psn, bool timeout)
{
	u32 cut;

	/* frames sent before the last reduction belong to that event */
	if (!timeout && vr_psn_lt(psn, c->recover))
		return;
	/* With selective repeat a loss costs its frame, not a window: the
	 * window backs off by 3/10 (CUBIC's factor), not half, since on the
	 * links vmrdma runs on a loss is more often noise than a full queue
	 * (docs/benchmarks.md, selective repeat). */
	cut = c->sack ? c->cwnd * 7 / 10 : c->cwnd / 2;
	c->ssthresh = cut > cc_floor(c) ? cut : cc_floor(c);
	c->cwnd = timeout ? cc_floor(c) : c->ssthresh;
	c->cwnd_acked = 0;
	c->recover = c->snd_hi;
	VR_CTR(eng, &eng->eps[c->ep], congestion_events, 1);
}

/* ------------------------------------------------ selective repeat */

/* The peer has frame psn (acknowledged or held): what it says about the
 * frames sent before it is counted in transmissions (vr_comp_find_lost). */
static void sr_delivered(struct vr_conn *c, u32 psn)
{
	u32 t = c->sr->txseq[psn % VR_SR_SPAN];

	if ((s32)(t - c->delivered) > 0)
		c->delivered = t;
}

/* Frames [snd_una, ack) are acknowledged: their records go, and the
 * round trip of a frame that asked for an ACK is sampled. */
static void sr_acked(struct vr_conn *c, u32 ack, u64 now)
{
	u32 psn;

	if (c->sr->rtt_at && !vr_psn_lt(ack, c->sr->rtt_psn)) {
		u64 rtt = now - c->sr->rtt_at;
		u32 sample = rtt < 0xFFFFFFFFu ? (u32)rtt : 0xFFFFFFFFu;

		c->sr->srtt = c->sr->srtt ? c->sr->srtt - c->sr->srtt / 8 + sample / 8 : sample;
		c->sr->rtt_at = 0;
	}
	if (!c->n_sacked && !c->n_lost) {
		sr_delivered(c, ack - 1); /* in order: the last is the latest sent */
		return;
	}
	for (psn = c->snd_una; psn != ack; psn++) {
		if (vr_sr_test(c->sr->sacked, psn)) {
			vr_sr_clear(c->sr->sacked, psn);
			c->n_sacked--;
		}
		if (vr_sr_test(c->sr->lost, psn)) {
			vr_sr_clear(c->sr->lost, psn);
			c->n_lost--;
		}
		sr_delivered(c, psn);
	}
}

/* Every frame from psn to snd_hi is to be sent again: go-back-N rewinds
 * snd_nxt, selective repeat marks those the peer does not hold. */
static void resend_from(struct vr_conn *c, u32 psn)
{
	if (!c->sack) {
		c->snd_nxt = psn;
		return;
	}
	for (; psn != c->snd_hi; psn++) {
		if (!vr_sr_test(c->sr->sacked, psn) && !vr_sr_test(c->sr->lost, psn)) {
			vr_sr_set(c->sr->lost, psn);
			c->n_lost++;
		}
	}
}

/* An ACK or NAK of the peer: its map of what it holds beyond ack_psn. */
void vr_comp_rx_sack(struct vr_engine *eng, struct vr_conn *c, const struct vr_hdr *h, u64 now)
{
	u64 map[VR_SACK_WORDS];
	u32 k, before = c->n_sacked;

	vr_sack_get(h, map);
	for (k = 0; k < VR_SACK_WORDS; k++) {
		while (map[k]) {
			u32 psn = h->ack_psn + 1 + 64 * k + vr_ctz64(map[k]);

			map[k] &= map[k] - 1;
			/* never beyond what we sent (nor, then, beyond our records) */
			if (!vr_psn_lt(psn, c->snd_hi))
				break;
			if (vr_psn_lt(psn, c->snd_una) || vr_sr_test(c->sr->sacked, psn))
				continue;
			vr_sr_set(c->sr->sacked, psn);
			c->n_sacked++;
			if (vr_sr_test(c->sr->lost, psn)) {
				vr_sr_clear(c->sr->lost, psn);
				c->n_lost--;
			}
			sr_delivered(c, psn);
		}
	}
	if (c->n_sacked != before)
		vr_comp_arm_probe(eng, c, now, true);
}

/*
 * RACK's rule counted in transmissions: a frame the peer has neither
 * acknowledged nor held is lost once a frame sent VR_SR_REORDER
 * transmissions after it has arrived.  Links keep frames in order, so a
 * frame sent later that arrived means this one did not; the margin absorbs
 * a little reordering.  Only while the peer holds something: otherwise
 * every frame not acknowledged may still be on its way, and a loss-free
 * stream pays nothing here.
 */
void vr_comp_find_lost(struct vr_engine *eng, struct vr_conn *c)
{
	u32 psn, first = 0;
	bool found = false;

	if (!c->n_sacked)
		return;
	for (psn = c->snd_una; psn != c->snd_hi; psn++) {
		if (vr_sr_test(c->sr->sacked, psn) || vr_sr_test(c->sr->lost, psn) ||
		    (s32)(c->delivered - c->sr->txseq[psn % VR_SR_SPAN]) < VR_SR_REORDER)
			continue;
		vr_sr_set(c->sr->lost, psn);
		c->n_lost++;
		if (!found)
			first = psn;
		found = true;
	}
	if (found)
		vr_cc_on_loss(eng, c, first, false);
}

/*
 * Tail-loss probe: with frames out and nothing heard for the probe time (twice
 * the smoothed round trip, plus the longest a peer waits before it ACKs a
 * frame that did not ask), the frame at snd_una goes again
 * asking for an ACK, whatever the window.  The answer tells what arrived,
 * and by the rule above what did not: a lost ACK or a lost last frame
 * costs a probe time instead of an RTO.  Unanswered, the time doubles
 * (a peer that is only slow gets few probes) until the RTO takes over.
 */
static u64 probe_time(const struct vr_engine *eng, const struct vr_conn *c)
{
	/* before the first sample: as if the round trip were the ACK delay */
	u64 rtt = c->sr->srtt ? c->sr->srtt : eng->cfg.ack_delay_ns;
	u64 base = 2 * rtt + eng->cfg.ack_delay_ns, t = base << c->tail_backoff;

	return (t >> c->tail_backoff) == base && t < eng->cfg.rto_max_ns ? t : eng->cfg.rto_max_ns;
}

void vr_comp_arm_probe(struct vr_engine *eng, struct vr_conn *c, u64 now, bool news)
{
	if (!c->sack)
		return;
	if (news) {
		/* the peer spoke: a probe that has not gone yet is not needed
		 * (and with nothing in flight it would have no frame to send) */
		c->tail_backoff = 0;
		c->tail_probe = false;
	}
	if (c->snd_una == c->snd_hi)
		c->tail_probe_at = VR_U64_MAX;
	else if (news || c->tail_probe_at == VR_U64_MAX)
		c->tail_probe_at = now + probe_time(eng, c);
}

void vr_comp_probe_timer(struct vr_engine *eng, struct vr_conn *c, u64 now)
{
	c->tail_probe_at = VR_U64_MAX;
	if (!c->sack || c->snd_una == c->snd_hi)
		return;
	c->tail_probe = true;
	if (c->tail_backoff < 16)
		c->tail_backoff++;
	c->tail_probe_at = now + probe_time(eng, c);
}

void vr_comp_rto(struct vr_engine *eng, struct vr_conn *c)
{
	vr_cc_on_loss(eng, c, c->snd_una, true);
	if (c->sack && c->retries >= 2 && c->n_sacked) {
		/* A second expiry without progress: whatever the peer's map
		 * said, everything goes again (the peer has no reason to say it
		 * holds what it lacks, but no connection may stall on it). */
		memset(c->sr->sacked, 0, sizeof(c->sr->sacked));
		c->n_sacked = 0;
	}
	resend_from(c, c->snd_una);
}

/* ------------------------------------------------------------- ACKs */

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
	vr_cc_on_ack(c, ack - c->snd_una);
	if (c->sack)
		sr_acked(c, ack, now);
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
	vr_comp_arm_probe(eng, c, now, true);
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
		resend_from(c, psn);
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
		resend_from(c, psn);
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

/*
 * A READ_RESP frame ahead of rcv_nxt (selective repeat): may it be held?
 * Its payload is placed now, as in order; if it is the READ's last, the
 * READ completes when rcv_nxt passes it (vr_comp_resp_end), so completions
 * keep their order.  A frame that fails the READ (an abort, a failed
 * placement) waits for its turn; one for no live READ is a no-op either way.
 */
int vr_comp_rx_resp_ahead(struct vr_engine *eng, struct vr_conn *c, const struct vr_parsed *p)
{
	const struct vr_hdr *h = &p->h;
	struct vr_op *op = op_by_msg(eng, c, h->msg_id);
	const struct vr_region *reg;

	if (h->opcode == VR_OP_ATOMIC_RESP)
		return 0;
	if (!op || op->completed || op->kind != VR_K_READ || h->total_len != op->len)
		return 1;
	if ((h->flags & VR_F_ABORT) ||
	    vr_region_check_pd(&eng->rt, op->lkey, c->ep, c->pd, VR_ACCESS_LOCAL_WRITE,
			       op->loff + h->remote_off, h->payload_len, &reg) ||
	    eng->mem->copy_in(reg->mem, op->loff + h->remote_off, p->payload, h->payload_len))
		return 0;
	return h->remote_off + h->payload_len == op->len ? 2 : 1;
}

/* rcv_nxt passed the held last frame of READ msg_id's response. */
void vr_comp_resp_end(struct vr_engine *eng, struct vr_conn *c, u32 msg_id)
{
	struct vr_op *op = op_by_msg(eng, c, msg_id);

	if (op && !op->completed && op->kind == VR_K_READ)
		op_complete(eng, c, op, 0, 0);
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
	memset(c->sr->sacked, 0, sizeof(c->sr->sacked));
	memset(c->sr->lost, 0, sizeof(c->sr->lost));
	c->n_sacked = c->n_lost = 0;
	c->sr->rtt_at = 0;
	c->tail_probe = false;
	c->rto_deadline = c->tail_probe_at = VR_U64_MAX;
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
