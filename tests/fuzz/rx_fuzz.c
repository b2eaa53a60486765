// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * rx_fuzz.c - libFuzzer target for the vmrdma receive path: the wire parser
 * and the engine behind it.  Input format: rx_fuzz.h.
 *
 * Per input: (a) vr_wire_parse over the raw input and over every record;
 * (b) a fresh engine in static memory (fixed small config, deterministic
 * random, counting xmit) with endpoints, guarded regions and two live
 * connections, fed the input's frames with an advancing virtual clock,
 * tx_poll and timers in between.  Oracles (abort on violation):
 *   - guard bytes around every region and after the engine memory intact;
 *   - after every engine call, each changed byte of region memory lies in a
 *     window that call may legitimately write (a WRITE's target range with
 *     exactly the payload bytes, an ATOMIC's 8 bytes with the FADD/CSWAP
 *     result, posted receive buffers for SEND, outstanding READ buffers for
 *     READ_RESP, the new receive's buffer for vr_post_recv; nothing for
 *     tx_poll / on_timer / other calls);
 *   - every transmitted frame parses, fits the MTU, and its payload
 *     fragments lie inside a live region owned by the sending endpoint
 *     (with REMOTE_READ for READ_RESP payload);
 *   - each posted op completes at most once, with the right op code, and
 *     after vr_engine_destroy every posted op has completed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "crc32c.h"
#include "rx_fuzz.h"

#define FAIL(...) do { fprintf(stderr, "rx_fuzz: " __VA_ARGS__); \
	fputc('\n', stderr); abort(); } while (0)
#define CHECK(cond, ...) do { if (!(cond)) FAIL(__VA_ARGS__); } while (0)

#define HDRS (VR_ETH_HLEN + VR_HDR_LEN)
#define MTU 1500
#define MAX_RECORDS 96
#define GUARD 64
#define ENG_MEM (256 * 1024)
#define ENG_TAIL 256
#define MAX_MOPS 128
#define MAX_WIN 1024 /* a bundle brings a window per inner frame */

struct rxf_stats rxf_last_stats;

/* ------------------------------------------------------------ model */

struct mreg {
	u32 off, len, access;   /* off: into arena */
	u16 ep;
	u64 key;
	bool live;
};

static const struct { u32 len, access; u16 ep; } reg_spec[RXF_NREG] = {
	{ 4096, VR_ACCESS_ALL, 0 },                                     /* R0 */
	{ 256, VR_ACCESS_REMOTE_READ, 0 },                              /* R1 */
	{ 1024, VR_ACCESS_ALL, 1 },                                     /* R2 */
	{ 512, VR_ACCESS_LOCAL_WRITE | VR_ACCESS_REMOTE_READ, 0 },      /* R3 */
	{ 64, VR_ACCESS_REMOTE_ATOMIC | VR_ACCESS_REMOTE_WRITE, 0 },    /* R4 */
};

#define ARENA (GUARD + 4096 + GUARD + 256 + GUARD + 1024 + GUARD + 512 + GUARD + 64 + GUARD)

static u8 arena[ARENA] __attribute__((aligned(64)));
static u8 shadow[ARENA];
static u8 engmem[ENG_MEM + ENG_TAIL] __attribute__((aligned(64)));
static struct mreg regs[RXF_NREG];

enum { MOP_FREE, MOP_POSTED, MOP_DONE, MOP_REFUSED };

struct mop {
	u8 state;
	u32 wc_op;          /* enum vr_wc_op expected */
	int reg;            /* local window (READ, RECV) or -1 */
	u64 key;            /* key of reg at post time */
	u64 loff;
	u32 len;
	u16 ep;
};

static struct mop mops[MAX_MOPS];
static u32 nmops;
#define COOKIE_BASE 0x1000u

struct win {
	u8 *lo, *hi;         /* [lo, hi) */
	const u8 *expect;    /* exact new bytes, or NULL */
	int atomic;          /* 0, VR_OP_ATOMIC_FADD or VR_OP_ATOMIC_CSWAP */
	u64 a, b;
	u32 psn;             /* atomics: a copy with the same PSN is a replay */
};

static struct win wins[MAX_WIN];
static u32 nwins;
static bool wins_overflow; /* more windows than MAX_WIN: region bytes unchecked */

struct lconn {
	bool known;
	u16 ep;
	u32 id, isn;
};

static struct vr_engine *eng;
static bool ep_closed[5];  /* closed by RXF_A_EP_CLOSE and not reopened yet */
static struct lconn conns[RXF_MAX_CONNS];
static u32 last_req_msg[64]; /* by op slot (low 6 bits) */
static u64 last_cookie;      /* of the last CONNECT_RETRY the engine sent */
static u32 rnd_state;
static u64 now;
static int xmit_mode;
static u32 xmit_count;
static const char *cur_what = "setup";

static u32 h_random(void *ctx)
{
	(void)ctx;
	rnd_state = rnd_state * 1103515245u + 12345u;
	return rnd_state ^ (rnd_state >> 16);
}

