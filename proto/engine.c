// SPDX-License-Identifier: GPL-2.0 OR MIT
/* engine.c - setup, endpoints, regions glue, input dispatch, DRR scheduler,
 * timers. */
#include "internal.h"
#include "crc32c.h"
#include "crypto.h"

#define ALIGN8(x) (((x) + 7) & ~(size_t)7)

struct layout {
	size_t eng, eps, conns, keys, srs, ops, rings, regions, pds, recvs, unexp, bufs, total;
};

/* Protection domains: VR_PDS_PER_EP per endpoint, at most 65535 ids. */
static u32 pd_count(const struct vr_config *c)
{
	u64 n = (u64)c->max_endpoints * VR_PDS_PER_EP;

	return n > 65535 ? 65535 : (u32)n;
}

static void apply_defaults(struct vr_config *c)
{
	if (!c->ethertype) c->ethertype = VR_ETHERTYPE_DEFAULT;
	if (!c->mtu) c->mtu = VR_MTU_MIN;
	if (!c->window) c->window = VR_DEFAULT_WINDOW;
	if (!c->ack_every) c->ack_every = VR_DEFAULT_ACK_EVERY;
	if (!c->ack_delay_ns) c->ack_delay_ns = VR_DEFAULT_ACK_DELAY_NS;
	if (!c->rto_ns) c->rto_ns = VR_DEFAULT_RTO_NS;
	if (!c->rto_max_ns) c->rto_max_ns = VR_DEFAULT_RTO_MAX_FACTOR * c->rto_ns;
	if (!c->retry_limit) c->retry_limit = VR_DEFAULT_RETRY_LIMIT;
	if (!c->peer_timeout_ns) c->peer_timeout_ns = VR_DEFAULT_PEER_TIMEOUT_NS;
	if (!c->keepalive_ns) c->keepalive_ns = VR_DEFAULT_KEEPALIVE_NS;
	if (!c->rnr_delay_ns) c->rnr_delay_ns = VR_DEFAULT_RNR_DELAY_NS;
	if (!c->rnr_retry_limit) c->rnr_retry_limit = VR_DEFAULT_RNR_RETRY_LIMIT;
	if (!c->rnr_timeout_ns) c->rnr_timeout_ns = VR_DEFAULT_RNR_TIMEOUT_NS;
	if (!c->mem) c->mem = &vr_ptr_mem_ops;
	if (!c->max_conns_per_peer)
		c->max_conns_per_peer = c->max_conns * VR_DEFAULT_CONNS_PER_PEER_PCT / 100 ?
			c->max_conns * VR_DEFAULT_CONNS_PER_PEER_PCT / 100 : 1;
	if (!c->conn_reserve) c->conn_reserve = c->max_conns / 8;
}

static bool cfg_valid(const struct vr_config *c)
{
	return c->mtu >= VR_MTU_MIN && c->mtu <= VR_MTU_MAX &&
	       c->max_endpoints && c->max_endpoints <= 65536 &&
	       c->max_conns && c->max_conns <= 65535 &&
	       c->max_regions && c->max_regions <= VR_REGIONS_MAX &&
	       c->max_ops && c->max_ops <= 32767 &&
	       c->max_recvs && c->unexp_depth <= 65536 &&
	       c->unexp_buf_size <= (1u << 24) &&
	       c->host && c->host->xmit && c->host->complete && c->host->random &&
	       c->rto_ns <= c->rto_max_ns &&
	       c->window <= VR_PSN_SLACK / 2 && /* a frame in flight is inside the windows */
	       c->conn_reserve < c->max_conns &&
	       c->integrity <= VR_INTEGRITY_LINK && c->auth <= VR_AUTH_PSK &&
	       c->recovery <= VR_RECOVERY_GO_BACK_N;
}

