// SPDX-License-Identifier: GPL-2.0 OR MIT
/* requester.c - posting operations, segmentation into PSN-numbered frames,
 * and frame construction for the scheduler (data, control, ACK, NAK). */
#include "internal.h"
#include "crc32c.h"

u32 vr_op_frames(const struct vr_conn *c, u32 kind, u32 len)
{
	if (kind == VR_K_WRITE || kind == VR_K_SEND || kind == VR_K_READ_RESP)
		return len ? len / c->mps + (len % c->mps != 0) : 1; /* 32-bit math only */
	return 1;
}

/*
 * Ops end roughly in the order they began, so the slot after the last one
 * taken is nearly always free: the search starts there and wraps, instead of
 * at slot 0, where it crossed every op in flight (~500 instructions an op at
 * 128 in flight).
 */
struct vr_op *vr_op_alloc(struct vr_engine *eng, struct vr_conn *c, bool response)
{
	u32 n = eng->cfg.max_ops, base = response ? n : 0, k, i = c->alloc_next[response];

	for (k = 0; k < n; k++, i = i + 1 < n ? i + 1 : 0) {
		struct vr_op *op = &c->ops[base + i];

		if (op->kind == VR_K_FREE) {
			u16 gen = op->gen;

			memset(op, 0, sizeof(*op));
			op->gen = (u16)(gen + 1);
			op->msg_id = (base + i) | ((u32)op->gen << 16);
			c->alloc_next[response] = (u16)(i + 1 < n ? i + 1 : 0);
			return op;
		}
	}
	VR_CTR(eng, &eng->eps[c->ep], pool_exhausted, 1);
	return NULL;
}

/* Give the op its PSN range now: retransmission then always rebuilds the
 * same frame for the same PSN. */
void vr_op_enqueue(struct vr_engine *eng, struct vr_conn *c, struct vr_op *op)
{
	u32 cap = 2 * eng->cfg.max_ops;

	op->nframes = vr_op_frames(c, op->kind, op->len);
	op->psn_first = c->snd_max;
	c->snd_max += op->nframes;
	op->in_ring = true;
	c->ring[(c->ring_head + c->ring_len) % cap] = (u16)(op - c->ops);
	c->ring_len++;
}

void vr_op_maybe_free(struct vr_conn *c, struct vr_op *op)
{
	(void)c;
	if (op->in_ring)
		return;
	if (op->kind == VR_K_READ_RESP || op->kind == VR_K_ATOMIC_RESP || op->completed)
		op->kind = VR_K_FREE;
}

static int post_common(struct vr_engine *eng, u32 conn, struct vr_conn **pc)
{
	struct vr_conn *c = vr_conn_get(eng, conn);

	if (!c)
		return -ENOENT;
	if (c->state != VR_CONN_CONNECTED)
		return -ENOTCONN;
	*pc = c;
	return 0;
}

static int post(struct vr_engine *eng, u32 conn, u8 kind, u64 lkey, u64 loff,
		u32 local_access, u64 rkey, u64 roff, u32 len, u64 a, u64 b, u64 cookie)
{
	struct vr_conn *c;
	struct vr_op *op;
	int rc = post_common(eng, conn, &c);

	if (rc)
		return rc;
	if (kind == VR_K_FADD || kind == VR_K_CSWAP) {
		if (roff & 7)
			return -EINVAL;
	} else {
		rc = vr_region_check_pd(&eng->rt, lkey, c->ep, c->pd, local_access, loff, len, NULL);
		if (rc)
			return rc;
	}
	if (kind == VR_K_WRITE && roff > VR_U64_MAX - len)
		return -EINVAL;
	op = vr_op_alloc(eng, c, false);
	if (!op)
		return -EAGAIN;
	op->kind = kind;
	op->lkey = lkey;
	op->loff = loff;
	op->rkey = rkey;
	op->roff = roff;
	op->len = len;
	op->a = a;
	op->b = b;
	op->cookie = cookie;
	vr_op_enqueue(eng, c, op);
	return 0;
}

int vr_post_write(struct vr_engine *eng, u32 conn, u64 lkey, u64 loff,
		  u64 rkey, u64 roff, u32 len, u64 cookie)
{
	return post(eng, conn, VR_K_WRITE, lkey, loff, 0, rkey, roff, len, 0, 0, cookie);
}

