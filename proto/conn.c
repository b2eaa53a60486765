// SPDX-License-Identifier: GPL-2.0 OR MIT
/* conn.c - connection table, CONNECT_REQ/ACK handshake, DISCONNECT,
 * per-connection timers (handshake retry, RTO, delayed ACK, RNR wait). */
#include "internal.h"
#include "crypto.h"

struct vr_conn *vr_conn_get(struct vr_engine *eng, u32 id)
{
	u32 idx = VR_CONN_IDX(id);
	struct vr_conn *c;

	if (idx >= eng->cfg.max_conns)
		return NULL;
	c = &eng->conns[idx];
	if (c->state == VR_CONN_FREE || c->id != id)
		return NULL;
	return c;
}

int vr_conn_state(const struct vr_engine *eng, u32 id)
{
	struct vr_conn *c = vr_conn_get((struct vr_engine *)eng, id);

	return c ? c->state : -ENOENT;
}

static struct vr_conn *conn_alloc(struct vr_engine *eng, u16 ep)
{
	struct vr_ep *e = &eng->eps[ep];
	u32 i, isn, tries;

	for (i = 0; i < eng->cfg.max_conns; i++) {
		struct vr_conn *c = &eng->conns[i];
		struct vr_op *ops = c->ops;
		u16 *ring = c->ring;
		struct vr_conn_keys *keys = c->keys;
		u16 gen = c->gen;

		if (c->state != VR_CONN_FREE)
			continue;
		memset(c, 0, sizeof(*c));
		c->ops = ops;
		c->ring = ring;
		c->keys = keys;
		memset(keys, 0, sizeof(*keys));
		memset(ops, 0, sizeof(*ops) * 2 * eng->cfg.max_ops);
		/* id = index | generation << 16.  The generation is random
		 * (never 0, so id != 0, and never the slot's last one, so a
		 * stale frame cannot reach the new connection): an off-path
		 * sender cannot predict an id to forge frames for. */
		for (tries = 0; tries < 8; tries++) {
			c->gen = (u16)vr_rand(eng);
			if (c->gen && c->gen != gen)
				break;
		}
		if (!c->gen || c->gen == gen) /* a host whose random is stuck */
			c->gen = (u16)(gen + 1) ? (u16)(gen + 1) : 1;
		c->id = i | ((u32)c->gen << 16);
		c->ep = ep;
		c->mps = eng->mps;
		isn = vr_rand(eng);
		c->isn = c->snd_una = c->snd_nxt = c->snd_hi = c->snd_max = isn;
		vr_cc_init(eng, c);
		c->rto = eng->cfg.rto_ns;
		c->rto_deadline = VR_U64_MAX;
		c->ack_deadline = VR_U64_MAX;
		c->ctl_deadline = VR_U64_MAX;
		c->ep_next = e->conn_head;
		e->conn_head = i;
		return c;
	}
	eng->ctr.pool_exhausted++;
	return NULL;
}

void vr_conn_free(struct vr_engine *eng, struct vr_conn *c)
{
	struct vr_ep *e = &eng->eps[c->ep];
	u32 idx = (u32)(c - eng->conns);
	u32 *pp = &e->conn_head;

	while (*pp != VR_NO_SLOT) {
		if (*pp == idx) {
			*pp = c->ep_next;
			break;
		}
		pp = &eng->conns[*pp].ep_next;
	}
	if (e->rr_conn == idx)
		e->rr_conn = VR_NO_SLOT;
	c->ep_next = VR_NO_SLOT;
	c->state = VR_CONN_FREE;
	vr_crypto_wipe(c->keys->psk, sizeof(c->keys->psk));
	vr_crypto_wipe(c->keys->key, sizeof(c->keys->key));
	vr_ep_release_if_done(eng, e);
}

int vr_connect(struct vr_engine *eng, u16 ep, const u8 peer_mac[6], u16 peer_ep,
	       u64 cookie, u32 *conn)
{
	return vr_connect_data(eng, ep, peer_mac, peer_ep, NULL, 0, cookie, conn);
}

/* The key an endpoint's connections are authenticated with: its own, the
 * device's pre-shared key, or none. */
