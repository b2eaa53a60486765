// SPDX-License-Identifier: GPL-2.0 OR MIT
/* names.c - finding a peer by name: an endpoint's announced name, the
 * RESOLVE broadcast and the ANNOUNCE answer (wire.h, docs/wire-format.md). */
#include "internal.h"

static const u8 broadcast_mac[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };

/* The open endpoint announcing name, or NULL. */
static struct vr_ep *ep_named(struct vr_engine *eng, const u8 *name, u32 len)
{
	u32 i;

	for (i = 0; i < eng->cfg.max_endpoints; i++) {
		struct vr_ep *e = &eng->eps[i];

		if (e->used && !e->closing && e->name_len == len && !memcmp(e->name, name, len))
			return e;
	}
	return NULL;
}

int vr_ep_set_name(struct vr_engine *eng, u16 ep, const void *name, u32 len)
{
	struct vr_ep *e = vr_ep_get_open(eng, ep);
	struct vr_ep *other;

	if (!e)
		return -ENOENT;
	if (len > VR_NAME_MAX || (len && !name))
		return -EINVAL;
	other = len ? ep_named(eng, name, len) : NULL;
	if (other && other != e)
		return -EADDRINUSE;
	if (len)
		memcpy(e->name, name, len);
	e->name_len = (u8)len;
	return 0;
}

static void resolve_end(struct vr_engine *eng, struct vr_resolve *r, int status,
			const u8 mac[6], u16 peer_ep)
{
	u64 packed = 0;
	u32 i;

	r->used = false;
	for (i = 0; mac && i < 6; i++)
		packed = packed << 8 | mac[i];
	vr_complete(eng, &eng->eps[r->ep], VR_WC_RESOLVE, r->cookie, status, 0, 0, peer_ep,
		    packed);
}

int vr_resolve(struct vr_engine *eng, u16 ep, const void *name, u32 len, u64 cookie)
{
	struct vr_ep *e = vr_ep_get_open(eng, ep);
	struct vr_ep *local;
	struct vr_resolve *r = NULL;
	u32 i;

	if (!e)
		return -ENOENT;
	if (!len || len > VR_NAME_MAX || !name)
		return -EINVAL;
	for (i = 0; i < VR_RESOLVES && !r; i++)
		if (!eng->resolves[i].used)
			r = &eng->resolves[i];
	if (!r) {
		eng->ctr.pool_exhausted++;
		return -EAGAIN;
	}
	memset(r, 0, sizeof(*r));
	r->used = true;
	r->ep = ep;
	r->cookie = cookie;
	r->len = (u8)len;
	memcpy(r->name, name, len);
	/* A name of this very engine (another frontend of the same backend)
	 * never comes back from the wire: answer it here. */
	local = ep_named(eng, name, len);
	if (local) {
		resolve_end(eng, r, 0, eng->cfg.mac, (u16)(local - eng->eps));
		return 0;
	}
	r->nonce = vr_rand(eng);
	r->send = true;
	r->deadline = VR_U64_MAX; /* armed when the RESOLVE goes out */
	return 0;
}

void vr_names_ep_closed(struct vr_engine *eng, u16 ep)
{
	u32 i;

	eng->eps[ep].name_len = 0;
	for (i = 0; i < VR_RESOLVES; i++)
		if (eng->resolves[i].used && eng->resolves[i].ep == ep)
			resolve_end(eng, &eng->resolves[i], -ECANCELED, NULL, 0);
}

static void rx_resolve(struct vr_engine *eng, const struct vr_parsed *p)
{
	struct vr_ep *e = ep_named(eng, p->payload, p->h.payload_len);
	struct vr_announce *a;

	if (!e) {
		eng->ctr.drop_no_ep++;
		return;
	}
	/* One answer per question, at most VR_ANNOUNCE_RING waiting: a
	 * flood of questions costs the same number of small replies. */
	if (eng->ann_len == VR_ANNOUNCE_RING) {
		eng->ctr.pool_exhausted++;
		return;
	}
	a = &eng->announces[(eng->ann_head + eng->ann_len) % VR_ANNOUNCE_RING];
	memcpy(a->mac, p->src_mac, 6);
	a->src_ep = (u16)(e - eng->eps);
	a->dst_ep = p->h.src_ep;
	a->nonce = p->h.msg_id;
	eng->ann_len++;
}

