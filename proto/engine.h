/* SPDX-License-Identifier: GPL-2.0 OR MIT */
/*
 * engine.h - public API of the vmrdma sans-I/O protocol engine.
 *
 * The engine never sends, sleeps, reads a clock or allocates after
 * vr_engine_create.  The host:
 *   - feeds received Ethernet frames:      vr_engine_input(eng, f, len, now)
 *   - pulls frames to transmit:            vr_engine_tx_poll(eng, now, budget)
 *   - drives timers:                       vr_engine_next_timeout / vr_engine_on_timer
 *   - posts operations on connections and gets exactly one completion per op
 *     through host_ops.complete.
 * After vr_engine_input, vr_post_*, vr_engine_on_timer or a freed host
 * queue, the host calls vr_engine_tx_poll: nothing is sent otherwise.
 * All calls on one engine must be serialised by the host.  Times are u64 ns.
 * Errors are negative errno values.
 */
#ifndef VR_ENGINE_H
#define VR_ENGINE_H
#include "os.h"
#include "wire.h"
#include "region.h"

#define VR_MAX_FRAGS 2

/* Endpoint weights (DRR shares) are 1..VR_WEIGHT_MAX. */
#define VR_WEIGHT_MAX 1024

/* A payload fragment inside registered memory (handle as registered). */
struct vr_frag {
	void *mem;
	u64 off;
	u32 len;
};

/*
 * A frame to transmit: hdr (Ethernet + vmrdma header, hdr_len bytes)
 * followed by the fragments.  Everything is valid only during the xmit
 * callback: the host copies or pins (and must finish with the memory before
 * it deregisters the region).
 */
struct vr_frame {
	const u8 *hdr;
	u32 hdr_len;
	u32 nfrags;
	struct vr_frag frag[VR_MAX_FRAGS];
	u32 len;      /* total frame length */
	u16 ep;       /* local endpoint id that owns the frame (0 for engine control) */
};

enum vr_wc_op {
	VR_WC_WRITE = 1,
	VR_WC_READ,
	VR_WC_SEND,
	VR_WC_RECV,
	VR_WC_FADD,
	VR_WC_CSWAP,
	VR_WC_CONNECT,    /* active open finished (status 0 or error) */
	VR_WC_ACCEPT,     /* passive open on a listening endpoint */
	VR_WC_DISCONNECT, /* connection left CONNECTED: peer closed or failed */
	VR_WC_RESOLVE,    /* vr_resolve: tag = the peer's endpoint, value = its MAC */
};

struct vr_completion {
	u64 cookie;
	int status;   /* 0 or negative errno */
	u32 op;       /* enum vr_wc_op */
	u32 conn;     /* connection id (RECV: the one the message came on) */
	u16 ep;       /* local endpoint id */
	u8 nak_reason; /* enum vr_nak_reason of the remote NAK that failed the op
			* (e.g. RNR vs RESOURCES behind -ENOBUFS); 0 otherwise */
	u64 bytes;    /* bytes transferred; RECV: message length */
	u64 tag;      /* RECV: tag of the matched message */
	/* FADD/CSWAP: original remote value.  RECV (its source, recorded when
	 * the message arrived), and ACCEPT and CONNECT that succeeded: the
	 * peer, as vr_peer_word; 0 when unknown (a failed receive). */
	u64 value;
};

/* A peer's address in one word, as completions carry it: the endpoint id
 * in bits 63..48, the MAC in 47..0 (its first byte in bits 47..40). */
static inline u64 vr_peer_word(const u8 mac[6], u16 ep)
{
	u64 w = (u64)ep << 48;
	int i;

	for (i = 0; i < 6; i++)
		w |= (u64)mac[i] << (40 - 8 * i);
	return w;
}

static inline void vr_peer_of_word(u64 w, u8 mac[6], u16 *ep)
{
	int i;

	for (i = 0; i < 6; i++)
		mac[i] = (u8)(w >> (40 - 8 * i));
	*ep = (u16)(w >> 48);
}