static const u8 *auth_psk(const struct vr_engine *eng, const struct vr_ep *e)
{
	if (e->has_key)
		return e->key;
	return eng->cfg.auth == VR_AUTH_PSK ? eng->cfg.auth_key : NULL;
}

static void conn_set_auth(struct vr_conn *c, const u8 *psk)
{
	c->auth = true;
	c->mps -= VR_AUTH_BLOCK_LEN;
	memcpy(c->keys->psk, psk, VR_AUTH_KEY_LEN);
}

int vr_connect_data(struct vr_engine *eng, u16 ep, const u8 peer_mac[6], u16 peer_ep,
		    const void *data, u32 len, u64 cookie, u32 *conn)
{
	const u8 *psk;
	struct vr_conn *c;

	if (!peer_mac || !conn || len > VR_PRIVATE_DATA_MAX || (len && !data))
		return -EINVAL;
	if (!vr_ep_get_open(eng, ep))
		return -ENOENT;
	c = conn_alloc(eng, ep);
	if (!c)
		return -ENOSPC;
	psk = auth_psk(eng, &eng->eps[ep]);
	if (psk) {
		/* the request's key until the acceptor's half comes in its ACK */
		conn_set_auth(c, psk);
		vr_auth_conn_key(c->keys->key, psk, c->id, c->isn, 0, 0);
	}
	memcpy(c->peer_mac, peer_mac, 6);
	c->peer_ep = peer_ep;
	c->cookie = cookie;
	if (len)
		memcpy(c->pdata, data, len);
	c->pdata_len = (u8)len;
	c->state = VR_CONN_CONNECTING;
	c->ctl_pending = true;
	c->ctl_deadline = VR_U64_MAX; /* armed when CONNECT_REQ goes out */
	*conn = c->id;
	return 0;
}

int vr_ep_set_accept_data(struct vr_engine *eng, u16 ep, const void *data, u32 len)
{
	struct vr_ep *e = vr_ep_get_open(eng, ep);

	if (!e)
		return -ENOENT;
	if (len > VR_PRIVATE_DATA_MAX || (len && !data))
		return -EINVAL;
	if (len)
		memcpy(e->accept, data, len);
	e->accept_len = (u8)len;
	return 0;
}

int vr_ep_listen(struct vr_engine *eng, u16 ep)
{
	struct vr_ep *e = vr_ep_get_open(eng, ep);

	if (!e)
		return -ENOENT;
	e->listen = true;
	return 0;
}

int vr_conn_peer_data(const struct vr_engine *eng, u32 id, void *out, u32 cap)
{
	const struct vr_conn *c = vr_conn_get((struct vr_engine *)eng, id);

	if (!c || c->state == VR_CONN_CONNECTING)
		return -ENOENT;
	memcpy(out, c->pdata, cap < c->pdata_len ? cap : c->pdata_len);
	return c->pdata_len;
}

int vr_conn_peer(const struct vr_engine *eng, u32 id, u8 mac[6], u16 *ep)
{
	const struct vr_conn *c = vr_conn_get((struct vr_engine *)eng, id);

	if (!c)
		return -ENOENT;
	memcpy(mac, c->peer_mac, 6);
	*ep = c->peer_ep;
	return 0;
}

int vr_disconnect(struct vr_engine *eng, u32 id)
{
	struct vr_conn *c = vr_conn_get(eng, id);

	if (!c)
		return -ENOENT;
	if (c->state == VR_CONN_CLOSING)
		return -EALREADY;
	if (c->state == VR_CONN_CONNECTED) {
		/* Requests fail now; responses already queued for the peer (it
		 * may be waiting on them) still go out, in PSN order, before the
		 * DISCONNECT, which carries our cumulative ACK.  The scheduler
		 * sends them, then DISCONNECT, then frees the slot. */
		c->state = VR_CONN_CLOSING; /* first: callbacks below see it closed */
		c->ctl_pending = true;
		vr_comp_close(eng, c);
		vr_resp_flush_rx(eng, c, -ECANCELED);
		c->nak_reason = 0;
		c->rnr_until = 0;
	} else {
		vr_comp_flush(eng, c, -ECANCELED);
		vr_resp_flush_rx(eng, c, -ECANCELED);
		if (c->state == VR_CONN_CONNECTING)
			vr_complete(eng, &eng->eps[c->ep], VR_WC_CONNECT, c->cookie,
				    -ECANCELED, c->id, 0, 0, 0);
		vr_conn_free(eng, c);
	}
	return 0;
}