/* A live model region that wholly contains [p, p+len), or -1. */
static int region_of(const u8 *p, u64 off, u32 len)
{
	int i;

	for (i = 0; i < RXF_NREG; i++) {
		const struct mreg *r = &regs[i];

		if (r->live && p == arena + r->off && off <= r->len && len <= r->len - off)
			return i;
	}
	return -1;
}

static int region_by_key(u64 key)
{
	int i;

	for (i = 0; i < RXF_NREG; i++)
		if (regs[i].live && regs[i].key == key)
			return i;
	return -1;
}

static void learn_tx(const struct vr_parsed *p)
{
	const struct vr_hdr *h = &p->h;
	u32 slot = h->msg_id & 0xFFFF;

	switch (h->opcode) {
	case VR_OP_CONNECT_REQ:
	case VR_OP_CONNECT_ACK:
		if (slot < RXF_MAX_CONNS) {
			conns[slot].known = true;
			conns[slot].id = h->msg_id;
			conns[slot].isn = h->psn;
			conns[slot].ep = h->src_ep;
		}
		break;
	case VR_OP_CONNECT_RETRY:
		last_cookie = h->operand_b;
		break;
	case VR_OP_WRITE_FIRST: case VR_OP_WRITE_ONLY:
	case VR_OP_SEND_FIRST: case VR_OP_SEND_ONLY:
	case VR_OP_READ_REQ: case VR_OP_ATOMIC_FADD: case VR_OP_ATOMIC_CSWAP:
		last_req_msg[slot % 64] = h->msg_id;
		break;
	default:
		break;
	}
}

static int h_xmit(void *ctx, const struct vr_frame *f)
{
	static u8 buf[HDRS + VR_MTU_MAX];
	struct vr_parsed p;
	u32 len, i;
	int rc;

	(void)ctx;
	/* Headers alone, or a control frame whose payload (private data, a
	 * name) travels with them: then no fragments. */
	CHECK(f->hdr && f->hdr_len >= HDRS && f->hdr_len <= HDRS + VR_PRIVATE_DATA_MAX &&
	      f->nfrags <= VR_MAX_FRAGS && (f->hdr_len == HDRS || !f->nfrags),
	      "[%s] bad frame shape hdr_len=%u nfrags=%u", cur_what, f->hdr_len, f->nfrags);
	CHECK(f->len <= VR_ETH_HLEN + MTU, "[%s] frame of %u bytes exceeds MTU", cur_what,
	      f->len);
	memcpy(buf, f->hdr, f->hdr_len);
	len = f->hdr_len;
	for (i = 0; i < f->nfrags; i++) {
		const struct vr_frag *fr = &f->frag[i];
		int r = region_of(fr->mem, fr->off, fr->len);

		CHECK(r >= 0, "[%s] xmit fragment %u (off %llu len %u) not inside a live region",
		      cur_what, i, (unsigned long long)fr->off, fr->len);
		CHECK(regs[r].ep == f->ep, "[%s] xmit from region R%d of ep %u on ep %u",
		      cur_what, r, regs[r].ep, f->ep);
		CHECK(len + fr->len <= sizeof(buf), "[%s] frame too long", cur_what);
		memcpy(buf + len, (const u8 *)fr->mem + fr->off, fr->len);
		len += fr->len;
	}
	CHECK(len == f->len, "[%s] frame len %u != hdr+frags %u", cur_what, f->len, len);
	rc = vr_wire_parse(buf, len, VR_ETHERTYPE_DEFAULT, &p);
	CHECK(rc == 0, "[%s] engine sent a frame its own parser rejects (%d), opcode 0x%02x",
	      cur_what, rc, buf[VR_ETH_HLEN + VR_OFF_OPCODE]);
	CHECK(!memcmp(p.src_mac, RXF_OUR_MAC, 6), "[%s] wrong source MAC", cur_what);
	if (p.h.opcode >= VR_OP_READ_RESP_FIRST && p.h.opcode <= VR_OP_READ_RESP_ONLY &&
	    f->nfrags) {
		int r = region_of(f->frag[0].mem, f->frag[0].off, f->frag[0].len);

		CHECK(regs[r].access & VR_ACCESS_REMOTE_READ,
		      "[%s] READ_RESP payload from R%d without REMOTE_READ", cur_what, r);
	}
	learn_tx(&p);
	xmit_count++;
	rxf_last_stats.xmits++;
	if (xmit_mode == 1)
		return -EAGAIN;
	if (xmit_mode == 2 && (xmit_count & 1))
		return -EIO;
	return 0;
}

static void h_complete(void *ctx, const struct vr_completion *c)
{
	struct mop *m;

	(void)ctx;
	rxf_last_stats.completions++;
	if (c->op == VR_WC_ACCEPT || c->op == VR_WC_DISCONNECT)
		return;
	CHECK(c->cookie >= COOKIE_BASE && c->cookie < COOKIE_BASE + nmops,
	      "[%s] completion op %u with unknown cookie 0x%llx", cur_what, c->op,
	      (unsigned long long)c->cookie);
	m = &mops[c->cookie - COOKIE_BASE];
	CHECK(m->state != MOP_REFUSED, "[%s] op cookie 0x%llx (wc op %u) completed although "
	      "its post failed", cur_what, (unsigned long long)c->cookie, c->op);
	CHECK(m->state == MOP_POSTED, "[%s] op cookie 0x%llx (wc op %u) completed twice",
	      cur_what, (unsigned long long)c->cookie, c->op);
	CHECK(m->wc_op == c->op, "[%s] cookie 0x%llx posted as wc op %u completed as %u",
	      cur_what, (unsigned long long)c->cookie, m->wc_op, c->op);
	CHECK(c->status <= 0, "[%s] positive status", cur_what);
	m->state = MOP_DONE;
	if (!c->status)
		rxf_last_stats.ok_completions++;
}