struct vr_host_ops {
	/* 0 = frame taken; -EAGAIN = queue full, engine retries it later;
	 * other negative = dropped (the protocol recovers as from loss). */
	int (*xmit)(void *ctx, const struct vr_frame *f);
	void (*complete)(void *ctx, const struct vr_completion *c);
	u32 (*random)(void *ctx);
	/* Optional accept policy for listening endpoints: 0 accepts. */
	int (*accept)(void *ctx, u16 ep, const u8 peer_mac[6], u16 peer_ep);
};

/*
 * The tuning profile: what a 0 in the tuning fields of vr_config means.
 * Every host (the eth: device, vmrdmad, backend_kmod) and both benches take
 * it by leaving those fields 0, so a change here reaches all of them.  Tuned
 * on veth at MTU 9000 and under Xen (docs/proto.md): a window that covers
 * 2 MiB of 9000-byte frames, ACKs coalesced 16 to one, an RTO well above a
 * busy host's scheduling delay, and patience with a receiver that is not
 * ready (RNR) because it is posting receives.  Unit tests of timing set
 * their own values.
 */
#define VR_DEFAULT_WINDOW 256
#define VR_DEFAULT_ACK_EVERY 16
#define VR_DEFAULT_ACK_DELAY_NS 200000ULL
#define VR_DEFAULT_RTO_NS 20000000ULL
#define VR_DEFAULT_RTO_MAX_FACTOR 16 /* rto_max_ns = factor x rto_ns */
#define VR_DEFAULT_RETRY_LIMIT 7
/* A peer is gone after this long without acknowledged progress: long enough
 * for a peer whose loop is busy for seconds (a large compare, a page-in). */
#define VR_DEFAULT_PEER_TIMEOUT_NS 8000000000ULL
/* A request that draws a fatal NAK (forged key, bounds, rights) closes its
 * connection on both sides; after VR_OFFENCE_LIMIT such offences within
 * VR_OFFENCE_WINDOW_NS, a MAC's CONNECT_REQs are refused (NAK REJECTED)
 * until the window has passed.  Counted: offences, offenders_refused. */
#define VR_OFFENCE_LIMIT 8
#define VR_OFFENCE_WINDOW_NS 10000000000ULL
/* An idle connection is probed this often, so both ends learn of a dead or
 * vanished peer within peer_timeout_ns even when nothing is in flight. */
#define VR_DEFAULT_KEEPALIVE_NS 1000000000ULL
#define VR_KEEPALIVE_OFF 0xFFFFFFFFFFFFFFFFULL
/* One MAC may hold this share of the connection table (percent). */
#define VR_DEFAULT_CONNS_PER_PEER_PCT 75
/* A CONNECT_REQ that would replace a live connection (same peer and
 * connection id, another ISN) is not obeyed: the live connection is probed,
 * and only if it stays silent for rto_max_ns is it taken for dead (the
 * peer restarted) and the next request accepted. */
/* Connectionless answers (RETRY cookies, refusals) are sent at most
 * VR_CTL_REPLY_BURST per VR_CTL_REPLY_PERIOD_NS, and at most
 * VR_CTL_REPLIES_PER_MAC of them wait for one MAC: a flood of requests gets
 * few answers, established connections are sent first. */
#define VR_CTL_REPLY_BURST 64
#define VR_CTL_REPLY_PERIOD_NS 1000000ULL
#define VR_CTL_REPLIES_PER_MAC 2
/* A cookie's secret changes every 2^VR_COOKIE_EPOCH_SHIFT ns (about 4.3 s);
 * cookies of the current and the previous secret are accepted. */
#define VR_COOKIE_EPOCH_SHIFT 32
#define VR_DEFAULT_RNR_DELAY_NS 1000000ULL
#define VR_DEFAULT_RNR_RETRY_LIMIT 50
/* ... and at least this long since the first refusal (receivers post late). */
#define VR_DEFAULT_RNR_TIMEOUT_NS 1000000000ULL

/*
 * What a frame's CRC covers (docs/wire-format.md).  END_TO_END: every byte,
 * the payload included, from the sender's memory to the receiver's.  LINK:
 * allowed to agree, per connection, that payloads rest on the link's frame
 * check (VR_F_LINK_FCS); both ends must allow it, else the connection checks
 * every byte.
 */