/* Move to ERROR: every op fails with status, host is told, slot kept
 * until vr_disconnect so that the id stays meaningful to the host. */
void vr_conn_fail(struct vr_engine *eng, struct vr_conn *c, int status, bool tell_peer)
{
	if (c->state != VR_CONN_CONNECTED)
		return;
	vr_comp_flush(eng, c, status);
	vr_resp_flush_rx(eng, c, status);
	c->state = VR_CONN_ERROR;
	c->rto_deadline = c->ack_deadline = c->ctl_deadline = VR_U64_MAX;
	c->nak_reason = 0;
	c->ack_now = false;
	/* DISCONNECT is sent best-effort once; the peer times out otherwise. */
	c->ctl_pending = tell_peer;
	vr_complete(eng, &eng->eps[c->ep], VR_WC_DISCONNECT, c->cookie, status, c->id,
		    0, 0, 0);
	vr_resp_orphan_recvs(eng, &eng->eps[c->ep], status);
}

static struct vr_offender *offender_of(struct vr_engine *eng, const u8 mac[6])
{
	u32 i;

	for (i = 0; i < VR_OFFENDERS; i++)
		if (eng->offenders[i].since && !memcmp(eng->offenders[i].mac, mac, 6))
			return &eng->offenders[i];
	return NULL;
}

void vr_offence_record(struct vr_engine *eng, const u8 mac[6], u64 now)
{
	struct vr_offender *o = offender_of(eng, mac);
	u32 i;

	eng->ctr.offences++;
	if (o && now - o->since >= VR_OFFENCE_WINDOW_NS) {
		o->since = now ? now : 1; /* a new window */
		o->count = 0;
	}
	if (!o) {
		o = &eng->offenders[0];
		for (i = 1; i < VR_OFFENDERS; i++)
			if (eng->offenders[i].since < o->since)
				o = &eng->offenders[i]; /* a free slot (0) or the oldest */
		memcpy(o->mac, mac, 6);
		o->since = now ? now : 1;
		o->count = 0;
	}
	o->count++;
}

bool vr_offence_barred(struct vr_engine *eng, const u8 mac[6], u64 now)
{
	struct vr_offender *o = offender_of(eng, mac);

	return o && o->count >= VR_OFFENCE_LIMIT && now - o->since < VR_OFFENCE_WINDOW_NS;
}

/* ------------------------------------------------------------ cookies */

static void fill_random(struct vr_engine *eng, u8 *out, u32 len)
{
	u32 i;

	for (i = 0; i < len; i += 4) {
		u32 r = vr_rand(eng);

		memcpy(out + i, &r, len - i < 4 ? len - i : 4);
	}
}

void vr_conn_init_secrets(struct vr_engine *eng)
{
	fill_random(eng, eng->ck_secret[0], sizeof(eng->ck_secret[0]));
	fill_random(eng, eng->ck_secret[1], sizeof(eng->ck_secret[1]));
	eng->ck_epoch = 0;
}

/* The secret follows the host's clock: a new one every epoch, the last one
 * kept for cookies handed out just before the change. */
static void cookie_rotate(struct vr_engine *eng, u64 now)
{
	u64 epoch = now >> VR_COOKIE_EPOCH_SHIFT;

	if (epoch == eng->ck_epoch)
		return;
	if (epoch == eng->ck_epoch + 1)
		memcpy(eng->ck_secret[1], eng->ck_secret[0], sizeof(eng->ck_secret[1]));
	else
		fill_random(eng, eng->ck_secret[1], sizeof(eng->ck_secret[1]));
	fill_random(eng, eng->ck_secret[0], sizeof(eng->ck_secret[0]));
	eng->ck_epoch = epoch;
}

