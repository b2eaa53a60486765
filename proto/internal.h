/* SPDX-License-Identifier: GPL-2.0 OR MIT */
/* internal.h - engine state shared by engine.c, conn.c, requester.c,
 * responder.c and completer.c.  Not for hosts. */
#ifndef VR_INTERNAL_H
#define VR_INTERNAL_H
#include "engine.h"
#include "auth.h"

enum vr_op_kind {
	VR_K_FREE = 0,
	VR_K_WRITE, VR_K_READ, VR_K_SEND, VR_K_FADD, VR_K_CSWAP, /* requests */
	VR_K_READ_RESP, VR_K_ATOMIC_RESP,                        /* responses */
};

/* One message in a connection's outbound stream (request or response). */
struct vr_op {
	u8 kind;
	bool in_ring;     /* PSNs not yet all acknowledged */
	bool completed;   /* completion delivered (requests only) */
	bool aborted;     /* remaining frames go out with VR_F_ABORT */
	u8 abort_reason;  /* NAK reason carried by aborted READ_RESP */
	u16 gen;
	u32 msg_id;
	u64 lkey, rkey;
	u64 loff, roff;
	u32 len;
	u32 psn_first, nframes;
	u64 a, b;         /* tag / atomic operands / atomic result */
	u64 cookie;
};

enum { VR_RX_NONE = 0, VR_RX_RECV, VR_RX_UNEXP, VR_RX_DISCARD };

/* An authenticated connection's keys, apart from the connection so that
 * scans over the connection table stay as short as without them: the key
 * (a request's until the ACK, then the connection's), the pre-shared key it
 * comes from, our next nonce and the peer's replay window. */
struct vr_conn_keys {
	u64 tx_nonce;
	struct vr_replay rx_nonces;
	u8 psk[VR_AUTH_KEY_LEN];
	u8 key[VR_AUTH_KEY_LEN];
};

/*
 * Selective repeat (docs/proto.md, Reliability): a connection's per-frame
 * record, in a table beside the connection table.  Each bitmap is indexed by
 * PSN modulo VR_SR_SPAN; the receiver's covers (rcv_nxt, rcv_nxt + SPAN),
 * the sender's [snd_una, snd_una + SPAN), which bounds what it has in flight.
 * The SPAN is the SACK map's (wire.h), so all the receiver holds is told.
 */
#define VR_SR_SPAN VR_SACK_BITS
#define VR_SR_WORDS VR_SACK_WORDS
/* A frame is lost once one sent this many transmissions after it arrived. */
#define VR_SR_REORDER 3
/* With SACK a receiver ACKs at least every so many payload bytes. */
#define VR_SR_ACK_BYTES 65536u

struct vr_conn_sr {
	u64 held[VR_SR_WORDS];   /* receiver: placed ahead of rcv_nxt */
	u64 ends[VR_SR_WORDS];   /* receiver: ... and completes the READ end_msg[] names */
	u32 end_msg[VR_SR_SPAN];
	u64 sacked[VR_SR_WORDS]; /* sender: the peer holds it */
	u64 lost[VR_SR_WORDS];   /* sender: to be sent again */
	u32 txseq[VR_SR_SPAN];   /* sender: tx_count when it was last sent */
	/* sender: the round trip, sampled on a frame that asks for an ACK
	 * (one at a time: sent at rtt_at, answered when snd_una passes
	 * rtt_psn), smoothed as TCP does (7/8 old + 1/8 new); it times the
	 * tail-loss probe */
	u64 rtt_at;
	u32 rtt_psn, srtt;
};

static inline bool vr_sr_test(const u64 *map, u32 psn)
{
	return (map[(psn / 64) % VR_SR_WORDS] >> (psn % 64)) & 1;
}

static inline void vr_sr_set(u64 *map, u32 psn)
{
	map[(psn / 64) % VR_SR_WORDS] |= 1ULL << (psn % 64);
}

static inline void vr_sr_clear(u64 *map, u32 psn)
{
	map[(psn / 64) % VR_SR_WORDS] &= ~(1ULL << (psn % 64));
}