enum vr_integrity {
	VR_INTEGRITY_END_TO_END = 0,
	VR_INTEGRITY_LINK = 1,
};

/*
 * Loss recovery (docs/proto.md, Reliability).  SELECTIVE: offer selective
 * repeat in every handshake (VR_CAP_SACK); a connection uses it when both
 * ends offered it, else go-back-N.  GO_BACK_N: never offer it (to compare).
 */
enum vr_recovery {
	VR_RECOVERY_SELECTIVE = 0,
	VR_RECOVERY_GO_BACK_N = 1,
};

/*
 * Authenticated frames (docs/wire-format.md, Authentication; auth.h).  A
 * device with VR_AUTH_PSK authenticates every connection with a key derived
 * from auth_key; an endpoint may have a key of its own (vr_ep_set_auth_key),
 * which its connections use instead.  A side with a key accepts only
 * authenticated connections, a side without one only plain ones; a
 * mismatch is refused (NAK REJECTED, counted in auth_refused).
 */
enum vr_auth_mode {
	VR_AUTH_OFF = 0,
	VR_AUTH_PSK = 1,
};

struct vr_config {
	u8 mac[6];
	u16 ethertype;        /* 0 -> VR_ETHERTYPE_DEFAULT */
	u32 mtu;              /* Ethernet payload bytes, 1500..65535 */
	u32 max_endpoints;    /* endpoint ids are 0..max_endpoints-1 */
	u32 max_conns;        /* <= 65535 */
	u32 max_regions;
	u32 max_ops;          /* outstanding requests per connection (and responses) */
	u32 max_recvs;        /* posted receives per endpoint */
	u32 unexp_depth;      /* unexpected messages buffered per endpoint */
	u32 unexp_buf_size;   /* max size of one unexpected message */
	/* Tuning: 0 takes the profile above. */
	u32 window;           /* max unacked data frames per connection */
	u32 ack_every;        /* coalesce: ACK at least every N frames */
	u64 ack_delay_ns;     /* delayed-ACK timer */
	/* An ACK a frame asks for (ACKREQ: a message's end) goes at once, or,
	 * when this is not 0, within this long: a frame of ours sent meanwhile
	 * (a reply) carries it and no ACK frame is sent.  For request/reply
	 * traffic (the libfabric provider); a silent receiver's peer waits this
	 * much longer for its completion.  Not taken from a profile: 0 is 0. */
	u64 ackreq_delay_ns;
	u64 rto_ns;           /* initial retransmission timeout */
	u64 rto_max_ns;
	/* A connection fails with -ETIMEDOUT when unacknowledged data has made
	 * no progress for peer_timeout_ns and at least retry_limit consecutive
	 * RTOs have expired (both: the time is the budget, the count a floor). */
	u32 retry_limit;
	u64 peer_timeout_ns;
	/* Probe a connection that has heard nothing for keepalive_ns (an ACK
	 * asking for an ACK); one silent for peer_timeout_ns fails with
	 * -ETIMEDOUT.  0: VR_DEFAULT_KEEPALIVE_NS; VR_KEEPALIVE_OFF: never. */
	u64 keepalive_ns;
	u64 rnr_delay_ns;
	/* A message the receiver keeps refusing (RNR) fails once it has been
	 * refused rnr_retry_limit times and for rnr_timeout_ns. */
	u32 rnr_retry_limit;
	u64 rnr_timeout_ns;
	u32 integrity;        /* enum vr_integrity; 0 = END_TO_END */
	u32 recovery;         /* enum vr_recovery; 0 = SELECTIVE */
	/* Connections a listener accepts: at most max_conns_per_peer from one
	 * MAC (0: VR_DEFAULT_CONNS_PER_PEER_PCT of max_conns), and never the
	 * last conn_reserve slots (0: max_conns / 8), which stay for the host's
	 * own vr_connect.  Refusals are NAK RESOURCES, counted in
	 * conn_limit_refused. */
	u32 max_conns_per_peer;
	u32 conn_reserve;
	u32 auth;             /* enum vr_auth_mode; 0 = OFF */
	u8 auth_key[VR_AUTH_KEY_LEN]; /* VR_AUTH_PSK: the pre-shared key */
	const struct vr_host_ops *host;
	const struct vr_mem_ops *mem; /* NULL -> vr_ptr_mem_ops */
	void *ctx;            /* passed to every callback */
};