/* A keyed hash of what the request claims: who sent it (MAC, endpoint),
 * to which endpoint, and the initiator's connection id and ISN (its
 * nonce).  Never 0, which means "no cookie". */
static u64 cookie_of(const u8 secret[16], const struct vr_parsed *p)
{
	u8 in[18];
	u64 ck;

	memcpy(in, p->src_mac, 6);
	vr_put_be16(in + 6, p->h.src_ep);
	vr_put_be16(in + 8, p->h.dst_ep);
	vr_put_be32(in + 10, p->h.msg_id);
	vr_put_be32(in + 14, p->h.psn);
	ck = vr_siphash24(secret, in, sizeof(in));
	return ck ? ck : 1;
}

static bool cookie_valid(const struct vr_engine *eng, const struct vr_parsed *p)
{
	u64 ck = p->h.operand_b;

	return ck && (ck == cookie_of(eng->ck_secret[0], p) || ck == cookie_of(eng->ck_secret[1], p));
}

/* ------------------------------------------ connectionless answers */

/*
 * An answer to a CONNECT_REQ that created nothing: a RETRY with a cookie
 * or a refusal.  A flood of requests must not buy a flood of answers or
 * crowd out a real initiator's: at most VR_CTL_REPLY_BURST per period, at
 * most VR_CTL_REPLIES_PER_MAC waiting for one MAC, VR_CTL_RING in all.
 */
static void queue_reply(struct vr_engine *eng, const struct vr_parsed *p, u8 opcode,
			u8 reason, u64 cookie, u64 now)
{
	struct vr_ctl_reply *r;
	u32 i, same = 0;

	if (now - eng->ctl_window >= VR_CTL_REPLY_PERIOD_NS) {
		eng->ctl_window = now;
		eng->ctl_sent = 0;
	}
	for (i = 0; i < eng->ctl_len; i++)
		same += !memcmp(eng->ctl[(eng->ctl_head + i) % VR_CTL_RING].mac, p->src_mac, 6);
	if (eng->ctl_len == VR_CTL_RING || same >= VR_CTL_REPLIES_PER_MAC ||
	    eng->ctl_sent >= VR_CTL_REPLY_BURST) {
		eng->ctr.ctl_replies_dropped++;
		return;
	}
	eng->ctl_sent++;
	r = &eng->ctl[(eng->ctl_head + eng->ctl_len) % VR_CTL_RING];
	memcpy(r->mac, p->src_mac, 6);
	r->opcode = opcode;
	r->reason = reason;
	r->src_ep = p->h.dst_ep;
	r->dst_ep = p->h.src_ep;
	r->peer_conn = p->h.msg_id;
	r->peer_isn = p->h.psn;
	r->cookie = cookie;
	eng->ctl_len++;
}

int vr_conn_emit_replies(struct vr_engine *eng, u64 now, u32 budget)
{
	int sent = 0;

	(void)now;
	while (eng->ctl_len && (u32)sent < budget) {
		struct vr_ctl_reply *r = &eng->ctl[eng->ctl_head];
		struct vr_hdr h;

		memset(&h, 0, sizeof(h));
		h.version = VR_WIRE_VERSION;
		h.opcode = r->opcode;
		h.nak_reason = r->opcode == VR_OP_NAK ? r->reason : 0;
		h.src_ep = r->src_ep;
		h.dst_ep = r->dst_ep;
		h.conn_id = r->peer_conn;
		h.ack_psn = r->peer_isn;
		h.operand_b = r->cookie;
		vr_wire_put_eth(eng->txhdr, r->mac, eng->cfg.mac, eng->cfg.ethertype);
		vr_wire_encode_full(eng->txhdr, &h, NULL);
		eng->txf.hdr = eng->txhdr;
		eng->txf.hdr_len = VR_ETH_HLEN + VR_HDR_LEN;
		eng->txf.nfrags = 0;
		eng->txf.len = VR_ETH_HLEN + VR_HDR_LEN;
		eng->txf.ep = r->src_ep;
		if (vr_emit(eng, NULL))
			break;
		if (r->opcode == VR_OP_NAK)
			eng->ctr.naks_tx[r->reason]++;
		else
			eng->ctr.cookies_sent++;
		eng->ctl_head = (eng->ctl_head + 1) % VR_CTL_RING;
		eng->ctl_len--;
		sent++;
	}
	return sent;
}