/* The windows every frame of a connection must fall in (docs/proto.md):
 * how far a PSN may be from what we expect next, and how far an ack_psn may
 * lag behind what the peer already acknowledged.  A blind forger has to hit
 * both, and the connection id. */
#define VR_PSN_SLACK 65536u

struct vr_conn {
	u8 state;
	u16 gen;
	u16 ep;
	u16 peer_ep;
	u8 peer_mac[6];
	u32 id, peer_id;
	u32 peer_isn;           /* the peer's initial PSN: tells a restarted peer from a retry */
	bool passive;           /* accepted (counts against the listener's limits) */
	u16 pd;                 /* protection domain (region.h; 0: none) */
	u8 hs_cookies;          /* CONNECTING: RETRY cookies taken so far */
	bool sack;              /* selective repeat agreed (VR_CAP_SACK); state in *sr */
	u16 n_held;             /* receiver: frames held ahead of rcv_nxt */
	u16 n_sacked, n_lost;   /* sender: bits set in sr->sacked, sr->lost */
	u16 wnd;                /* sender: the window, cfg.window, at most VR_SR_SPAN with SACK */
	u16 ack_every;          /* receiver: ACK at least every so many frames */
	u64 hs_cookie;          /* CONNECTING: the listener's cookie to echo (0: none yet) */
	u64 challenge_at;       /* a replacing CONNECT_REQ was seen then (0: none) */
	bool auth;              /* authenticated frames: keys in *keys */
	bool link_fcs;          /* handshake agreed: payloads rest on the link's FCS */
	bool probe;             /* send an ACK that asks for an ACK */
	u32 mps;                /* payload bytes per frame: less the auth block if auth */
	struct vr_conn_keys *keys;
	struct vr_conn_sr *sr;
	/* liveness: the last frame heard on this connection, the last probe */
	u64 last_rx, last_probe;
	u64 cookie;            /* of vr_connect */
	u32 ep_next;           /* endpoint's connection list */
	/* requester side of the outbound stream */
	u32 isn;               /* our initial PSN, told to the peer in the handshake */
	u32 snd_una, snd_nxt, snd_hi, snd_max;
	u32 ring_head, ring_len;
	u16 *ring;             /* op indices in PSN order */
	u16 psn_hint;          /* op index vr_op_for_psn found last (a guess, checked) */
	u16 psn_hint_pos;      /* ... and where it stood in the ring */
	u16 alloc_next[2];     /* where vr_op_alloc looks first: requests, responses */
	struct vr_op *ops;     /* [0,max_ops) requests, [max_ops,2*max_ops) responses */
	u32 tx_count;          /* SACK: data frames sent (new and again), for sr->txseq */
	u32 rnr_retries;
	u64 rto, rto_deadline; /* deadline VR_U64_MAX when disarmed */
	/* congestion window (frames, <= wnd): slow start below
	 * ssthresh, then one frame more per window acknowledged; halved once
	 * per loss event (a sequence NAK past `recover`), back to 2 on RTO */
	u32 cwnd, ssthresh, cwnd_acked, recover;
	u32 retries;
	u32 delivered;         /* SACK: highest txseq of a frame the peer has */
	u32 ack_asked;         /* SACK: an ACK is asked for up to here (window full) */
	bool tail_probe;       /* SACK: send snd_una's frame again, asking for an ACK */
	u8 tail_backoff;       /* SACK: unanswered probes (the probe time doubles) */
	u64 tail_probe_at;     /* SACK: probe then, if nothing is heard before */
	u64 stall_since;       /* first RTO expiry since the last progress (0: none) */
	u64 rnr_until;
	u64 rnr_since;         /* first RNR NAK since the last progress (0: none) */
	/* receiver side of the inbound stream */
	u32 rcv_nxt;
	u32 unacked_rx;
	bool ack_now;
	bool seq_nak_sent;
	bool ctl_pending;      /* handshake / teardown: CONNECT_REQ/ACK or DISCONNECT to send */
	u64 ack_deadline;
	u8 nak_reason;         /* pending NAK (0 = none) */
	u32 nak_psn;
	u8 rx_kind;            /* inbound SEND being assembled */
	u32 rx_idx, rx_msg, rx_total;
	/* handshake / teardown */
	u64 ctl_deadline;
	u32 ctl_retries;
	/* private data: ours while CONNECTING, then the peer's (its CONNECT_REQ
	 * on the accepting side, its CONNECT_ACK on the connecting side) */
	u8 pdata_len;
	u8 pdata[VR_PRIVATE_DATA_MAX];
};