static const struct vr_host_ops host_ops = {
	.xmit = h_xmit,
	.complete = h_complete,
	.random = h_random,
};

static u64 new_cookie(u32 wc_op, int reg, u64 loff, u32 len, u16 ep, struct mop **out)
{
	struct mop *m;

	if (nmops == MAX_MOPS)
		return 0;
	m = &mops[nmops];
	memset(m, 0, sizeof(*m));
	m->wc_op = wc_op;
	m->reg = reg;
	m->key = reg >= 0 ? regs[reg].key : 0;
	m->loff = loff;
	m->len = len;
	m->ep = ep;
	m->state = MOP_POSTED; /* before the call: completions may be synchronous */
	*out = m;
	return COOKIE_BASE + nmops++;
}

/* The post that new_cookie was made for failed synchronously: no completion
 * may ever name the cookie. */
static void cookie_refused(struct mop *m)
{
	m->state = MOP_REFUSED;
}

/* --------------------------------------------------- memory checking */

/* Adds a window; an identical one (the frames of a bundle that all name
 * the same posted receive, a replayed atomic) is added once. */
static void win_add(u8 *lo, u32 len, const u8 *expect, int atomic, u64 a, u64 b, u32 psn)
{
	struct win nw = { lo, lo + len, expect, atomic, a, b, psn };
	u32 v;

	if (!len)
		return;
	for (v = 0; v < nwins; v++) {
		const struct win *o = &wins[v];

		if (o->lo == nw.lo && o->hi == nw.hi && o->expect == nw.expect &&
		    o->atomic == nw.atomic && o->a == nw.a && o->b == nw.b && o->psn == nw.psn)
			return;
	}
	if (nwins == MAX_WIN) {
		wins_overflow = true;
		return;
	}
	wins[nwins++] = nw;
}

/*
 * The atomics of this call over the word at wins[w] (a bundle may hold
 * several) each run at most once, in frame order: is newv one of the values
 * that can give?  A WRITE over the same word too, or too many atomics to
 * enumerate: only the range check applies.
 */
static bool atomics_explain(u32 w, u64 oldv, u64 newv)
{
	u32 idx[10], k = 0, v, mask;

	for (v = 0; v < nwins; v++) {
		if (wins[v].lo >= wins[w].hi || wins[w].lo >= wins[v].hi)
			continue;
		if (!wins[v].atomic || wins[v].lo != wins[w].lo || k == 10)
			return true;
		idx[k++] = v;
	}
	for (mask = 0; mask < (1u << k); mask++) {
		u64 x = oldv;

		for (v = 0; v < k; v++) {
			const struct win *a = &wins[idx[v]];

			if (!(mask & (1u << v)))
				continue;
			if (a->atomic == VR_OP_ATOMIC_FADD)
				x += a->a;
			else if (x == a->a)
				x = a->b;
		}
		if (x == newv)
			return true;
	}
	return false;
}

/* Window of a posted local buffer if its key is still the region's key. */
static void win_add_mop(const struct mop *m)
{
	const struct mreg *r;

	if (m->reg < 0)
		return;
	r = &regs[m->reg];
	if (!r->live || r->key != m->key || m->loff > r->len || m->len > r->len - m->loff)
		return;
	win_add(arena + r->off + m->loff, m->len, NULL, 0, 0, 0, 0);
}

static void check_mem(void)
{
	u32 i, w;
	bool covered;

	if (!memcmp(arena, shadow, ARENA))
		goto tail;
	for (i = 0; i < ARENA; i++) {
		u8 *p = arena + i;

		if (*p == shadow[i])
			continue;
		rxf_last_stats.changed++;
		/* Frames of a bundle may overlap: a byte is right if it is what
		 * any window over it would have written. */
		covered = false;
		for (w = 0; w < nwins; w++) {
			if (p < wins[w].lo || p >= wins[w].hi)
				continue;
			covered = true;
			if (!wins[w].expect || *p == wins[w].expect[p - wins[w].lo])
				break;
		}
		if (!covered) {
			int r, in = -1;

			for (r = 0; r < RXF_NREG; r++)
				if (i >= regs[r].off && i < regs[r].off + regs[r].len)
					in = r;
			if (in >= 0 && wins_overflow)
				continue;
			if (in >= 0)
				FAIL("[%s] R%d offset %u changed 0x%02x -> 0x%02x outside any "
				     "window this call may write", cur_what, in, i - regs[in].off,
				     shadow[i], *p);
			FAIL("[%s] guard byte at arena offset %u changed 0x%02x -> 0x%02x",
			     cur_what, i, shadow[i], *p);
		}
		CHECK(w < nwins || wins_overflow,
		      "[%s] WRITE placed 0x%02x, which no frame's payload has there", cur_what, *p);
	}
	for (w = 0; w < nwins; w++) {
		u64 oldv, newv;
		u32 v;

		if (!wins[w].atomic)
			continue;
		for (v = 0; v < w; v++) /* each word once */
			if (wins[v].atomic && wins[v].lo == wins[w].lo)
				break;
		if (v < w)
			continue;
		memcpy(&oldv, shadow + (wins[w].lo - arena), 8);
		memcpy(&newv, wins[w].lo, 8);
		CHECK(atomics_explain(w, oldv, newv),
		      "[%s] atomics produced %llx from %llx, which no order of them applied "
		      "at most once gives", cur_what, (unsigned long long)newv,
		      (unsigned long long)oldv);
	}
	memcpy(shadow, arena, ARENA);
tail:
	for (i = 0; i < ENG_TAIL; i++)
		CHECK(engmem[ENG_MEM + i] == (u8)(0xA5 ^ i),
		      "[%s] engine memory overrun at tail byte %u", cur_what, i);
	nwins = 0;
	wins_overflow = false;
}