static bool compute_layout(const struct vr_config *in, struct layout *l)
{
	struct vr_config c = *in;
	size_t nops;

	apply_defaults(&c);
	if (!cfg_valid(&c))
		return false;
	nops = (size_t)c.max_conns * 2 * c.max_ops;
	l->eng = 0;
	l->eps = ALIGN8(sizeof(struct vr_engine));
	l->conns = l->eps + ALIGN8(sizeof(struct vr_ep) * c.max_endpoints);
	l->keys = l->conns + ALIGN8(sizeof(struct vr_conn) * c.max_conns);
	l->srs = l->keys + ALIGN8(sizeof(struct vr_conn_keys) * c.max_conns);
	l->ops = l->srs + ALIGN8(sizeof(struct vr_conn_sr) * c.max_conns);
	l->rings = l->ops + ALIGN8(sizeof(struct vr_op) * nops);
	l->regions = l->rings + ALIGN8(sizeof(u16) * nops);
	l->pds = l->regions + ALIGN8(sizeof(struct vr_region) * c.max_regions);
	l->recvs = l->pds + ALIGN8(sizeof(struct vr_pd) * pd_count(&c));
	l->unexp = l->recvs + ALIGN8(sizeof(struct vr_recv) * c.max_endpoints * c.max_recvs);
	l->bufs = l->unexp + ALIGN8(sizeof(struct vr_unexp) * c.max_endpoints * c.unexp_depth);
	l->total = l->bufs + ALIGN8((size_t)c.unexp_buf_size * c.max_endpoints * c.unexp_depth);
	return true;
}

size_t vr_engine_mem_size(const struct vr_config *cfg)
{
	struct layout l;

	return compute_layout(cfg, &l) ? l.total : 0;
}

int vr_engine_create(const struct vr_config *cfg, void *mem, size_t mem_len,
		     struct vr_engine **out)
{
	struct layout l;
	struct vr_engine *eng = mem;
	u8 *base = mem;
	u32 i, j, nops;
	int rc;

	if (!cfg || !out || !compute_layout(cfg, &l))
		return -EINVAL;
	if (!mem || mem_len < l.total || ((uintptr_t)mem & 7))
		return -ENOMEM;
	if (vr_crypto_init())
		return -ENOSYS;
	memset(mem, 0, l.total);
	eng->cfg = *cfg;
	apply_defaults(&eng->cfg);
	eng->host = *cfg->host;
	eng->mem = eng->cfg.mem;
	eng->mps = eng->cfg.mtu - VR_HDR_LEN;
	vr_crc32c_update(0, NULL, 0); /* build the CRC table now, not on the data path */
	eng->eps = (struct vr_ep *)(base + l.eps);
	eng->conns = (struct vr_conn *)(base + l.conns);
	eng->pds = (struct vr_pd *)(base + l.pds);
	eng->npds = pd_count(&eng->cfg);
	nops = 2 * eng->cfg.max_ops;
	for (i = 0; i < eng->cfg.max_conns; i++) {
		struct vr_conn *c = &eng->conns[i];

		c->ops = (struct vr_op *)(base + l.ops) + (size_t)i * nops;
		c->keys = (struct vr_conn_keys *)(base + l.keys) + i;
		c->sr = (struct vr_conn_sr *)(base + l.srs) + i;
		c->ring = (u16 *)(base + l.rings) + (size_t)i * nops;
		c->ep_next = VR_NO_SLOT;
	}
	for (i = 0; i < eng->cfg.max_endpoints; i++) {
		struct vr_ep *e = &eng->eps[i];

		e->recvs = (struct vr_recv *)(base + l.recvs) + (size_t)i * eng->cfg.max_recvs;
		e->unexp = (struct vr_unexp *)(base + l.unexp) + (size_t)i * eng->cfg.unexp_depth;
		for (j = 0; j < eng->cfg.unexp_depth; j++)
			e->unexp[j].buf = base + l.bufs +
				((size_t)i * eng->cfg.unexp_depth + j) * eng->cfg.unexp_buf_size;
		e->conn_head = VR_NO_SLOT;
	}
	rc = vr_region_table_init(&eng->rt, (struct vr_region *)(base + l.regions),
				  eng->cfg.max_regions, eng->host.random, eng->cfg.ctx);
	if (rc)
		return rc;
	vr_conn_init_secrets(eng);
	*out = eng;
	return 0;
}