/* A listener takes at most max_conns_per_peer connections from one MAC and
 * leaves conn_reserve slots for the host's own connects. */
static bool conn_limits_allow(const struct vr_engine *eng, const u8 mac[6])
{
	u32 i, total = 0, same = 0;

	for (i = 0; i < eng->cfg.max_conns; i++) {
		const struct vr_conn *c = &eng->conns[i];

		if (c->state == VR_CONN_FREE || !c->passive)
			continue;
		total++;
		same += !memcmp(c->peer_mac, mac, 6);
	}
	return same < eng->cfg.max_conns_per_peer &&
	       total < eng->cfg.max_conns - eng->cfg.conn_reserve;
}

/*
 * A CONNECT_REQ.  Nothing is kept for it until it echoes a cookie that only
 * a receiver at its source MAC can have (a RETRY went there); then it must
 * still not replace a live connection, pass the offence record, the limits
 * and the host's accept policy.
 */
void vr_conn_rx_req(struct vr_engine *eng, const struct vr_parsed *p, u64 now)
{
	struct vr_ep *e = vr_ep_get(eng, p->h.dst_ep);
	struct vr_conn *c, *live = NULL;
	const u8 *psk;
	u32 i;

	if (!e || !e->listen) {
		queue_reply(eng, p, VR_OP_NAK, VR_NAK_NO_EP, 0, now);
		return;
	}
	for (i = e->conn_head; i != VR_NO_SLOT; i = eng->conns[i].ep_next) {
		c = &eng->conns[i];
		if (!c->passive || c->peer_id != p->h.msg_id || c->peer_ep != p->h.src_ep ||
		    memcmp(c->peer_mac, p->src_mac, 6))
			continue;
		/* A retransmitted request for a live connection: re-send the ACK. */
		if (c->peer_isn == p->h.psn) {
			if (c->state == VR_CONN_CONNECTED)
				c->ctl_pending = true;
			return;
		}
		live = c;
	}
	cookie_rotate(eng, now);
	if (!cookie_valid(eng, p)) {
		if (p->h.operand_b)
			VR_CTR(eng, e, cookies_refused, 1);
		queue_reply(eng, p, VR_OP_CONNECT_RETRY, 0, cookie_of(eng->ck_secret[0], p), now);
		return;
	}
	/* Both sides authenticate, or neither: a mismatch is refused plainly
	 * (the initiator learns why); a request whose tag is wrong is dropped. */
	psk = auth_psk(eng, e);
	if (!psk != !p->auth) {
		VR_CTR(eng, e, auth_refused, 1);
		queue_reply(eng, p, VR_OP_NAK, VR_NAK_REJECTED, 0, now);
		return;
	}
	if (psk) {
		u8 key[VR_AUTH_KEY_LEN];
		bool ok;

		vr_auth_conn_key(key, psk, p->h.msg_id, p->h.psn, 0, 0);
		ok = vr_auth_check(key, p->frame, p->auth, p->payload, p->h.payload_len);
		vr_crypto_wipe(key, sizeof(key));
		if (!ok) {
			VR_CTR(eng, e, auth_failed, 1);
			return;
		}
	}
	if (live) {
		/* Same peer and connection id, another ISN: a restarted peer whose
		 * fresh engine drew the same id, or a forger.  Not obeyed (RFC 5961):
		 * the live connection is probed, and fails only if it stays silent
		 * (vr_conn_timer); the initiator's next request then gets in. */
		if (live->state == VR_CONN_CONNECTED) {
			VR_CTR(eng, e, challenges, 1);
			if (!live->challenge_at) {
				live->challenge_at = now ? now : 1;
				live->probe = true;
			}
			return;
		}
		live->peer_id = 0; /* failed already: no longer the peer's */
	}
	if (vr_offence_barred(eng, p->src_mac, now)) {
		eng->ctr.offenders_refused++;
		queue_reply(eng, p, VR_OP_NAK, VR_NAK_REJECTED, 0, now);
		return;
	}
	if (!conn_limits_allow(eng, p->src_mac)) {
		VR_CTR(eng, e, conn_limit_refused, 1);
		queue_reply(eng, p, VR_OP_NAK, VR_NAK_RESOURCES, 0, now);
		return;
	}
	if (eng->host.accept &&
	    eng->host.accept(eng->cfg.ctx, p->h.dst_ep, p->src_mac, p->h.src_ep)) {
		queue_reply(eng, p, VR_OP_NAK, VR_NAK_REJECTED, 0, now);
		return;
	}
	c = conn_alloc(eng, p->h.dst_ep);
	if (!c) {
		queue_reply(eng, p, VR_OP_NAK, VR_NAK_RESOURCES, 0, now);
		return;
	}
	memcpy(c->peer_mac, p->src_mac, 6);
	c->passive = true;
	c->peer_ep = p->h.src_ep;
	c->peer_id = p->h.msg_id;
	c->peer_isn = p->h.psn;
	c->rcv_nxt = p->h.psn;
	if (psk) {
		conn_set_auth(c, psk);
		vr_auth_conn_key(c->keys->key, psk, c->peer_id, c->peer_isn, c->id, c->isn);
	}
	c->link_fcs = !c->auth && eng->cfg.integrity == VR_INTEGRITY_LINK &&
		      (p->h.operand_a & VR_CAP_LINK_FCS);
	memcpy(c->pdata, p->payload, p->h.payload_len); /* <= VR_PRIVATE_DATA_MAX: parsed */
	c->pdata_len = (u8)p->h.payload_len;
	c->last_rx = c->last_probe = now;
	c->state = VR_CONN_CONNECTED;
	c->ctl_pending = true; /* CONNECT_ACK; re-sent on each duplicate REQ */
	vr_complete(eng, e, VR_WC_ACCEPT, 0, 0, c->id, 0, 0, 0);
}