/* Windows that one lone frame may write, added to those already found. */
static void lone_frame_windows(const u8 *f, u32 len)
{
	struct vr_parsed p;
	const struct vr_hdr *h = &p.h;
	const struct mreg *r;
	int k;
	u32 i;

	if (vr_wire_parse(f, len, VR_ETHERTYPE_DEFAULT, &p))
		return;
	switch (h->opcode) {
	case VR_OP_WRITE_FIRST: case VR_OP_WRITE_MIDDLE:
	case VR_OP_WRITE_LAST: case VR_OP_WRITE_ONLY:
	case VR_OP_ATOMIC_FADD: case VR_OP_ATOMIC_CSWAP: {
		bool atomic = h->opcode >= VR_OP_ATOMIC_FADD;
		u32 need = atomic ? VR_ACCESS_REMOTE_ATOMIC : VR_ACCESS_REMOTE_WRITE;
		u64 n = atomic ? 8 : h->payload_len;

		k = region_by_key(h->rkey);
		if (k < 0)
			return;
		r = &regs[k];
		if (r->ep != h->dst_ep || (r->access & need) != need ||
		    h->remote_off > r->len || n > r->len - h->remote_off)
			return;
		if (atomic)
			win_add(arena + r->off + h->remote_off, 8, NULL, h->opcode,
				h->operand_a, h->operand_b, h->psn);
		else
			win_add(arena + r->off + h->remote_off, (u32)n, p.payload, 0, 0, 0, 0);
		return;
	}
	case VR_OP_SEND_FIRST: case VR_OP_SEND_MIDDLE:
	case VR_OP_SEND_LAST: case VR_OP_SEND_ONLY:
		for (i = 0; i < nmops; i++)
			if (mops[i].state == MOP_POSTED && mops[i].wc_op == VR_WC_RECV &&
			    mops[i].ep == h->dst_ep)
				win_add_mop(&mops[i]);
		return;
	case VR_OP_READ_RESP_FIRST: case VR_OP_READ_RESP_MIDDLE:
	case VR_OP_READ_RESP_LAST: case VR_OP_READ_RESP_ONLY:
		for (i = 0; i < nmops; i++)
			if (mops[i].state == MOP_POSTED && mops[i].wc_op == VR_WC_READ &&
			    mops[i].ep == h->dst_ep)
				win_add_mop(&mops[i]);
		return;
	default:
		return;
	}
}

/* Windows that an input frame (or each frame of a bundle) may write, from
 * the model (not the engine). */
static void frame_windows(const u8 *f, u32 len)
{
	u32 at, n;

	nwins = 0;
	wins_overflow = false;
	if (!vr_wire_is_bundle(f, len)) {
		lone_frame_windows(f, len);
		return;
	}
	/* Walked here, not with vr_wire_bundle_next: a bug there must not
	 * blind the model.  Windows for entries of a bundle the engine
	 * refuses whole only make the check more lenient. */
	at = VR_ETH_HLEN + VR_BUNDLE_HLEN;
	while (len >= at + VR_BUNDLE_ENTRY_HLEN) {
		n = vr_get_be16(f + at);
		at += VR_BUNDLE_ENTRY_HLEN;
		if (n > len - at)
			break;
		lone_frame_windows(f + at, n);
		at += n;
	}
}

/* ------------------------------------------------------------ driving */

static void poll_all(void)
{
	int i;

	cur_what = "tx_poll/on_timer";
	for (i = 0; i < 4; i++) {
		if (vr_engine_next_timeout(eng) <= now)
			vr_engine_on_timer(eng, now);
		if (vr_engine_tx_poll(eng, now, 16) <= 0)
			break;
	}
	check_mem();
}

static int feed(const u8 *frame, u32 len, const char *what)
{
	u8 *copy = malloc(len ? len : 1); /* exact size: ASan sees over-reads */
	int rc;

	CHECK(copy, "malloc");
	memcpy(copy, frame, len);
	cur_what = what;
	frame_windows(copy, len);
	now += 1000;
	rc = vr_engine_input(eng, copy, len, now);
	check_mem();
	free(copy);
	rxf_last_stats.frames++;
	if (!rc)
		rxf_last_stats.accepted++;
	poll_all();
	return rc;
}