void vr_engine_destroy(struct vr_engine *eng)
{
	u32 i;

	for (i = 0; i < eng->cfg.max_conns; i++) {
		struct vr_conn *c = &eng->conns[i];

		if (c->state != VR_CONN_FREE) {
			if (c->state == VR_CONN_CONNECTING)
				vr_complete(eng, &eng->eps[c->ep], VR_WC_CONNECT, c->cookie,
					    -ECANCELED, c->id, 0, 0, 0);
			vr_comp_flush(eng, c, -ECANCELED);
			vr_resp_flush_rx(eng, c, -ECANCELED);
			c->state = VR_CONN_FREE;
		}
	}
	for (i = 0; i < eng->cfg.max_endpoints; i++) {
		struct vr_ep *e = &eng->eps[i];
		u32 j;

		if (!e->used)
			continue;
		vr_names_ep_closed(eng, (u16)i);
		for (j = 0; j < eng->cfg.max_recvs; j++) {
			if (e->recvs[j].state != VR_RECV_FREE) {
				e->recvs[j].state = VR_RECV_FREE;
				vr_complete(eng, e, VR_WC_RECV, e->recvs[j].cookie, -ECANCELED,
					    0, 0, 0, 0);
			}
		}
		e->used = false;
	}
	eng->n_open = 0; /* the scheduler sees no endpoint any more */
}

u32 vr_rand(struct vr_engine *eng)
{
	return eng->host.random(eng->cfg.ctx);
}

void vr_complete(struct vr_engine *eng, struct vr_ep *e, u32 op, u64 cookie, int status,
		 u32 conn, u64 bytes, u64 tag, u64 value)
{
	vr_complete_nak(eng, e, op, cookie, status, conn, bytes, tag, value, 0);
}

void vr_complete_nak(struct vr_engine *eng, struct vr_ep *e, u32 op, u64 cookie, int status,
		     u32 conn, u64 bytes, u64 tag, u64 value, u8 nak_reason)
{
	struct vr_completion wc;

	memset(&wc, 0, sizeof(wc));
	wc.cookie = cookie;
	wc.nak_reason = nak_reason;
	wc.status = status;
	wc.op = op;
	wc.conn = conn;
	wc.ep = e ? (u16)(e - eng->eps) : 0;
	wc.bytes = bytes;
	wc.tag = tag;
	wc.value = value;
	if (!status && (op == VR_WC_ACCEPT || op == VR_WC_CONNECT)) {
		u8 mac[6];
		u16 peer_ep;

		if (!vr_conn_peer(eng, conn, mac, &peer_ep))
			wc.value = vr_peer_word(mac, peer_ep); /* who is at the other end */
	}
	VR_CTR(eng, e, completions, 1);
	eng->host.complete(eng->cfg.ctx, &wc);
}

int vr_nak_to_errno(u8 reason)
{
	switch (reason) {
	case VR_NAK_BAD_KEY: return -EACCES;
	case VR_NAK_ACCESS: return -EPERM;
	case VR_NAK_BOUNDS: return -ERANGE;
	case VR_NAK_NO_EP: return -ECONNREFUSED;
	case VR_NAK_REJECTED: return -ECONNREFUSED;
	case VR_NAK_RNR: return -ENOBUFS;
	case VR_NAK_RESOURCES: return -ENOBUFS;
	case VR_NAK_INVALID: return -EINVAL;
	case VR_NAK_TOO_LONG: return -EMSGSIZE;
	default: return -EPROTO;
	}
}

bool vr_nak_fatal(u8 reason)
{
	switch (reason) {
	case VR_NAK_BAD_KEY: case VR_NAK_BOUNDS: case VR_NAK_ACCESS:
	case VR_NAK_INVALID: case VR_NAK_TOO_LONG:
		return true;
	default:
		return false;
	}
}

u8 vr_errno_to_nak(int err)
{
	switch (err) {
	case -EACCES: return VR_NAK_BAD_KEY;
	case -EPERM: return VR_NAK_ACCESS;
	case -ERANGE: return VR_NAK_BOUNDS;
	default: return VR_NAK_INVALID;
	}
}

struct vr_ep *vr_ep_get(struct vr_engine *eng, u16 ep)
{
	if (ep >= eng->cfg.max_endpoints || !eng->eps[ep].used)
		return NULL;
	return &eng->eps[ep];
}

struct vr_ep *vr_ep_get_open(struct vr_engine *eng, u16 ep)
{
	struct vr_ep *e = vr_ep_get(eng, ep);

	return e && !e->closing ? e : NULL;
}