int vr_post_read(struct vr_engine *eng, u32 conn, u64 lkey, u64 loff,
		 u64 rkey, u64 roff, u32 len, u64 cookie)
{
	return post(eng, conn, VR_K_READ, lkey, loff, VR_ACCESS_LOCAL_WRITE, rkey, roff,
		    len, 0, 0, cookie);
}

int vr_post_send(struct vr_engine *eng, u32 conn, u64 lkey, u64 loff, u32 len,
		 u64 tag, u64 cookie)
{
	return post(eng, conn, VR_K_SEND, lkey, loff, 0, 0, 0, len, tag, 0, cookie);
}

int vr_post_fadd(struct vr_engine *eng, u32 conn, u64 rkey, u64 roff, u64 add,
		 u64 cookie)
{
	return post(eng, conn, VR_K_FADD, 0, 0, 0, rkey, roff, 8, add, 0, cookie);
}

int vr_post_cswap(struct vr_engine *eng, u32 conn, u64 rkey, u64 roff, u64 compare,
		  u64 swap, u64 cookie)
{
	return post(eng, conn, VR_K_CSWAP, 0, 0, 0, rkey, roff, 8, compare, swap, cookie);
}

/* ------------------------------------------------------------ building */

/* The op in c's ring whose PSN range holds psn, or NULL. */
/*
 * Nearly every call asks for the op of the last answer (the frames of one
 * message go out in a row) or the op after it in the ring (the next
 * message), so those are tried first.  Otherwise a binary search: the ring
 * holds the ops in PSN order and their PSN ranges follow each other without
 * gaps, all inside one window, so modular comparison orders them.  (A scan
 * from the ring's head crossed every op in flight whenever a message of one
 * frame followed another.)
 */
static bool op_has_psn(const struct vr_op *op, u32 psn)
{
	return vr_psn_le(op->psn_first, psn) && vr_psn_lt(psn, op->psn_first + op->nframes);
}

struct vr_op *vr_op_for_psn(const struct vr_engine *eng, struct vr_conn *c, u32 psn)
{
	u32 cap = 2 * eng->cfg.max_ops, lo = 0, hi = c->ring_len;
	struct vr_op *op = &c->ops[c->psn_hint];

	if (op->in_ring && op_has_psn(op, psn))
		return op;
	if (op->in_ring && c->ring[c->psn_hint_pos] == c->psn_hint) {
		u32 next = (u32)c->psn_hint_pos + 1 == cap ? 0 : (u32)c->psn_hint_pos + 1;
		u32 off = next >= c->ring_head ? next - c->ring_head : next + cap - c->ring_head;

		if (off < c->ring_len && op_has_psn(&c->ops[c->ring[next]], psn)) {
			c->psn_hint = c->ring[next];
			c->psn_hint_pos = (u16)next;
			return &c->ops[c->psn_hint];
		}
	}
	while (lo < hi) {
		u32 mid = lo + (hi - lo) / 2, pos = c->ring_head + mid;
		u16 idx;

		if (pos >= cap)
			pos -= cap;
		idx = c->ring[pos];
		op = &c->ops[idx];
		if (vr_psn_lt(psn, op->psn_first)) {
			hi = mid;
		} else if (!vr_psn_lt(psn, op->psn_first + op->nframes)) {
			lo = mid + 1;
		} else {
			c->psn_hint = idx;
			c->psn_hint_pos = (u16)pos;
			return op;
		}
	}
	return NULL;
}

static u8 seg_opcode(u8 first, u32 i, u32 n)
{
	if (n == 1)
		return first + 3; /* *_ONLY */
	if (i == 0)
		return first;
	return i == n - 1 ? first + 2 : first + 1;
}

static void hdr_base(struct vr_engine *eng, struct vr_conn *c, struct vr_hdr *h, u8 opcode)
{
	memset(h, 0, sizeof(*h));
	h->version = VR_WIRE_VERSION;
	h->opcode = opcode;
	h->src_ep = c->ep;
	h->dst_ep = c->peer_ep;
	h->conn_id = c->peer_id;
	h->ack_psn = c->rcv_nxt;
	(void)eng;
}

static void auth_walk_copy(struct vr_engine *eng, void *mem, u64 off, u32 len,
			   struct vr_auth_mac *m)
{
	u8 buf[256];

	while (len) {
		u32 n = len < sizeof(buf) ? len : sizeof(buf);

		if (eng->mem->copy_out(mem, off, buf, n))
			memset(buf, 0, n); /* the peer's check fails: as a lost frame */
		vr_auth_update(m, buf, n);
		off += n;
		len -= n;
	}
}