static void fixup(u8 *f, u32 len)
{
	u8 *h = f + VR_ETH_HLEN;
	u32 cid, slot, v;
	u8 op;

	vr_wire_put_eth(f, RXF_OUR_MAC, RXF_PEER_MAC, VR_ETHERTYPE_DEFAULT);
	h[VR_OFF_VERSION] = VR_WIRE_VERSION;
	vr_put_be16(h + VR_OFF_RESERVED, 0);
	vr_put_be32(h + VR_OFF_RESERVED2, 0);
	vr_put_be16(h + VR_OFF_PAYLOAD_LEN, (u16)(len - HDRS));
	op = h[VR_OFF_OPCODE];
	cid = vr_get_be32(h + VR_OFF_CONN);
	if (cid < RXF_MAX_CONNS && conns[cid].known) {
		slot = cid;
		vr_put_be32(h + VR_OFF_CONN, conns[slot].id);
		vr_put_be32(h + VR_OFF_ACK_PSN, vr_get_be32(h + VR_OFF_ACK_PSN) + conns[slot].isn);
		if (op == VR_OP_NAK)
			vr_put_be32(h + VR_OFF_PSN, vr_get_be32(h + VR_OFF_PSN) + conns[slot].isn);
	}
	if (op == VR_OP_CONNECT_REQ && vr_get_be64(h + VR_OFF_OPERAND_B) == 1)
		vr_put_be64(h + VR_OFF_OPERAND_B, last_cookie);
	if (vr_get_be64(h + VR_OFF_RKEY) < 16)
		vr_put_be64(h + VR_OFF_RKEY, regs[vr_get_be64(h + VR_OFF_RKEY) % RXF_NREG].key);
	v = vr_get_be32(h + VR_OFF_MSG_ID);
	if (((op >= VR_OP_READ_RESP_FIRST && op <= VR_OP_READ_RESP_ONLY) ||
	     op == VR_OP_ATOMIC_RESP) && v < 0x10000 && last_req_msg[v % 64])
		vr_put_be32(h + VR_OFF_MSG_ID, last_req_msg[v % 64]);
	vr_put_be32(h + VR_OFF_CRC, 0);
	vr_wire_set_crc(f, vr_crc32c_final(vr_crc32c_update(vr_wire_hdr_crc_state(f),
							    f + HDRS, len - HDRS)));
}

/* FIXUP of a bundle: its header made valid, each entry that fits fixed up
 * as a lone frame, the count set to the entries found and bytes after the
 * last whole entry cut off.  Returns the bundle's new length. */
static u32 fixup_bundle(u8 *f, u32 len)
{
	u32 at = VR_ETH_HLEN + VR_BUNDLE_HLEN, n, count = 0;

	vr_wire_put_eth(f, RXF_OUR_MAC, RXF_PEER_MAC, VR_ETHERTYPE_DEFAULT);
	f[VR_ETH_HLEN + VR_OFF_VERSION] = VR_WIRE_VERSION;
	vr_put_be32(f + VR_ETH_HLEN + VR_BUNDLE_OFF_RESERVED, 0);
	while (len - at >= VR_BUNDLE_ENTRY_HLEN) {
		n = vr_get_be16(f + at);
		if (n < HDRS || n > len - at - VR_BUNDLE_ENTRY_HLEN)
			break;
		fixup(f + at + VR_BUNDLE_ENTRY_HLEN, n);
		at += VR_BUNDLE_ENTRY_HLEN + n;
		count++;
	}
	vr_wire_bundle_set_count(f, (u16)count);
	return at;
}

static u32 conn_arg(u8 a)
{
	u32 s = a % (RXF_MAX_CONNS + 1);

	if (s < RXF_MAX_CONNS && conns[s].known)
		return conns[s].id;
	return 0x00010000u | a; /* probably unknown: exercises -ENOENT */
}

static u16 conn_ep(u32 id)
{
	u32 s;

	for (s = 0; s < RXF_MAX_CONNS; s++)
		if (conns[s].known && conns[s].id == id)
			return conns[s].ep;
	return 0xFFFF;
}

static u32 arg8(const u8 *b, u32 n, u32 i)
{
	return i < n ? b[i] : 0;
}

static u32 arg16(const u8 *b, u32 n, u32 i)
{
	return (arg8(b, n, i) << 8) | arg8(b, n, i + 1);
}

static u32 arg32(const u8 *b, u32 n, u32 i)
{
	return (arg16(b, n, i) << 16) | arg16(b, n, i + 2);
}

static void post_local(u32 wc_op, u32 conn, int reg, u64 loff, u32 len, u64 rkey, u64 roff,
		       u64 tag)
{
	struct mop *m;
	u64 ck = new_cookie(wc_op, wc_op == VR_WC_READ ? reg : -1, loff, len, conn_ep(conn), &m);
	u64 lkey = regs[reg].key;
	int rc;

	if (!ck)
		return;
	if (wc_op == VR_WC_WRITE)
		rc = vr_post_write(eng, conn, lkey, loff, rkey, roff, len, ck);
	else if (wc_op == VR_WC_READ)
		rc = vr_post_read(eng, conn, lkey, loff, rkey, roff, len, ck);
	else
		rc = vr_post_send(eng, conn, lkey, loff, len, tag, ck);
	if (rc)
		cookie_refused(m);
	check_mem();
}