/* Link the open endpoints into a circle in id order, so that the
 * scheduler visits only those (opening is rare; this is O(max_endpoints)). */
static void ep_relink(struct vr_engine *eng)
{
	u32 i, first = VR_NO_SLOT, prev = VR_NO_SLOT;

	eng->n_open = 0;
	for (i = 0; i < eng->cfg.max_endpoints; i++) {
		if (!eng->eps[i].used)
			continue;
		if (prev == VR_NO_SLOT)
			first = i;
		else
			eng->eps[prev].next_open = i;
		prev = i;
		eng->n_open++;
	}
	if (prev != VR_NO_SLOT)
		eng->eps[prev].next_open = first;
	if (!eng->n_open || eng->tx_cursor >= eng->cfg.max_endpoints ||
	    !eng->eps[eng->tx_cursor].used)
		eng->tx_cursor = first; /* VR_NO_SLOT when none is open */
}

int vr_ep_open(struct vr_engine *eng, u16 ep, u32 weight, bool listen)
{
	struct vr_ep *e;

	if (ep >= eng->cfg.max_endpoints || !weight || weight > VR_WEIGHT_MAX)
		return -EINVAL;
	e = &eng->eps[ep];
	if (e->used)
		return e->closing ? -EBUSY : -EEXIST;
	e->used = true;
	e->closing = false;
	e->listen = listen;
	e->weight = weight;
	e->deficit = 0;
	e->quantum_given = false;
	e->conn_head = VR_NO_SLOT;
	e->rr_conn = VR_NO_SLOT;
	e->has_key = false;
	memset(&e->ctr, 0, sizeof(e->ctr));
	ep_relink(eng);
	return 0;
}

int vr_ep_set_auth_key(struct vr_engine *eng, u16 ep, const u8 *key)
{
	struct vr_ep *e = vr_ep_get_open(eng, ep);

	if (!e)
		return -ENOENT;
	e->has_key = key != NULL;
	if (key)
		memcpy(e->key, key, VR_AUTH_KEY_LEN);
	else
		vr_crypto_wipe(e->key, sizeof(e->key));
	return 0;
}

void vr_ep_release_if_done(struct vr_engine *eng, struct vr_ep *e)
{
	if (!e->closing || e->conn_head != VR_NO_SLOT)
		return;
	e->closing = false;
	e->used = false;
	ep_relink(eng);
}

int vr_ep_close(struct vr_engine *eng, u16 ep)
{
	struct vr_ep *e = vr_ep_get_open(eng, ep);
	u32 i, next;

	if (!e)
		return -ENOENT;
	e->closing = true; /* first: host requests from callbacks below fail */
	e->listen = false;
	e->accept_len = 0;
	vr_names_ep_closed(eng, ep);
	for (i = e->conn_head; i != VR_NO_SLOT; i = next) {
		struct vr_conn *c = &eng->conns[i];

		next = c->ep_next;
		if (c->state != VR_CONN_CLOSING)
			vr_disconnect(eng, c->id);
	}
	for (i = 0; i < eng->cfg.unexp_depth; i++)
		e->unexp[i].used = false;
	for (i = 0; i < eng->cfg.max_recvs; i++) {
		if (e->recvs[i].state != VR_RECV_FREE) {
			e->recvs[i].state = VR_RECV_FREE;
			vr_complete(eng, e, VR_WC_RECV, e->recvs[i].cookie, -ECANCELED, 0, 0, 0, 0);
		}
	}
	for (i = 0; i < eng->rt.cap; i++) {
		const struct vr_region *r = &eng->rt.slot[i];

		if (r->state == VR_REGION_VALID && r->ep == ep)
			vr_dereg_mr(eng, r->key);
	}
	for (i = 0; i < eng->npds; i++)
		if (eng->pds[i].used && eng->pds[i].ep == ep)
			eng->pds[i].used = false;
	vr_ep_release_if_done(eng, e);
	return 0;
}

int vr_ep_set_weight(struct vr_engine *eng, u16 ep, u32 weight)
{
	struct vr_ep *e = vr_ep_get(eng, ep);

	if (!e)
		return -ENOENT;
	if (!weight || weight > VR_WEIGHT_MAX)
		return -EINVAL;
	e->weight = weight;
	return 0;
}