struct vr_counters {
	u64 tx_frames, tx_bytes, rx_frames, rx_bytes;
	u64 tx_data_frames, rx_data_frames;
	u64 retransmits, timeouts, rnr_waits, dups, out_of_order;
	u64 congestion_events; /* loss events that shrank a congestion window */
	u64 acks_tx, acks_rx;
	u64 drop_parse[VR_WERR_MAX];  /* one per vr_wire_parse error class */
	u64 drop_not_for_us, drop_no_ep, drop_no_conn, drop_bad_state, drop_bad_ack;
	u64 naks_tx[VR_NAK_MAX], naks_rx[VR_NAK_MAX];
	u64 pool_exhausted, xmit_eagain, xmit_err, completions;
	u64 rx_bundles; /* bundles received; their frames count in rx_frames */
	u64 offences;   /* requests that drew a fatal NAK (the connection closed) */
	u64 offenders_refused; /* CONNECT_REQs refused: too many offences from the MAC */
	/* the handshake (conn.c) */
	u64 cookies_sent;       /* CONNECT_RETRY answers */
	u64 cookies_refused;    /* CONNECT_REQs echoing a wrong or expired cookie */
	u64 challenges;         /* CONNECT_REQs that would have replaced a live connection */
	u64 challenge_resets;   /* live connections silent after a challenge: failed */
	u64 conn_limit_refused; /* CONNECT_REQs over the per-MAC or total limit */
	u64 ctl_replies_dropped; /* connectionless answers not sent (rate, per-MAC, ring) */
	u64 drop_out_of_window; /* frames of a connection outside its PSN/ACK windows */
	/* authenticated frames (auth.c) */
	u64 auth_failed;        /* frames with a wrong or missing tag, or one on a plain connection */
	u64 auth_replays;       /* authenticated frames whose nonce was seen or is too old */
	u64 auth_refused;       /* CONNECT_REQs refused: one side authenticates, the other not */
	/* selective repeat (docs/proto.md, Reliability) */
	u64 held_ahead;         /* data frames placed ahead of a gap, not resent */
	u64 tail_probes;        /* frames sent again because no ACK came (tail-loss probes) */
};

enum vr_conn_state {
	VR_CONN_FREE = 0,
	VR_CONN_CONNECTING,
	VR_CONN_CONNECTED,
	VR_CONN_ERROR,   /* failed or peer closed; host must vr_disconnect() */
	VR_CONN_CLOSING, /* DISCONNECT queued; slot freed once sent */
};

struct vr_engine;

/* Bytes of memory vr_engine_create needs for cfg (0 if cfg is invalid). */
size_t vr_engine_mem_size(const struct vr_config *cfg);

/*
 * Create an engine inside mem (>= vr_engine_mem_size(cfg) bytes, 8-byte
 * aligned).  Returns 0, -EINVAL (bad config), -ENOMEM (mem too small).
 */
int vr_engine_create(const struct vr_config *cfg, void *mem, size_t mem_len,
		     struct vr_engine **out);

/* Fail every outstanding op with -ECANCELED; mem may then be freed. */
void vr_engine_destroy(struct vr_engine *eng);

/* Endpoints.  -EINVAL (id out of range / weight 0), -EEXIST, -EBUSY, -ENOENT. */
int vr_ep_open(struct vr_engine *eng, u16 ep, u32 weight, bool listen);
int vr_ep_set_weight(struct vr_engine *eng, u16 ep, u32 weight);
/*
 * Close an endpoint.  Its connections are closed as by vr_disconnect
 * (connected ones send DISCONNECT), its posted receives complete with
 * -ECANCELED, its unexpected messages are dropped and its regions are
 * deregistered (operations using them fail first).  The id is free again
 * once the last DISCONNECT has gone out; until then vr_ep_open says
 * -EBUSY.  Returns 0 or -ENOENT.
 */