static void post_recv(u16 ep, int reg, u64 loff, u32 len, u64 tag, u64 mask)
{
	struct mop *m;
	u64 ck = new_cookie(VR_WC_RECV, reg, loff, len, ep, &m);

	if (!ck)
		return;
	win_add_mop(m); /* an unexpected message may be delivered right away */
	if (vr_post_recv(eng, ep, regs[reg].key, loff, len, tag, mask, ck))
		cookie_refused(m);
	check_mem();
}

static void do_action(const u8 *b, u32 n)
{
	u32 a = arg8(b, n, 0) % RXF_A_MAX;
	struct mop *m;
	u64 ck;
	int k;

	rxf_last_stats.actions++;
	cur_what = "action";
	switch (a) {
	case RXF_A_ADVANCE:
		now += (u64)(arg16(b, n, 1) + 1) * 1000;
		break;
	case RXF_A_POST_WRITE:
	case RXF_A_POST_READ:
		post_local(a == RXF_A_POST_WRITE ? VR_WC_WRITE : VR_WC_READ, conn_arg(arg8(b, n, 1)),
			   arg8(b, n, 2) % RXF_NREG, arg16(b, n, 3), arg16(b, n, 11),
			   arg32(b, n, 5), arg16(b, n, 9), 0);
		break;
	case RXF_A_POST_SEND:
		post_local(VR_WC_SEND, conn_arg(arg8(b, n, 1)), arg8(b, n, 2) % RXF_NREG,
			   arg16(b, n, 3), arg16(b, n, 5), 0, 0, arg8(b, n, 7));
		break;
	case RXF_A_POST_FADD:
	case RXF_A_POST_CSWAP:
		ck = new_cookie(a == RXF_A_POST_FADD ? VR_WC_FADD : VR_WC_CSWAP, -1, 0, 8, 0, &m);
		if (!ck)
			break;
		if ((a == RXF_A_POST_FADD ?
		      vr_post_fadd(eng, conn_arg(arg8(b, n, 1)), 1, arg16(b, n, 2),
				   arg8(b, n, 4), ck) :
		      vr_post_cswap(eng, conn_arg(arg8(b, n, 1)), 1, arg16(b, n, 2),
				    arg8(b, n, 4), arg8(b, n, 5), ck)))
			cookie_refused(m);
		check_mem();
		break;
	case RXF_A_POST_RECV: {
		u32 ms = arg8(b, n, 8);

		post_recv((u16)(arg8(b, n, 1) % 5), arg8(b, n, 2) % RXF_NREG, arg16(b, n, 3),
			  arg16(b, n, 5), arg8(b, n, 7), ms ? ~(u64)0 >> (ms % 64) : 0);
		break;
	}
	case RXF_A_DEREG:
		k = (int)(arg8(b, n, 1) % RXF_NREG);
		if (regs[k].live) {
			CHECK(vr_dereg_mr(eng, regs[k].key) == 0, "dereg of live region failed");
			regs[k].live = false;
		} else {
			CHECK(vr_dereg_mr(eng, regs[k].key) == -ENOENT, "double dereg accepted");
		}
		check_mem();
		break;
	case RXF_A_REREG:
		k = (int)(arg8(b, n, 1) % RXF_NREG);
		if (!regs[k].live) {
			int rc = vr_reg_mr(eng, regs[k].ep, arena + regs[k].off, regs[k].len,
					   regs[k].access, &regs[k].key);

			if (ep_closed[regs[k].ep]) {
				CHECK(rc == -ENOENT, "registered on a closed endpoint");
			} else {
				CHECK(rc == 0, "re-register failed");
				regs[k].live = true;
			}
		}
		break;
	case RXF_A_EP_CLOSE: {
		u16 ep = (u16)(arg8(b, n, 1) % 5);

		if (!ep_closed[ep]) {
			int rc = vr_ep_close(eng, ep);

			CHECK(rc == 0 || rc == -ENOENT, "ep close: %d", rc);
			if (rc == 0) {
				ep_closed[ep] = true;
				for (k = 0; k < RXF_NREG; k++)
					if (regs[k].ep == ep)
						regs[k].live = false; /* deregistered by the close */
			}
		} else {
			int rc = vr_ep_open(eng, ep, 1, arg8(b, n, 2) & 1);

			CHECK(rc == 0 || rc == -EBUSY, "ep reopen: %d", rc);
			if (rc == 0)
				ep_closed[ep] = false;
		}
		check_mem();
		break;
	}
	case RXF_A_DISCONNECT:
		vr_disconnect(eng, conn_arg(arg8(b, n, 1)));
		check_mem();
		break;
	case RXF_A_CONNECT: {
		u32 id;

		ck = new_cookie(VR_WC_CONNECT, -1, 0, 0, 0, &m);
		if (ck && vr_connect(eng, (u16)(arg8(b, n, 1) % 5), RXF_PEER_MAC,
				     (u16)arg16(b, n, 2), ck, &id))
			cookie_refused(m);
		break;
	}
	case RXF_A_CONNECT_DATA: {
		static const u8 data[VR_PRIVATE_DATA_MAX + 8];
		u32 id, len = arg8(b, n, 4);

		ck = new_cookie(VR_WC_CONNECT, -1, 0, 0, 0, &m);
		if (ck && vr_connect_data(eng, (u16)(arg8(b, n, 1) % 5), RXF_PEER_MAC,
					  (u16)arg16(b, n, 2), data, len, ck, &id))
			cookie_refused(m);
		break;
	}
	case RXF_A_RESOLVE: {
		static const char name[] = "fuzz-ep0-and-some-more-bytes-to-be-cut-anywhere-up-to-64-bytes-long";
		u32 len = arg8(b, n, 2) % (VR_NAME_MAX + 2);
		u16 ep = (u16)(arg8(b, n, 1) % 5);

		ck = new_cookie(VR_WC_RESOLVE, -1, 0, 0, ep, &m);
		if (ck && vr_resolve(eng, ep, name, len, ck))
			cookie_refused(m);
		break;
	}
	case RXF_A_XMIT_MODE:
		xmit_mode = (int)(arg8(b, n, 1) % 3);
		break;
	case RXF_A_TX_POLL:
	default:
		cur_what = "tx_poll";
		vr_engine_tx_poll(eng, now, arg8(b, n, 1));
		check_mem();
		break;
	}
	poll_all();
}