int vr_ep_counters(const struct vr_engine *eng, u16 ep, struct vr_counters *out)
{
	if (ep >= eng->cfg.max_endpoints || !eng->eps[ep].used)
		return -ENOENT;
	*out = eng->eps[ep].ctr;
	return 0;
}

const struct vr_counters *vr_engine_counters(const struct vr_engine *eng)
{
	return &eng->ctr;
}

int vr_reg_mr(struct vr_engine *eng, u16 ep, void *mem, u64 len, u32 access, u64 *key)
{
	int rc;

	if (!vr_ep_get_open(eng, ep))
		return -ENOENT;
	rc = vr_region_reg(&eng->rt, mem, len, access, ep, key);
	if (rc == -ENOSPC)
		eng->ctr.pool_exhausted++;
	return rc;
}

/* ------------------------------------------------- protection domains */

static struct vr_pd *pd_of(struct vr_engine *eng, u32 pd)
{
	return pd && pd <= eng->npds && eng->pds[pd - 1].used ? &eng->pds[pd - 1] : NULL;
}

int vr_pd_alloc(struct vr_engine *eng, u16 ep, u32 *pd)
{
	u32 i, free = VR_NO_SLOT, held = 0;

	if (!pd)
		return -EINVAL;
	if (!vr_ep_get_open(eng, ep))
		return -ENOENT;
	for (i = 0; i < eng->npds; i++) {
		if (!eng->pds[i].used) {
			if (free == VR_NO_SLOT)
				free = i;
		} else if (eng->pds[i].ep == ep) {
			held++;
		}
	}
	if (free == VR_NO_SLOT || held >= VR_PDS_PER_EP) {
		eng->ctr.pool_exhausted++;
		return -ENOSPC;
	}
	eng->pds[free].used = true;
	eng->pds[free].ep = ep;
	*pd = free + 1;
	return 0;
}

int vr_pd_free(struct vr_engine *eng, u16 ep, u32 pd)
{
	struct vr_pd *d = pd_of(eng, pd);
	u32 i;

	if (!d || d->ep != ep)
		return -ENOENT;
	for (i = 0; i < eng->rt.cap; i++)
		if (eng->rt.slot[i].state == VR_REGION_VALID && eng->rt.slot[i].pd == pd)
			return -EBUSY; /* unbinding them would open them to every peer */
	for (i = 0; i < eng->cfg.max_conns; i++)
		if (eng->conns[i].state != VR_CONN_FREE && eng->conns[i].pd == pd)
			eng->conns[i].pd = VR_PD_NONE; /* narrower: domain-0 regions only */
	d->used = false;
	return 0;
}

int vr_conn_set_pd(struct vr_engine *eng, u32 conn, u32 pd)
{
	struct vr_conn *c = vr_conn_get(eng, conn);
	struct vr_pd *d = pd_of(eng, pd);

	if (!c || (pd && !d))
		return -ENOENT;
	if (d && d->ep != c->ep)
		return -EINVAL;
	c->pd = (u16)pd;
	return 0;
}

int vr_mr_set_pd(struct vr_engine *eng, u16 ep, u64 key, u32 pd)
{
	const struct vr_region *r;
	struct vr_pd *d = pd_of(eng, pd);

	if (pd && !d)
		return -ENOENT;
	if (vr_region_check(&eng->rt, key, ep, 0, 0, 0, &r))
		return -ENOENT; /* not a live region of ep */
	if (d && d->ep != ep)
		return -EINVAL;
	return vr_region_set_pd(&eng->rt, key, (u16)pd);
}

int vr_dereg_mr(struct vr_engine *eng, u64 key)
{
	/* Invalidate first so that nothing below can reach the memory, then
	 * fail every operation that still names the key. */
	int rc = vr_region_dereg(&eng->rt, key);

	if (rc)
		return rc;
	vr_comp_cancel_key(eng, key);
	vr_resp_cancel_key(eng, key);
	return 0;
}

int vr_mem_read(struct vr_engine *eng, u16 ep, u64 lkey, u64 off, void *dst, u32 len)
{
	const struct vr_region *r;
	int rc = vr_region_check(&eng->rt, lkey, ep, VR_ACCESS_LOCAL_READ, off, len, &r);

	return rc ? rc : eng->mem->copy_out(r->mem, off, dst, len);
}