int vr_conn_auth_rx(struct vr_engine *eng, struct vr_conn *c, const struct vr_parsed *p)
{
	struct vr_ep *e = &eng->eps[c->ep];
	u8 acked[VR_AUTH_KEY_LEN];
	const u8 *key = c->keys->key;
	u64 nonce;
	bool ok;

	if (!c->auth) {
		if (!p->auth)
			return 0;
		VR_CTR(eng, e, auth_failed, 1);
		return -EBADMSG;
	}
	if (!p->auth) {
		/* Connectionless answers to our request carry no tag: they come
		 * from a listener that keeps nothing (RETRY) or refuses. */
		if (c->state == VR_CONN_CONNECTING &&
		    (p->h.opcode == VR_OP_CONNECT_RETRY || p->h.opcode == VR_OP_NAK))
			return 0;
		VR_CTR(eng, e, auth_failed, 1);
		return -EBADMSG;
	}
	nonce = vr_get_be64(p->auth);
	/* Only the peer's direction (a reflected frame of ours fails here),
	 * and every nonce once. */
	if ((nonce & VR_AUTH_NONCE_PASSIVE) != (c->passive ? 0 : VR_AUTH_NONCE_PASSIVE)) {
		VR_CTR(eng, e, auth_failed, 1);
		return -EBADMSG;
	}
	if (!vr_replay_fresh(&c->keys->rx_nonces, nonce)) {
		VR_CTR(eng, e, auth_replays, 1);
		return -EALREADY;
	}
	if (c->state == VR_CONN_CONNECTING) {
		if (p->h.opcode != VR_OP_CONNECT_ACK) {
			VR_CTR(eng, e, auth_failed, 1);
			return -EBADMSG;
		}
		/* The acceptor's half of the key is in its ACK. */
		vr_auth_conn_key(acked, c->keys->psk, c->id, c->isn, p->h.msg_id, p->h.psn);
		key = acked;
	}
	ok = vr_auth_check(key, p->frame, p->auth, p->payload, p->h.payload_len);
	if (!ok) {
		VR_CTR(eng, e, auth_failed, 1);
	} else {
		vr_replay_take(&c->keys->rx_nonces, nonce);
		if (key == acked)
			memcpy(c->keys->key, acked, sizeof(acked));
	}
	if (key == acked)
		vr_crypto_wipe(acked, sizeof(acked));
	return ok ? 0 : -EBADMSG;
}