/* ------------------------------------------------------------- setup */

static void put_frame(u8 *f, const struct vr_hdr *h, const void *payload)
{
	vr_wire_put_eth(f, RXF_OUR_MAC, RXF_PEER_MAC, VR_ETHERTYPE_DEFAULT);
	vr_wire_encode_full(f, h, payload);
}

static void setup(void)
{
	struct vr_config cfg;
	struct vr_hdr h;
	u8 f[HDRS];
	size_t need;
	u32 off = GUARD, i, id;
	struct mop *m;
	u64 ck;
	int k;

	memset(&rxf_last_stats, 0, sizeof(rxf_last_stats));
	memset(conns, 0, sizeof(conns));
	memset(ep_closed, 0, sizeof(ep_closed));
	memset(last_req_msg, 0, sizeof(last_req_msg));
	last_cookie = 0;
	nmops = nwins = 0;
	rnd_state = 12345;
	now = 1000000;
	xmit_mode = 0;
	xmit_count = 0;
	cur_what = "setup";
	for (i = 0; i < ARENA; i++)
		arena[i] = (u8)(i * 131 + 7);
	for (i = 0; i < ENG_TAIL; i++)
		engmem[ENG_MEM + i] = (u8)(0xA5 ^ i);

	memset(&cfg, 0, sizeof(cfg));
	memcpy(cfg.mac, RXF_OUR_MAC, 6);
	cfg.mtu = MTU;
	cfg.max_endpoints = 4;
	cfg.max_conns = RXF_MAX_CONNS;
	cfg.max_regions = 8;
	cfg.max_ops = 4;
	cfg.max_recvs = 4;
	cfg.unexp_depth = 2;
	cfg.unexp_buf_size = 2048;
	cfg.window = 8;
	cfg.ack_every = 2;
	cfg.ack_delay_ns = 5000;
	cfg.rto_ns = 50000;
	cfg.rto_max_ns = 400000;
	cfg.retry_limit = 3;
	cfg.peer_timeout_ns = 1000;
	cfg.keepalive_ns = VR_KEEPALIVE_OFF;
	cfg.rnr_delay_ns = 20000;
	cfg.rnr_retry_limit = 3;
	cfg.rnr_timeout_ns = 1000;
	cfg.host = &host_ops;
	need = vr_engine_mem_size(&cfg);
	CHECK(need && need <= ENG_MEM, "engine needs %zu bytes", need);
	CHECK(vr_engine_create(&cfg, engmem, ENG_MEM, &eng) == 0, "engine create");
	CHECK(vr_ep_open(eng, 0, 1, true) == 0, "ep0");
	CHECK(vr_ep_open(eng, 1, 2, false) == 0, "ep1");
	CHECK(vr_ep_open(eng, 2, 1, true) == 0, "ep2");
	/* RESOLVEs for these names are answered; CONNECT_ACKs from ep0 carry data */
	CHECK(vr_ep_set_name(eng, 0, "fuzz-ep0", 8) == 0, "name ep0");
	CHECK(vr_ep_set_name(eng, 2, "f", 1) == 0, "name ep2");
	CHECK(vr_ep_set_accept_data(eng, 0, "accept data of ep0", 18) == 0, "accept data");
	for (k = 0; k < RXF_NREG; k++) {
		regs[k].off = off;
		regs[k].len = reg_spec[k].len;
		regs[k].access = reg_spec[k].access;
		regs[k].ep = reg_spec[k].ep;
		regs[k].live = true;
		CHECK(vr_reg_mr(eng, regs[k].ep, arena + off, regs[k].len, regs[k].access,
				&regs[k].key) == 0, "reg R%d", k);
		off += regs[k].len + GUARD;
	}
	CHECK(off == ARENA, "arena layout");
	memcpy(shadow, arena, ARENA);

	/* connection slot 0: passive open on ep0 */
	memset(&h, 0, sizeof(h));
	h.version = VR_WIRE_VERSION;
	h.opcode = VR_OP_CONNECT_REQ;
	h.src_ep = RXF_PEER_EP_A;
	h.dst_ep = 0;
	h.msg_id = RXF_PEER_ID_A;
	h.psn = RXF_PEER_ISN_A;
	put_frame(f, &h, NULL);
	CHECK(feed(f, sizeof(f), "setup CONNECT_REQ") == 0, "setup CONNECT_REQ refused");
	CHECK(last_cookie && !conns[0].known, "no CONNECT_RETRY for the first request");
	h.operand_b = last_cookie;
	put_frame(f, &h, NULL);
	CHECK(feed(f, sizeof(f), "setup CONNECT_REQ") == 0, "setup CONNECT_REQ refused");
	CHECK(conns[0].known, "no CONNECT_ACK for slot 0");

	/* connection slot 1: active open from ep1 */
	ck = new_cookie(VR_WC_CONNECT, -1, 0, 0, 1, &m);
	CHECK(vr_connect(eng, 1, RXF_PEER_MAC, RXF_PEER_EP_B, ck, &id) == 0, "connect");
	poll_all();
	CHECK(conns[1].known && conns[1].id == id, "no CONNECT_REQ for slot 1");
	memset(&h, 0, sizeof(h));
	h.version = VR_WIRE_VERSION;
	h.opcode = VR_OP_CONNECT_ACK;
	h.src_ep = RXF_PEER_EP_B;
	h.dst_ep = 1;
	h.conn_id = id;
	h.msg_id = RXF_PEER_ID_B;
	h.psn = RXF_PEER_ISN_B;
	h.ack_psn = conns[1].isn;
	put_frame(f, &h, NULL);
	CHECK(feed(f, sizeof(f), "setup CONNECT_ACK") == 0, "setup CONNECT_ACK refused");
	CHECK(vr_conn_state(eng, id) == VR_CONN_CONNECTED, "slot 1 not connected");
	CHECK(mops[0].state == MOP_DONE, "no connect completion");

	/* receives and in-flight requests */
	post_recv(0, 3, 0, 256, 0x55, ~(u64)0);
	post_recv(0, 0, 1024, 512, 0, 0);
	post_recv(1, 2, 0, 512, 0, 0);
	post_local(VR_WC_WRITE, conns[0].id, 0, 0, 100, 0x1234, 0, 0);
	post_local(VR_WC_READ, conns[0].id, 3, 256, 200, 0x5678, 64, 0);
	ck = new_cookie(VR_WC_FADD, -1, 0, 8, 0, &m);
	CHECK(vr_post_fadd(eng, conns[0].id, 0x9abc, 8, 5, ck) == 0, "fadd");
	post_local(VR_WC_SEND, conns[1].id, 2, 512, 300, 0, 0, 0x77);
	for (i = 0; i < nmops; i++)
		CHECK(mops[i].state != MOP_REFUSED, "setup post %u failed", i);
	poll_all();
}