int vr_mem_write(struct vr_engine *eng, u16 ep, u64 lkey, u64 off, const void *src, u32 len)
{
	const struct vr_region *r;
	int rc = vr_region_check(&eng->rt, lkey, ep, VR_ACCESS_LOCAL_WRITE, off, len, &r);

	return rc ? rc : eng->mem->copy_in(r->mem, off, src, len);
}

int vr_post_recv(struct vr_engine *eng, u16 ep, u64 lkey, u64 loff, u32 len,
		 u64 tag, u64 mask, u64 cookie)
{
	return vr_resp_post_recv(eng, ep, lkey, loff, len, tag, mask, cookie);
}

/* ---------------------------------------------------------------- input */

static int vr_engine_input_frame(struct vr_engine *eng, const void *frame, u32 len, u64 now);

/*
 * Each inner frame goes through the normal path and counts as a frame; a bad
 * one is dropped like a lone frame and does not stop the others.  A bundle
 * whose structure is bad is dropped whole and counts as one frame.
 */
static int vr_engine_input_bundle(struct vr_engine *eng, const void *frame, u32 len, u64 now)
{
	const u8 *inner;
	u32 pos = 0, inner_len;
	int rc;

	rc = vr_wire_bundle_next(frame, len, eng->cfg.ethertype, &pos, &inner, &inner_len);
	if (rc < 0) {
		int cls = vr_wire_err_class(rc);

		eng->ctr.rx_frames++;
		eng->ctr.rx_bytes += len;
		if (cls < VR_WERR_MAX)
			eng->ctr.drop_parse[cls]++;
		return rc;
	}
	eng->ctr.rx_bundles++;
	while (rc > 0) {
		vr_engine_input_frame(eng, inner, inner_len, now);
		rc = vr_wire_bundle_next(frame, len, eng->cfg.ethertype, &pos, &inner, &inner_len);
	}
	return 0;
}

int vr_engine_input(struct vr_engine *eng, const void *frame, u32 len, u64 now)
{
	if (vr_wire_is_bundle(frame, len))
		return vr_engine_input_bundle(eng, frame, len, now);
	return vr_engine_input_frame(eng, frame, len, now);
}

bool vr_engine_rx_mid_message(const struct vr_engine *eng)
{
	return eng->rx_mid_message;
}

/*
 * Every frame of an established connection proves it comes from inside it:
 * its ACK never beyond what we sent nor more than VR_PSN_SLACK behind what
 * was acknowledged, a data frame's PSN within VR_PSN_SLACK of what we expect
 * next, an ACK's PSN (its sender's highest sent) at or at most VR_PSN_SLACK
 * beyond it.  A NAK's PSN is checked against what we sent (completer.c), a
 * DISCONNECT's in conn.c.  A blind forger must hit these and the random
 * connection id.
 */
static bool in_windows(const struct vr_conn *c, const struct vr_hdr *h)
{
	if (vr_psn_lt(c->snd_hi, h->ack_psn) ||
	    (vr_psn_lt(h->ack_psn, c->snd_una) && c->snd_una - h->ack_psn > VR_PSN_SLACK))
		return false;
	if (vr_op_is_data(h->opcode))
		return h->psn - c->rcv_nxt + VR_PSN_SLACK < 2 * VR_PSN_SLACK;
	if (h->opcode == VR_OP_ACK)
		return h->psn - c->rcv_nxt <= VR_PSN_SLACK;
	return true;
}