/* Frames for an initiator's connection (CONNECT_ACK, CONNECT_RETRY, a
 * refusal) or a DISCONNECT; the caller matched the connection's id, peer
 * MAC and endpoints. */
void vr_conn_rx_ctl(struct vr_engine *eng, const struct vr_parsed *p, u64 now)
{
	struct vr_conn *c = vr_conn_get(eng, p->h.conn_id);

	if (!c)
		return;
	/* Answers to our CONNECT_REQ echo our ISN: blind ones are dropped. */
	if (p->h.opcode != VR_OP_DISCONNECT &&
	    (c->state != VR_CONN_CONNECTING || p->h.ack_psn != c->isn)) {
		VR_CTR(eng, &eng->eps[c->ep], drop_bad_state, 1);
		return;
	}
	switch (p->h.opcode) {
	case VR_OP_CONNECT_RETRY:
		/* Send the request again with the listener's cookie.  A listener
		 * that keeps handing out new ones is left to the retry timer. */
		if (!p->h.operand_b || p->h.operand_b == c->hs_cookie ||
		    c->hs_cookies >= VR_HS_COOKIES_MAX)
			return;
		c->hs_cookie = p->h.operand_b;
		c->hs_cookies++;
		c->ctl_pending = true;
		c->ctl_deadline = VR_U64_MAX;
		break;
	case VR_OP_CONNECT_ACK:
		c->peer_id = p->h.msg_id;
		c->rcv_nxt = p->h.psn;
		/* The responder's choice, never more than we offered. */
		c->link_fcs = !c->auth && eng->cfg.integrity == VR_INTEGRITY_LINK &&
			      (p->h.operand_a & VR_CAP_LINK_FCS);
		memcpy(c->pdata, p->payload, p->h.payload_len); /* the accept data */
		c->pdata_len = (u8)p->h.payload_len;
		c->last_rx = c->last_probe = now;
		c->state = VR_CONN_CONNECTED;
		c->ctl_pending = false;
		c->ctl_deadline = VR_U64_MAX;
		vr_complete(eng, &eng->eps[c->ep], VR_WC_CONNECT, c->cookie, 0, c->id, 0, 0, 0);
		break;
	case VR_OP_NAK: /* connection refused */
		VR_CTR(eng, &eng->eps[c->ep], naks_rx[p->h.nak_reason], 1);
		vr_complete_nak(eng, &eng->eps[c->ep], VR_WC_CONNECT, c->cookie,
				-ECONNREFUSED, c->id, 0, 0, 0, p->h.nak_reason);
		vr_conn_free(eng, c);
		break;
	case VR_OP_DISCONNECT:
		if (c->state != VR_CONN_CONNECTED)
			break;
		/* Only from inside the connection's windows: the peer's highest
		 * PSN sent (psn) at or a window beyond what we received, and its
		 * ACK within what we sent.  A blind forger knows neither. */
		if (vr_psn_lt(p->h.psn, c->rcv_nxt) ||
		    p->h.psn - c->rcv_nxt > VR_PSN_SLACK ||
		    vr_psn_lt(p->h.ack_psn, c->snd_una) || vr_psn_lt(c->snd_hi, p->h.ack_psn)) {
			VR_CTR(eng, &eng->eps[c->ep], drop_bad_ack, 1);
			break;
		}
		/* The peer's last word acknowledges what it received: complete
		 * those ops with success first (a delayed ACK may never come),
		 * then fail the rest. */
		vr_comp_rx_ack(eng, c, p->h.ack_psn, now);
		vr_conn_fail(eng, c, -ECONNRESET, false);
		break;
	default:
		break;
	}
}

/* The probe interval: the configured one, but at least four probes within
 * the peer timeout, so a live peer always has the chance to answer. */