int vr_ep_close(struct vr_engine *eng, u16 ep);
int vr_ep_counters(const struct vr_engine *eng, u16 ep, struct vr_counters *out);

/* Regions.  reg: -EINVAL, -ENOENT (no such endpoint), -ENOSPC.
 * dereg: -ENOENT; ops using the region complete with -ECANCELED first. */
int vr_reg_mr(struct vr_engine *eng, u16 ep, void *mem, u64 len, u32 access, u64 *key);
int vr_dereg_mr(struct vr_engine *eng, u64 key);

/*
 * Protection domains (region.h): a region bound to a domain is usable only
 * by the connections put in that domain, so a key that reached another peer
 * of the endpoint is useless to it.  By default (domain 0) a region serves
 * every connection of its endpoint.  A domain belongs to an endpoint (at
 * most VR_PDS_PER_EP each); its regions and connections must be that
 * endpoint's.  Receives are the endpoint's and not restricted.
 *   alloc: *pd = a new domain (1..); -ENOENT, -ENOSPC.
 *   free:  -ENOENT (not ep's), -EBUSY (regions are bound to it); its
 *          connections go back to no domain.
 *   conn_set_pd / mr_set_pd: pd 0 unbinds; -ENOENT (no such connection,
 *          region or domain), -EINVAL (another endpoint's).
 */
#define VR_PDS_PER_EP 16
int vr_pd_alloc(struct vr_engine *eng, u16 ep, u32 *pd);
int vr_pd_free(struct vr_engine *eng, u16 ep, u32 pd);
int vr_conn_set_pd(struct vr_engine *eng, u32 conn, u32 pd);
int vr_mr_set_pd(struct vr_engine *eng, u16 ep, u64 key, u32 pd);

/* Connections.  connect: -EINVAL, -ENOENT, -ENOSPC; completion VR_WC_CONNECT. */
int vr_connect(struct vr_engine *eng, u16 ep, const u8 peer_mac[6], u16 peer_ep,
	       u64 cookie, u32 *conn);
/* As vr_connect, with private data (len <= VR_PRIVATE_DATA_MAX, copied now)
 * for the accepting side; -EINVAL if longer. */
int vr_connect_data(struct vr_engine *eng, u16 ep, const u8 peer_mac[6], u16 peer_ep,
		    const void *data, u32 len, u64 cookie, u32 *conn);
/* A listening endpoint's accept data, carried by every CONNECT_ACK it sends
 * from now on (len 0: none).  0, -ENOENT, -EINVAL (too long). */
int vr_ep_set_accept_data(struct vr_engine *eng, u16 ep, const void *data, u32 len);
/* The endpoint listens from now on (it may already).  Opening it without
 * listening, setting its accept data and then listening means no
 * connection is accepted without the data.  0 or -ENOENT. */
int vr_ep_listen(struct vr_engine *eng, u16 ep);
/* The peer's private data on a connection that has completed its
 * CONNECT or ACCEPT: copies min(length, cap) bytes to out and returns the
 * length (0..VR_PRIVATE_DATA_MAX), or -ENOENT. */
int vr_conn_peer_data(const struct vr_engine *eng, u32 conn, void *out, u32 cap);
/* Who is at the other end of connection conn: 0 or -ENOENT. */
int vr_conn_peer(const struct vr_engine *eng, u32 conn, u8 mac[6], u16 *ep);

/* An endpoint's own key (VR_AUTH_KEY_LEN bytes, e.g. from a key exchange
 * the application made): connections it opens or accepts from now on are
 * authenticated with it instead of the device's; NULL goes back to the
 * device's.  0, -ENOENT. */
int vr_ep_set_auth_key(struct vr_engine *eng, u16 ep, const u8 *key);