static int vr_engine_input_frame(struct vr_engine *eng, const void *frame, u32 len, u64 now)
{
	struct vr_parsed p;
	struct vr_conn *c;
	struct vr_ep *e;
	int rc;

	eng->ctr.rx_frames++;
	eng->ctr.rx_bytes += len;
	/* set again only by an in-order first or middle data frame it admits */
	eng->rx_mid_message = false;
	rc = vr_wire_parse(frame, len, eng->cfg.ethertype, &p);
	if (rc) {
		int cls = vr_wire_err_class(rc);

		if (cls < VR_WERR_MAX)
			eng->ctr.drop_parse[cls]++;
		return rc;
	}
	if (p.h.opcode == VR_OP_RESOLVE)
		return vr_names_rx(eng, &p); /* broadcast, to no endpoint */
	if (memcmp(p.dst_mac, eng->cfg.mac, 6)) {
		eng->ctr.drop_not_for_us++;
		return -EADDRNOTAVAIL;
	}
	e = vr_ep_get(eng, p.h.dst_ep);
	if (!e) {
		eng->ctr.drop_no_ep++;
		if (p.h.opcode == VR_OP_CONNECT_REQ)
			vr_conn_rx_req(eng, &p, now); /* answers NAK(NO_EP) */
		return -ENOENT;
	}
	e->ctr.rx_frames++;
	e->ctr.rx_bytes += len;
	if (p.h.opcode == VR_OP_CONNECT_REQ) {
		vr_conn_rx_req(eng, &p, now);
		return 0;
	}
	if (p.h.opcode == VR_OP_ANNOUNCE)
		return vr_names_rx(eng, &p);
	c = vr_conn_get(eng, p.h.conn_id);
	if (!c || c->ep != p.h.dst_ep || c->peer_ep != p.h.src_ep ||
	    memcmp(c->peer_mac, p.src_mac, 6)) {
		VR_CTR(eng, e, drop_no_conn, 1);
		return -ENOTCONN;
	}
	if (p.h.opcode == VR_OP_CONNECT_ACK || p.h.opcode == VR_OP_CONNECT_RETRY ||
	    p.h.opcode == VR_OP_DISCONNECT ||
	    (p.h.opcode == VR_OP_NAK && c->state == VR_CONN_CONNECTING)) {
		rc = vr_conn_auth_rx(eng, c, &p);
		if (!rc)
			vr_conn_rx_ctl(eng, &p, now);
		return rc;
	}
	if (c->state != VR_CONN_CONNECTED) {
		VR_CTR(eng, e, drop_bad_state, 1);
		return -ENOTCONN;
	}
	if (!in_windows(c, &p.h)) {
		VR_CTR(eng, e, drop_out_of_window, 1);
		return -ERANGE;
	}
	/* After the cheap checks: a forger's junk costs no cryptography. */
	if ((c->auth || p.auth) && (rc = vr_conn_auth_rx(eng, c, &p)))
		return rc;
	/* A payload left to the link's FCS only where both ends agreed to it:
	 * otherwise it is a frame we cannot check, counted as a bad field. */
	if ((p.h.flags & VR_F_LINK_FCS) && !c->link_fcs) {
		eng->ctr.drop_parse[VR_WERR_FIELD]++;
		return -EPROTO;
	}
	c->last_rx = now;
	c->challenge_at = 0; /* the peer is there: a replacing request was not its */
	vr_comp_rx_ack(eng, c, p.h.ack_psn, now);
	if (c->state != VR_CONN_CONNECTED)
		return 0;
	/* What the peer holds beyond the ACK (a map only in an ACK or NAK,
	 * whose fields are free), then what that says is lost. */
	if (c->sack && (p.h.opcode == VR_OP_ACK || p.h.opcode == VR_OP_NAK) &&
	    (p.h.rkey | p.h.remote_off | p.h.operand_a | p.h.operand_b))
		vr_comp_rx_sack(eng, c, &p.h, now);
	if (c->n_sacked)
		vr_comp_find_lost(eng, c);
	if (p.h.opcode == VR_OP_ACK) {
		VR_CTR(eng, e, acks_rx, 1);
		if (p.h.flags & VR_F_ACKREQ)
			c->ack_now = true; /* a keepalive probe: we are here */
		return 0;
	}
	if (p.h.opcode == VR_OP_NAK) {
		vr_comp_rx_nak(eng, c, &p, now);
		return 0;
	}
	VR_CTR(eng, e, rx_data_frames, 1);
	vr_resp_rx_data(eng, c, &p, now);
	return 0;
}

/* ------------------------------------------------------------ scheduler */

int vr_emit(struct vr_engine *eng, struct vr_ep *e)
{
	int rc = eng->host.xmit(eng->cfg.ctx, &eng->txf);

	if (rc == -EAGAIN) {
		eng->ctr.xmit_eagain++;
		return rc;
	}
	if (rc)
		eng->ctr.xmit_err++; /* treated as lost on the wire */
	VR_CTR(eng, e, tx_frames, 1);
	VR_CTR(eng, e, tx_bytes, eng->txf.len);
	return 0;
}