/* The tag of the frame being finished in buf (headers encoded, CRC field
 * 0): over both headers and the payload, which is data (contiguous) or in
 * src's memory at off.  Writes the auth block after the vmrdma header. */
static void auth_sign(struct vr_engine *eng, struct vr_conn *c, u8 *buf, const u8 *data,
		      const struct vr_region *src, u64 off, u32 len)
{
	struct vr_auth_mac m;
	u64 nonce = c->keys->tx_nonce++ | (c->passive ? VR_AUTH_NONCE_PASSIVE : 0);
	u8 *block = buf + VR_ETH_HLEN + VR_HDR_LEN;

	vr_auth_begin(&m, c->keys->key, nonce);
	vr_auth_update(&m, buf, VR_ETH_HLEN + VR_HDR_LEN);
	if (len && data)
		vr_auth_update(&m, data, len);
	else if (len && eng->mem->walk)
		eng->mem->walk(src->mem, off, len, vr_auth_update, &m);
	else if (len)
		auth_walk_copy(eng, src->mem, off, len, &m);
	vr_put_be64(block, nonce);
	vr_auth_finish(&m, block + 8);
}

/*
 * Finish txf: Ethernet header, vmrdma header, the auth block on an
 * authenticated connection, and the payload: a fragment of src's memory at
 * off, or (a handshake's private data) the bytes at data, copied after the
 * headers into eng->ctlframe.
 */
static void finish(struct vr_engine *eng, struct vr_conn *c, struct vr_hdr *h,
		   const struct vr_region *src, u64 off, const u8 *data, u8 what)
{
	u8 *buf = data ? eng->ctlframe : eng->txhdr;
	u32 hl, st;

	if (c->auth)
		h->flags |= VR_F_AUTH; /* the tag covers the payload: no LINK_FCS */
	else if (h->payload_len && c->link_fcs && !data)
		h->flags |= VR_F_LINK_FCS; /* data payloads only: private data is always checked */
	vr_wire_put_eth(buf, c->peer_mac, eng->cfg.mac, eng->cfg.ethertype);
	vr_wire_encode(buf + VR_ETH_HLEN, h);
	hl = vr_wire_hdrs_len(h->flags);
	eng->txf.nfrags = 0;
	if (data) {
		memcpy(buf + hl, data, h->payload_len);
	} else if (h->payload_len) {
		eng->txf.frag[0].mem = src->mem;
		eng->txf.frag[0].off = off;
		eng->txf.frag[0].len = h->payload_len;
		eng->txf.nfrags = 1;
	}
	if (c->auth) {
		auth_sign(eng, c, buf, data, src, off, h->payload_len);
		st = vr_wire_auth_crc_state(buf);
	} else {
		st = vr_wire_hdr_crc_state(buf);
		if (data)
			st = vr_crc32c_update(st, data, h->payload_len);
		else if (h->payload_len && !c->link_fcs)
			st = eng->mem->crc32c(src->mem, off, h->payload_len, st);
	}
	vr_wire_set_crc(buf, st ^ 0xFFFFFFFFu);
	eng->txf.hdr = buf;
	eng->txf.hdr_len = hl + (data ? h->payload_len : 0);
	eng->txf.len = hl + h->payload_len;
	eng->txf.ep = c->ep;
	eng->tx_conn = c;
	eng->tx_what = what;
}

static void abort_op(struct vr_engine *eng, struct vr_conn *c, struct vr_op *op, int err)
{
	op->aborted = true;
	op->abort_reason = vr_errno_to_nak(err);
	if (op->kind <= VR_K_CSWAP && !op->completed) {
		op->completed = true;
		vr_complete(eng, &eng->eps[c->ep], op->kind == VR_K_WRITE ? VR_WC_WRITE :
			    VR_WC_SEND, op->cookie, -ECANCELED, c->id, 0, 0, 0);
	}
}