/*
 * Names (wire.h).  set_name: the endpoint answers RESOLVEs for name (1..
 * VR_NAME_MAX bytes; len 0 withdraws it): 0, -ENOENT, -EINVAL,
 * -EADDRINUSE (another endpoint of this engine has it).  resolve: asks the
 * segment (and this engine) which endpoint has name; one VR_WC_RESOLVE
 * follows, possibly from inside the call: status 0 with tag = the
 * endpoint, value = its MAC (the first byte in bits 47..40), -EHOSTUNREACH
 * when nobody answered the handshake's tries, -ECANCELED when ep closes.
 * -ENOENT, -EINVAL, -EAGAIN (VR_RESOLVES already asking).
 */
int vr_ep_set_name(struct vr_engine *eng, u16 ep, const void *name, u32 len);
int vr_resolve(struct vr_engine *eng, u16 ep, const void *name, u32 len, u64 cookie);

/* Copies between memory of endpoint ep's region lkey and the host's, with
 * an operation's key check (write needs LOCAL_WRITE): how a backend reads
 * a frontend's private data or name and writes what comes back.
 * 0, -EACCES, -EPERM, -ERANGE or the mem op's error. */
int vr_mem_read(struct vr_engine *eng, u16 ep, u64 lkey, u64 off, void *dst, u32 len);
int vr_mem_write(struct vr_engine *eng, u16 ep, u64 lkey, u64 off, const void *src, u32 len);
/* Close: outstanding requests complete -ECANCELED; queued responses, then
 * DISCONNECT (carrying our cumulative ACK) are sent; the slot is freed. */
int vr_disconnect(struct vr_engine *eng, u32 conn);
int vr_conn_state(const struct vr_engine *eng, u32 conn); /* enum or -ENOENT */

/*
 * Posting.  Synchronous errors: -ENOENT (unknown conn), -ENOTCONN (not
 * CONNECTED), -EACCES/-EPERM/-ERANGE (local key check), -EINVAL (bad
 * argument, e.g. unaligned atomic offset), -EAGAIN (op pool full; counted
 * in pool_exhausted).  On success exactly one completion follows.
 */
int vr_post_write(struct vr_engine *eng, u32 conn, u64 lkey, u64 loff,
		  u64 rkey, u64 roff, u32 len, u64 cookie);
int vr_post_read(struct vr_engine *eng, u32 conn, u64 lkey, u64 loff,
		 u64 rkey, u64 roff, u32 len, u64 cookie);
int vr_post_send(struct vr_engine *eng, u32 conn, u64 lkey, u64 loff, u32 len,
		 u64 tag, u64 cookie);
int vr_post_fadd(struct vr_engine *eng, u32 conn, u64 rkey, u64 roff, u64 add,
		 u64 cookie);
int vr_post_cswap(struct vr_engine *eng, u32 conn, u64 rkey, u64 roff, u64 compare,
		  u64 swap, u64 cookie);
/* Receives are per endpoint and match sends from any of its connections. */
int vr_post_recv(struct vr_engine *eng, u16 ep, u64 lkey, u64 loff, u32 len,
		 u64 tag, u64 mask, u64 cookie);

/* Receive one full Ethernet frame.  Returns 0 if accepted or a negative
 * errno describing why it was dropped (it is counted either way).  A
 * well-formed bundle returns 0 even if frames inside it were dropped: each
 * of those is counted as it would be alone. */
int vr_engine_input(struct vr_engine *eng, const void *frame, u32 len, u64 now);
/* Whether the last frame taken was a data frame, admitted in order, that
 * is a message's first or a middle one: the rest of that message is on its
 * way, so a host may let its next wait for frames gather several
 * (docs/runtime.md, "Coalesced wake-ups"). False after anything else (a
 * message's last frame, after which an answer may be awaited, an ACK, a
 * frame refused, or one that closed a gap): a wrong false costs a host
 * only a wake-up. */
bool vr_engine_rx_mid_message(const struct vr_engine *eng);

/* Emit up to budget frames in DRR order; returns the number emitted. */
int vr_engine_tx_poll(struct vr_engine *eng, u64 now, u32 budget);

/* Absolute time of the next deadline, VR_U64_MAX if none. */
u64 vr_engine_next_timeout(const struct vr_engine *eng);
void vr_engine_on_timer(struct vr_engine *eng, u64 now);

const struct vr_counters *vr_engine_counters(const struct vr_engine *eng);

#endif