enum { VR_RECV_FREE = 0, VR_RECV_POSTED, VR_RECV_BOUND };

struct vr_recv {
	u8 state;
	u64 lkey;
	u64 loff;
	u32 len;
	u64 tag, mask, cookie;
	u64 seq;
};

struct vr_unexp {
	bool used, complete, aborted;
	u32 conn;         /* source connection id */
	u64 peer;         /* its peer (vr_peer_word), kept should it go */
	u64 seq;          /* arrival order */
	u64 tag;
	u32 total, got;
	u32 recv;         /* attached receive or VR_NO_SLOT */
	u8 *buf;
};

struct vr_ep {
	bool used, listen, quantum_given;
	bool closing;     /* vr_ep_close: waits for its last DISCONNECT to go out */
	u32 weight;
	s64 deficit;
	u32 conn_head, rr_conn;
	u32 next_open;    /* circular list of open endpoints, in id order */
	struct vr_recv *recvs;
	struct vr_unexp *unexp;
	u64 recv_seq, unexp_seq;
	struct vr_counters ctr;
	bool has_key;     /* vr_ep_set_auth_key */
	u8 key[VR_AUTH_KEY_LEN];
	u8 name_len, accept_len;
	u8 name[VR_NAME_MAX];            /* answered to RESOLVE (names.c) */
	u8 accept[VR_PRIVATE_DATA_MAX];  /* carried by every CONNECT_ACK */
};

/* A RESOLVE the host asked for (names.c): re-sent with the handshake's
 * backoff until an ANNOUNCE with its nonce comes or the tries run out. */
#define VR_RESOLVES 8
struct vr_resolve {
	bool used, send;
	u8 len, tries;
	u16 ep;
	u32 nonce;
	u64 cookie, deadline;
	u8 name[VR_NAME_MAX];
};

/* An ANNOUNCE owed to a RESOLVE we have the name for. */
#define VR_ANNOUNCE_RING 8
struct vr_announce {
	u8 mac[6];
	u16 src_ep, dst_ep;
	u32 nonce;
};

#define VR_CTL_RING 32
struct vr_ctl_reply {        /* connectionless answer to a CONNECT_REQ */
	u8 mac[6];
	u8 opcode;           /* VR_OP_NAK (refused) or VR_OP_CONNECT_RETRY */
	u8 reason;           /* NAK */
	u16 src_ep, dst_ep;
	u32 peer_conn;       /* the initiator's connection id */
	u32 peer_isn;        /* its ISN, echoed so that it knows the answer is real */
	u64 cookie;          /* RETRY */
};

/* At most this many RETRY cookies are taken in one connect (a listener
 * that keeps answering with new ones is left to the handshake's timer). */
#define VR_HS_COOKIES_MAX 4

/* Peers whose requests drew fatal NAKs (VR_OFFENCE_LIMIT in engine.h): a
 * small table, oldest entry replaced.  It slows one guesser down; it does not
 * stop spoofed MACs (keys with enough random bits do that). */
#define VR_OFFENDERS 16

struct vr_offender {
	u8 mac[6];
	u32 count;
	u64 since;   /* first offence of the current window; 0: slot free */
};

/* A protection domain: which endpoint it belongs to (engine.h vr_pd_*). */
struct vr_pd {
	u16 ep;
	bool used;
};