static bool build_data(struct vr_engine *eng, struct vr_conn *c)
{
	struct vr_op *op = vr_op_for_psn(eng, c, c->snd_nxt);
	const struct vr_region *src = NULL;
	struct vr_hdr h;
	u32 i, seg_off = 0, pl = 0;
	u64 src_off = 0;
	int rc;

	if (!op)
		return false; /* cannot happen: PSNs in [una,max) always map */
	i = c->snd_nxt - op->psn_first;
	if (op->kind == VR_K_WRITE || op->kind == VR_K_SEND || op->kind == VR_K_READ_RESP) {
		seg_off = i * c->mps;
		pl = op->len - seg_off < c->mps ? op->len - seg_off : c->mps;
	}
	switch (op->kind) {
	case VR_K_WRITE:
		hdr_base(eng, c, &h, seg_opcode(VR_OP_WRITE_FIRST, i, op->nframes));
		h.rkey = op->rkey;
		h.remote_off = op->roff + seg_off;
		break;
	case VR_K_SEND:
		hdr_base(eng, c, &h, seg_opcode(VR_OP_SEND_FIRST, i, op->nframes));
		h.remote_off = seg_off;
		h.operand_a = op->a;
		break;
	case VR_K_READ_RESP:
		hdr_base(eng, c, &h, seg_opcode(VR_OP_READ_RESP_FIRST, i, op->nframes));
		h.remote_off = seg_off;
		break;
	case VR_K_READ:
		hdr_base(eng, c, &h, VR_OP_READ_REQ);
		h.rkey = op->rkey;
		h.remote_off = op->roff;
		break;
	case VR_K_FADD:
	case VR_K_CSWAP:
		hdr_base(eng, c, &h, op->kind == VR_K_FADD ? VR_OP_ATOMIC_FADD :
			 VR_OP_ATOMIC_CSWAP);
		h.rkey = op->rkey;
		h.remote_off = op->roff;
		h.operand_a = op->a;
		h.operand_b = op->b;
		break;
	default: /* VR_K_ATOMIC_RESP */
		hdr_base(eng, c, &h, VR_OP_ATOMIC_RESP);
		h.operand_a = op->a;
		break;
	}
	h.psn = c->snd_nxt;
	h.msg_id = op->msg_id;
	h.total_len = op->len;
	if (i == op->nframes - 1)
		h.flags |= VR_F_ACKREQ;
	if (pl && !op->aborted) {
		/* Re-validate at every transmission: the region may be gone. */
		if (op->kind == VR_K_READ_RESP) {
			src_off = op->roff + seg_off;
			rc = vr_region_check_pd(&eng->rt, op->rkey, c->ep, c->pd, VR_ACCESS_REMOTE_READ,
					     src_off, pl, &src);
		} else {
			src_off = op->loff + seg_off;
			rc = vr_region_check_pd(&eng->rt, op->lkey, c->ep, c->pd, 0, src_off, pl, &src);
		}
		if (rc)
			abort_op(eng, c, op, rc);
	}
	if (op->aborted && (op->kind == VR_K_WRITE || op->kind == VR_K_SEND ||
			    op->kind == VR_K_READ_RESP)) {
		h.flags |= VR_F_ABORT;
		if (op->kind == VR_K_READ_RESP)
			h.nak_reason = op->abort_reason;
		pl = 0;
	}
	h.payload_len = (u16)pl;
	finish(eng, c, &h, src, src_off, NULL, VR_TX_DATA);
	return true;
}

static bool data_ready(const struct vr_conn *c, u64 now)
{
	return c->state == VR_CONN_CONNECTED && c->snd_nxt != c->snd_max &&
	       c->snd_nxt - c->snd_una < c->cwnd &&
	       (!c->rnr_until || now >= c->rnr_until);
}

/* CLOSING: a response frame that is next in PSN order and within the
 * window still goes out before the DISCONNECT (one best-effort pass). */
static bool close_drain_ready(const struct vr_engine *eng, struct vr_conn *c)
{
	const struct vr_op *op;

	if (c->snd_nxt == c->snd_max || c->snd_nxt - c->snd_una >= c->cwnd)
		return false;
	op = vr_op_for_psn(eng, c, c->snd_nxt);
	return op && (op->kind == VR_K_READ_RESP || op->kind == VR_K_ATOMIC_RESP);
}

/* Build the next frame of connection c into eng->txf without changing
 * protocol state (the host may refuse it); vr_tx_commit applies it. */