/* Build the next frame of endpoint e, rotating over its connections. */
static bool ep_build(struct vr_engine *eng, struct vr_ep *e, u64 now)
{
	u32 start = e->rr_conn, i, n = 0;

	if (start == VR_NO_SLOT || eng->conns[start].state == VR_CONN_FREE ||
	    eng->conns[start].ep != (u16)(e - eng->eps))
		start = e->conn_head;
	i = start;
	while (i != VR_NO_SLOT && n <= eng->cfg.max_conns) {
		struct vr_conn *c = &eng->conns[i];
		u32 nx = c->ep_next == VR_NO_SLOT ? e->conn_head : c->ep_next;

		if (vr_tx_build(eng, c, now)) {
			e->rr_conn = nx;
			return true;
		}
		i = nx;
		n++;
		if (i == start)
			break;
	}
	return false;
}

/*
 * Deficit round robin over endpoints, in bytes: an endpoint receives
 * weight * MTU of credit per visit and sends while its credit covers the
 * next frame.  Since MTU >= any frame, every visit of a busy endpoint
 * sends at least one frame and the loop terminates.
 */
int vr_engine_tx_poll(struct vr_engine *eng, u64 now, u32 budget)
{
	u32 idle = 0;
	/* Answers to strangers (cookies, refusals) and names get an eighth of
	 * the budget before the connections and whatever the connections
	 * leave: under a flood of requests, established peers are served
	 * first, and a new initiator still gets its cookie. */
	int sent = vr_conn_emit_replies(eng, now, budget ? budget / 8 + 1 : 0);

	sent += vr_names_emit(eng, now, budget - (u32)sent);

	/* Only open endpoints are visited (a circle in id order): a scan
	 * over every possible endpoint id per frame cost more than the
	 * rest of the scheduler.  n_open is re-read each time round: a
	 * closing endpoint leaves the circle when its last DISCONNECT goes. */
	while ((u32)sent < budget && eng->n_open && idle < eng->n_open) {
		struct vr_ep *e = &eng->eps[eng->tx_cursor];

		if (e->conn_head == VR_NO_SLOT) {
			eng->tx_cursor = e->next_open;
			idle++;
			continue;
		}
		if (!e->quantum_given) {
			e->deficit += (s64)e->weight * eng->cfg.mtu;
			e->quantum_given = true;
		}
		if (!ep_build(eng, e, now)) {
			e->deficit = 0;
			e->quantum_given = false;
			eng->tx_cursor = e->next_open;
			idle++;
			continue;
		}
		if ((s64)eng->txf.len > e->deficit) {
			e->quantum_given = false;
			eng->tx_cursor = e->next_open;
			continue;
		}
		if (vr_emit(eng, e))
			return sent;
		vr_tx_commit(eng, now);
		e->deficit -= eng->txf.len;
		sent++;
		idle = 0;
	}
	if ((u32)sent < budget)
		sent += vr_conn_emit_replies(eng, now, budget - (u32)sent);
	return sent;
}

/* --------------------------------------------------------------- timers */

u64 vr_engine_next_timeout(const struct vr_engine *eng)
{
	u64 t = VR_U64_MAX, x;
	u32 n, ep, i;

	/* Every live connection is on its endpoint's list, and every endpoint
	 * with one is in the circle of used endpoints: hosts ask this every
	 * loop turn, and a walk over the whole connection table cost as much as
	 * the rest of a small frame's work (engine_bench, docs/benchmarks.md). */
	for (n = 0, ep = eng->tx_cursor; n < eng->n_open; n++, ep = eng->eps[ep].next_open) {
		for (i = eng->eps[ep].conn_head; i != VR_NO_SLOT; i = eng->conns[i].ep_next) {
			x = vr_conn_next_timeout(eng, &eng->conns[i]);
			if (x < t)
				t = x;
		}
	}
	x = vr_names_next_timeout(eng);
	return x < t ? x : t;
}

void vr_engine_on_timer(struct vr_engine *eng, u64 now)
{
	u32 i;

	for (i = 0; i < eng->cfg.max_conns; i++)
		if (eng->conns[i].state != VR_CONN_FREE)
			vr_conn_timer(eng, &eng->conns[i], now);
	vr_names_timer(eng, now);
}