struct vr_engine {
	struct vr_config cfg;
	struct vr_host_ops host;
	const struct vr_mem_ops *mem;
	u32 mps;                  /* max payload per frame */
	struct vr_ep *eps;
	struct vr_conn *conns;
	struct vr_region_table rt;
	struct vr_pd *pds;        /* domain d is pds[d - 1] */
	u32 npds;
	u32 tx_cursor;            /* an open endpoint (DRR position) */
	u32 n_open;               /* open endpoints */
	struct vr_ctl_reply ctl[VR_CTL_RING];
	u32 ctl_head, ctl_len;
	u64 ctl_window, ctl_sent; /* rate of connectionless answers */
	/* cookie secrets: [0] for epoch ck_epoch, [1] for the one before */
	u8 ck_secret[2][16];
	u64 ck_epoch;
	struct vr_counters ctr;
	struct vr_offender offenders[VR_OFFENDERS];
	struct vr_resolve resolves[VR_RESOLVES];
	struct vr_announce announces[VR_ANNOUNCE_RING];
	u32 ann_head, ann_len;
	u8 txhdr[VR_ETH_HLEN + VR_HDR_LEN + VR_AUTH_BLOCK_LEN];
	/* a control frame with a payload (private data, a name) */
	u8 ctlframe[VR_ETH_HLEN + VR_HDR_LEN + VR_AUTH_BLOCK_LEN + VR_PRIVATE_DATA_MAX];
	struct vr_frame txf;
	/* commit record for the frame in txf */
	struct vr_conn *tx_conn;
	u8 tx_what;
	u32 tx_psn;               /* VR_TX_DATA: its PSN */
	bool tx_asks;             /* ... flagged ACKREQ because it fills the window */
	bool tx_probe;            /* ... a tail-loss probe */
	bool tx_ackreq;           /* ... flagged ACKREQ */
	/* the last frame taken was an in-order first or middle data frame */
	bool rx_mid_message;
};

enum { VR_TX_NONE, VR_TX_CTL, VR_TX_NAK, VR_TX_DATA, VR_TX_ACK };

#define VR_CONN_IDX(id) ((id) & 0xFFFFu)

/* counters: engine-wide and per endpoint */
#define VR_CTR(eng, e, field, n) do { (eng)->ctr.field += (n); \
	if (e) (e)->ctr.field += (n); } while (0)

/* completer.c: the congestion window */
void vr_cc_init(struct vr_conn *c);
void vr_cc_on_ack(struct vr_conn *c, u32 newly_acked);
void vr_cc_on_loss(struct vr_engine *eng, struct vr_conn *c, u32 psn, bool timeout);

/* engine.c */
struct vr_ep *vr_ep_get(struct vr_engine *eng, u16 ep);
/* As vr_ep_get, but not an endpoint that is closing: for host requests. */
struct vr_ep *vr_ep_get_open(struct vr_engine *eng, u16 ep);
/* A closing endpoint whose last connection is gone becomes free. */
void vr_ep_release_if_done(struct vr_engine *eng, struct vr_ep *e);
void vr_complete(struct vr_engine *eng, struct vr_ep *e, u32 op, u64 cookie, int status,
		 u32 conn, u64 bytes, u64 tag, u64 value);
void vr_complete_nak(struct vr_engine *eng, struct vr_ep *e, u32 op, u64 cookie, int status,
		     u32 conn, u64 bytes, u64 tag, u64 value, u8 nak_reason);
struct vr_ep *vr_ep_get(struct vr_engine *eng, u16 ep);
u32 vr_rand(struct vr_engine *eng);
/* Hand eng->txf to the host: 0, or -EAGAIN (queue full: build it again later). */
int vr_emit(struct vr_engine *eng, struct vr_ep *e);
/* BAD_KEY, BOUNDS, ACCESS, INVALID, TOO_LONG: the request can never succeed. */
bool vr_nak_fatal(u8 reason);
int vr_nak_to_errno(u8 reason);
u8 vr_errno_to_nak(int err);

/* conn.c */
struct vr_conn *vr_conn_get(struct vr_engine *eng, u32 id);
void vr_conn_rx_ctl(struct vr_engine *eng, const struct vr_parsed *p, u64 now);
void vr_conn_rx_req(struct vr_engine *eng, const struct vr_parsed *p, u64 now);
int vr_conn_emit_replies(struct vr_engine *eng, u64 now, u32 budget);
void vr_conn_init_secrets(struct vr_engine *eng);
/* A frame for c passes authentication (or c has none and the frame no
 * tag): 0, else -EBADMSG / -EALREADY (counted). */