int vr_tx_build(struct vr_engine *eng, struct vr_conn *c, u64 now)
{
	struct vr_hdr h;
	const u8 *data = NULL;

	if (c->state == VR_CONN_CLOSING && close_drain_ready(eng, c))
		return build_data(eng, c);
	if (c->ctl_pending) {
		switch (c->state) {
		case VR_CONN_CONNECTING:
			hdr_base(eng, c, &h, VR_OP_CONNECT_REQ);
			h.conn_id = 0;
			h.ack_psn = 0;
			h.psn = c->isn;
			h.msg_id = c->id;
			h.operand_b = c->hs_cookie; /* 0 until a listener's RETRY */
			if (c->auth)
				h.operand_a = VR_CAP_AUTH;
			else if (eng->cfg.integrity == VR_INTEGRITY_LINK)
				h.operand_a = VR_CAP_LINK_FCS;
			data = c->pdata;
			h.payload_len = c->pdata_len;
			break;
		case VR_CONN_CONNECTED:
			hdr_base(eng, c, &h, VR_OP_CONNECT_ACK);
			h.psn = c->isn;
			h.ack_psn = c->peer_isn; /* the initiator's nonce, proving we saw it */
			h.msg_id = c->id;
			if (c->auth)
				h.operand_a = VR_CAP_AUTH;
			else if (c->link_fcs)
				h.operand_a = VR_CAP_LINK_FCS;
			data = eng->eps[c->ep].accept;
			h.payload_len = eng->eps[c->ep].accept_len;
			break;
		default:
			hdr_base(eng, c, &h, VR_OP_DISCONNECT);
			h.psn = c->snd_hi; /* proves it comes from inside the connection */
			break;
		}
		finish(eng, c, &h, NULL, 0, h.payload_len ? data : NULL, VR_TX_CTL);
		return 1;
	}
	if (c->state != VR_CONN_CONNECTED)
		return 0;
	if (c->nak_reason) {
		hdr_base(eng, c, &h, VR_OP_NAK);
		h.nak_reason = c->nak_reason;
		h.psn = c->nak_psn;
		finish(eng, c, &h, NULL, 0, NULL, VR_TX_NAK);
		return 1;
	}
	if (data_ready(c, now))
		return build_data(eng, c);
	if (c->ack_now || c->probe) {
		hdr_base(eng, c, &h, VR_OP_ACK);
		h.psn = c->snd_hi; /* inside the peer's window (engine.c in_windows) */
		if (c->probe)
			h.flags |= VR_F_ACKREQ; /* keepalive: answer with an ACK */
		finish(eng, c, &h, NULL, 0, NULL, VR_TX_ACK);
		return 1;
	}
	return 0;
}

static void ack_sent(struct vr_conn *c)
{
	c->ack_now = false;
	c->probe = false; /* any frame we send carries our ACK; a probe is an ACK */
	c->unacked_rx = 0;
	c->ack_deadline = VR_U64_MAX;
}

void vr_tx_commit(struct vr_engine *eng, u64 now)
{
	struct vr_conn *c = eng->tx_conn;
	struct vr_ep *e = &eng->eps[c->ep];
	u64 backoff;

	switch (eng->tx_what) {
	case VR_TX_CTL:
		c->ctl_pending = false;
		if (c->state == VR_CONN_CONNECTING) {
			backoff = eng->cfg.rto_ns << (c->ctl_retries < 16 ? c->ctl_retries : 16);
			if (backoff > eng->cfg.rto_max_ns)
				backoff = eng->cfg.rto_max_ns;
			c->ctl_deadline = now + backoff;
		} else if (c->state == VR_CONN_CLOSING) {
			vr_conn_free(eng, c);
		}
		break;
	case VR_TX_NAK:
		VR_CTR(eng, e, naks_tx[c->nak_reason], 1);
		if (vr_nak_fatal(c->nak_reason)) {
			/* The request was refused for good: the connection that
			 * sent it closes here too, so a guesser cannot go on at
			 * the same PSN, and its MAC's offence is counted. */
			vr_offence_record(eng, c->peer_mac, now);
			c->nak_reason = 0;
			ack_sent(c);
			vr_conn_fail(eng, c, -ECONNRESET, false);
			break;
		}
		c->nak_reason = 0;
		ack_sent(c);
		break;
	case VR_TX_ACK:
		VR_CTR(eng, e, acks_tx, 1);
		ack_sent(c);
		break;
	case VR_TX_DATA:
		VR_CTR(eng, e, tx_data_frames, 1);
		if (c->snd_nxt == c->snd_hi)
			c->snd_hi++;
		else
			VR_CTR(eng, e, retransmits, 1);
		c->snd_nxt++;
		if (c->rto_deadline == VR_U64_MAX)
			c->rto_deadline = now + c->rto;
		ack_sent(c);
		break;
	default:
		break;
	}
}