static void rx_announce(struct vr_engine *eng, const struct vr_parsed *p)
{
	u32 i;

	for (i = 0; i < VR_RESOLVES; i++) {
		struct vr_resolve *r = &eng->resolves[i];

		/* The nonce went out in a broadcast: it keeps off answers to
		 * questions never asked, not a host on the segment that heard it. */
		if (r->used && r->nonce == p->h.msg_id && r->ep == p->h.dst_ep &&
		    r->len == p->h.payload_len && !memcmp(r->name, p->payload, r->len) &&
		    r->tries) {
			resolve_end(eng, r, 0, p->src_mac, p->h.src_ep);
			return;
		}
	}
	eng->ctr.drop_no_conn++;
}

int vr_names_rx(struct vr_engine *eng, const struct vr_parsed *p)
{
	bool to_us = !memcmp(p->dst_mac, eng->cfg.mac, 6);

	if (p->h.opcode == VR_OP_RESOLVE) {
		if (!to_us && memcmp(p->dst_mac, broadcast_mac, 6)) {
			eng->ctr.drop_not_for_us++;
			return -EADDRNOTAVAIL;
		}
		rx_resolve(eng, p);
		return 0;
	}
	if (!to_us) {
		eng->ctr.drop_not_for_us++;
		return -EADDRNOTAVAIL;
	}
	rx_announce(eng, p);
	return 0;
}

/* A name frame in eng->ctlframe: Ethernet and vmrdma headers, the name. */
static void build(struct vr_engine *eng, const u8 dst[6], u8 opcode, u16 src_ep, u16 dst_ep,
		  u32 nonce, const u8 *name, u32 len)
{
	struct vr_hdr h;

	memset(&h, 0, sizeof(h));
	h.version = VR_WIRE_VERSION;
	h.opcode = opcode;
	h.src_ep = src_ep;
	h.dst_ep = dst_ep;
	h.msg_id = nonce;
	h.payload_len = (u16)len;
	vr_wire_put_eth(eng->ctlframe, dst, eng->cfg.mac, eng->cfg.ethertype);
	vr_wire_encode_full(eng->ctlframe, &h, name);
	eng->txf.hdr = eng->ctlframe;
	eng->txf.hdr_len = VR_ETH_HLEN + VR_HDR_LEN + len;
	eng->txf.nfrags = 0;
	eng->txf.len = eng->txf.hdr_len;
	eng->txf.ep = src_ep;
}

int vr_names_emit(struct vr_engine *eng, u64 now, u32 budget)
{
	u32 sent = 0, i;
	u64 backoff;

	while (eng->ann_len && sent < budget) {
		struct vr_announce *a = &eng->announces[eng->ann_head];
		const struct vr_ep *e = &eng->eps[a->src_ep];

		/* The name may have gone since the question came: then no answer. */
		if (e->used && !e->closing && e->name_len) {
			build(eng, a->mac, VR_OP_ANNOUNCE, a->src_ep, a->dst_ep, a->nonce, e->name,
			      e->name_len);
			if (vr_emit(eng, NULL))
				return (int)sent;
			sent++;
		}
		eng->ann_head = (eng->ann_head + 1) % VR_ANNOUNCE_RING;
		eng->ann_len--;
	}
	for (i = 0; i < VR_RESOLVES && sent < budget; i++) {
		struct vr_resolve *r = &eng->resolves[i];

		if (!r->used || !r->send)
			continue;
		build(eng, broadcast_mac, VR_OP_RESOLVE, r->ep, 0, r->nonce, r->name, r->len);
		if (vr_emit(eng, &eng->eps[r->ep]))
			break;
		sent++;
		r->send = false;
		backoff = eng->cfg.rto_ns << (r->tries < 16 ? r->tries : 16);
		if (backoff > eng->cfg.rto_max_ns)
			backoff = eng->cfg.rto_max_ns;
		r->deadline = now + backoff;
		r->tries++;
	}
	return (int)sent;
}

u64 vr_names_next_timeout(const struct vr_engine *eng)
{
	u64 t = VR_U64_MAX;
	u32 i;

	for (i = 0; i < VR_RESOLVES; i++)
		if (eng->resolves[i].used && eng->resolves[i].deadline < t)
			t = eng->resolves[i].deadline;
	return t;
}

void vr_names_timer(struct vr_engine *eng, u64 now)
{
	u32 i;

	for (i = 0; i < VR_RESOLVES; i++) {
		struct vr_resolve *r = &eng->resolves[i];

		if (!r->used || now < r->deadline)
			continue;
		r->deadline = VR_U64_MAX;
		/* As many tries as a connection's handshake gets: no host has
		 * the name (or none that answers). */
		if (r->tries > eng->cfg.retry_limit)
			resolve_end(eng, r, -EHOSTUNREACH, NULL, 0);
		else
			r->send = true;
	}
}