static void teardown(void)
{
	u32 i;

	cur_what = "destroy";
	vr_engine_destroy(eng);
	check_mem();
	for (i = 0; i < nmops; i++)
		CHECK(mops[i].state != MOP_POSTED || mops[i].wc_op == VR_WC_CONNECT,
		      "op cookie 0x%x (wc op %u) never completed", COOKIE_BASE + i,
		      mops[i].wc_op);
	eng = NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vr_parsed p;
	size_t pos = 0;
	u32 nrec = 0;

	/* (a) the parser alone on the raw input */
	vr_wire_parse(data, size > 0xFFFFFFFFu ? 0xFFFFFFFFu : (u32)size,
		      VR_ETHERTYPE_DEFAULT, &p);

	/* (b) the engine */
	setup();
	while (pos + 2 <= size && nrec < MAX_RECORDS) {
		u32 pfx = ((u32)data[pos] << 8) | data[pos + 1];
		u32 len = pfx & ((pfx & RXF_REC_ACTION) ? RXF_ACT_LEN_MASK : RXF_REC_LEN_MASK);
		const u8 *body = data + pos + 2;

		pos += 2;
		if (len > size - pos)
			len = (u32)(size - pos);
		pos += len;
		nrec++;
		rxf_last_stats.records++;
		if (pfx & RXF_REC_ACTION) {
			do_action(body, len);
		} else if ((pfx & RXF_REC_FIXUP) && len >= HDRS) {
			u8 *f = malloc(len);

			CHECK(f, "malloc");
			memcpy(f, body, len);
			if (vr_wire_is_bundle(f, len) && len >= VR_ETH_HLEN + VR_BUNDLE_HLEN)
				len = fixup_bundle(f, len);
			else
				fixup(f, len);
			vr_wire_parse(f, len, VR_ETHERTYPE_DEFAULT, &p);
			feed(f, len, "input frame (fixup)");
			free(f);
		} else {
			vr_wire_parse(body, len, VR_ETHERTYPE_DEFAULT, &p);
			feed(body, len, "input frame");
		}
	}
	teardown();
	return 0;
}