static u64 keepalive_interval(const struct vr_engine *eng)
{
	u64 quarter = eng->cfg.peer_timeout_ns / 4;

	return eng->cfg.keepalive_ns < quarter ? eng->cfg.keepalive_ns : (quarter ? quarter : 1);
}

u64 vr_conn_next_timeout(const struct vr_engine *eng, const struct vr_conn *c)
{
	u64 t = c->ctl_deadline;

	(void)eng;
	if (c->state != VR_CONN_CONNECTED)
		return t;
	if (c->rto_deadline < t)
		t = c->rto_deadline;
	if (c->ack_deadline < t)
		t = c->ack_deadline;
	if (c->rnr_until && c->rnr_until < t)
		t = c->rnr_until;
	if (c->challenge_at && c->challenge_at + eng->cfg.rto_max_ns < t)
		t = c->challenge_at + eng->cfg.rto_max_ns;
	if (eng->cfg.keepalive_ns != VR_KEEPALIVE_OFF) {
		u64 heard = c->last_rx > c->last_probe ? c->last_rx : c->last_probe;
		u64 probe_at = heard + keepalive_interval(eng);
		u64 dead_at = c->last_rx + eng->cfg.peer_timeout_ns;

		if (probe_at < t)
			t = probe_at;
		if (dead_at < t)
			t = dead_at;
	}
	return t;
}

void vr_conn_timer(struct vr_engine *eng, struct vr_conn *c, u64 now)
{
	struct vr_ep *e = &eng->eps[c->ep];

	if (c->state == VR_CONN_CONNECTING && now >= c->ctl_deadline) {
		VR_CTR(eng, e, timeouts, 1);
		if (++c->ctl_retries > eng->cfg.retry_limit) {
			vr_complete(eng, e, VR_WC_CONNECT, c->cookie, -ETIMEDOUT, c->id,
				    0, 0, 0);
			vr_conn_free(eng, c);
			return;
		}
		c->ctl_pending = true;
		c->ctl_deadline = VR_U64_MAX;
		return;
	}
	if (c->state != VR_CONN_CONNECTED)
		return;
	/* A replacing CONNECT_REQ probed us and the peer did not answer: it
	 * restarted, and its next request opens the new connection. */
	if (c->challenge_at && now - c->challenge_at >= eng->cfg.rto_max_ns) {
		VR_CTR(eng, e, challenge_resets, 1);
		c->challenge_at = 0;
		vr_conn_fail(eng, c, -ECONNRESET, false);
		return;
	}
	if (eng->cfg.keepalive_ns != VR_KEEPALIVE_OFF) {
		/* Silence, data in flight or not: the peer is gone. */
		if (now - c->last_rx >= eng->cfg.peer_timeout_ns) {
			VR_CTR(eng, e, timeouts, 1);
			vr_conn_fail(eng, c, -ETIMEDOUT, true);
			return;
		}
		if (now - (c->last_rx > c->last_probe ? c->last_rx : c->last_probe) >=
		    keepalive_interval(eng)) {
			c->probe = true;
			c->last_probe = now;
		}
	}
	if (now >= c->ack_deadline) {
		c->ack_now = true;
		c->ack_deadline = VR_U64_MAX;
	}
	if (c->rnr_until && now >= c->rnr_until)
		c->rnr_until = 0;
	if (now >= c->rto_deadline) {
		VR_CTR(eng, e, timeouts, 1);
		if (!c->stall_since)
			c->stall_since = now ? now : 1;
		/* Gone only when silent for the whole budget: a peer whose
		 * loop is busy for a while keeps its connection. */
		if (++c->retries > eng->cfg.retry_limit &&
		    now - c->stall_since >= eng->cfg.peer_timeout_ns) {
			vr_conn_fail(eng, c, -ETIMEDOUT, true);
			return;
		}
		/* go-back-N: resend everything from the oldest unacked PSN */
		vr_cc_on_loss(eng, c, c->snd_una, true);
		c->snd_nxt = c->snd_una;
		c->rto = c->rto * 2 > eng->cfg.rto_max_ns ? eng->cfg.rto_max_ns : c->rto * 2;
		c->rto_deadline = now + c->rto;
	}
}