int vr_conn_auth_rx(struct vr_engine *eng, struct vr_conn *c, const struct vr_parsed *p);
void vr_conn_fail(struct vr_engine *eng, struct vr_conn *c, int status, bool tell_peer);
void vr_conn_free(struct vr_engine *eng, struct vr_conn *c);
void vr_conn_timer(struct vr_engine *eng, struct vr_conn *c, u64 now);
u64 vr_conn_next_timeout(const struct vr_engine *eng, const struct vr_conn *c);

/* names.c */
int vr_names_rx(struct vr_engine *eng, const struct vr_parsed *p);
int vr_names_emit(struct vr_engine *eng, u64 now, u32 budget);
u64 vr_names_next_timeout(const struct vr_engine *eng);
void vr_names_timer(struct vr_engine *eng, u64 now);
void vr_names_ep_closed(struct vr_engine *eng, u16 ep);

/* requester.c */
struct vr_op *vr_op_for_psn(const struct vr_engine *eng, struct vr_conn *c, u32 psn);
struct vr_op *vr_op_alloc(struct vr_engine *eng, struct vr_conn *c, bool response);
void vr_op_enqueue(struct vr_engine *eng, struct vr_conn *c, struct vr_op *op);
void vr_op_maybe_free(struct vr_conn *c, struct vr_op *op);
int vr_tx_build(struct vr_engine *eng, struct vr_conn *c, u64 now);
void vr_tx_commit(struct vr_engine *eng, u64 now);
u32 vr_op_frames(const struct vr_conn *c, u32 kind, u32 len);

/* responder.c */
void vr_resp_rx_data(struct vr_engine *eng, struct vr_conn *c, const struct vr_parsed *p,
		     u64 now);
void vr_resp_queue_nak(struct vr_conn *c, u8 reason, u32 psn);
void vr_resp_flush_rx(struct vr_engine *eng, struct vr_conn *c, int status);
void vr_resp_orphan_recvs(struct vr_engine *eng, struct vr_ep *e, int status);
void vr_offence_record(struct vr_engine *eng, const u8 mac[6], u64 now);
bool vr_offence_barred(struct vr_engine *eng, const u8 mac[6], u64 now);
void vr_resp_cancel_key(struct vr_engine *eng, u64 key);
int vr_resp_post_recv(struct vr_engine *eng, u16 ep, u64 lkey, u64 loff, u32 len,
		      u64 tag, u64 mask, u64 cookie);

/* completer.c */
void vr_comp_rx_ack(struct vr_engine *eng, struct vr_conn *c, u32 ack_psn, u64 now);
void vr_comp_rx_nak(struct vr_engine *eng, struct vr_conn *c, const struct vr_parsed *p,
		    u64 now);
void vr_comp_rx_resp(struct vr_engine *eng, struct vr_conn *c, const struct vr_parsed *p);
/* 0: not yet (dropped), 1: placed, 2: placed and its READ completes in order */
int vr_comp_rx_resp_ahead(struct vr_engine *eng, struct vr_conn *c, const struct vr_parsed *p);
void vr_comp_resp_end(struct vr_engine *eng, struct vr_conn *c, u32 msg_id);
/* selective repeat (docs/proto.md, Reliability) */
void vr_comp_rx_sack(struct vr_engine *eng, struct vr_conn *c, const struct vr_hdr *h, u64 now);
void vr_comp_find_lost(struct vr_engine *eng, struct vr_conn *c);
/* the RTO expired: what is to be sent again, and the congestion window */
void vr_comp_rto(struct vr_engine *eng, struct vr_conn *c);
/* news from the peer, or a frame sent: when to probe for a lost tail */
void vr_comp_arm_probe(struct vr_engine *eng, struct vr_conn *c, u64 now, bool news);
void vr_comp_probe_timer(struct vr_engine *eng, struct vr_conn *c, u64 now);
void vr_comp_flush(struct vr_engine *eng, struct vr_conn *c, int status);
void vr_comp_close(struct vr_engine *eng, struct vr_conn *c);
void vr_comp_cancel_key(struct vr_engine *eng, u64 key);

#endif
