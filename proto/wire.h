/* SPDX-License-Identifier: GPL-2.0 OR MIT */
/*
 * wire.h - vmrdma frame format (see docs/wire-format.md), encoder, parser.
 *
 * Frame = 14-byte Ethernet header + 72-byte vmrdma header + payload.
 * All multi-byte fields are big-endian.  The CRC32C field covers the
 * Ethernet header, the vmrdma header (CRC field zeroed) and the payload
 * (the payload not, in a frame flagged VR_F_LINK_FCS).
 */
#ifndef VR_WIRE_H
#define VR_WIRE_H
#include "os.h"

#define VR_ETH_HLEN 14
#define VR_HDR_LEN 72
#define VR_ETHERTYPE_DEFAULT 0x88B5
/* 2: 64-bit rkeys (72-byte header), CONNECT_REQ/ACK carry private data,
 * RESOLVE/ANNOUNCE find a peer by name, keepalive probes, DISCONNECT
 * carries the sender's highest PSN.  3: the listener answers a CONNECT_REQ
 * with a stateless cookie (CONNECT_RETRY) that the initiator echoes;
 * connectionless answers and CONNECT_ACK echo the initiator's ISN; an ACK
 * carries its sender's highest PSN; every frame of a connection must fall
 * inside its windows. */
#define VR_WIRE_VERSION 3
#define VR_MTU_MIN 1500   /* MTU = Ethernet payload (excludes 14-byte header) */
#define VR_MTU_MAX 65535

/* Header field offsets (relative to the vmrdma header). */
enum {
	VR_OFF_VERSION = 0,
	VR_OFF_OPCODE = 1,
	VR_OFF_FLAGS = 2,
	VR_OFF_NAK = 3,
	VR_OFF_SRC_EP = 4,
	VR_OFF_DST_EP = 6,
	VR_OFF_CONN = 8,
	VR_OFF_PSN = 12,
	VR_OFF_ACK_PSN = 16,
	VR_OFF_MSG_ID = 20,
	VR_OFF_RKEY = 24,       /* 64 bits: slot index and 48 random bits */
	VR_OFF_TOTAL_LEN = 32,
	VR_OFF_PAYLOAD_LEN = 36,
	VR_OFF_RESERVED = 38,   /* 16 bits, zero */
	VR_OFF_REMOTE_OFF = 40,
	VR_OFF_OPERAND_A = 48,  /* send tag / atomic add or compare / result */
	VR_OFF_OPERAND_B = 56,  /* atomic swap value */
	VR_OFF_RESERVED2 = 64,  /* 32 bits, zero */
	VR_OFF_CRC = 68,
};

enum vr_opcode {
	VR_OP_WRITE_FIRST = 0x01,
	VR_OP_WRITE_MIDDLE = 0x02,
	VR_OP_WRITE_LAST = 0x03,
	VR_OP_WRITE_ONLY = 0x04,
	VR_OP_READ_REQ = 0x10,
	VR_OP_READ_RESP_FIRST = 0x11,
	VR_OP_READ_RESP_MIDDLE = 0x12,
	VR_OP_READ_RESP_LAST = 0x13,
	VR_OP_READ_RESP_ONLY = 0x14,
	VR_OP_SEND_FIRST = 0x20,
	VR_OP_SEND_MIDDLE = 0x21,
	VR_OP_SEND_LAST = 0x22,
	VR_OP_SEND_ONLY = 0x23,
	VR_OP_ATOMIC_FADD = 0x30,
	VR_OP_ATOMIC_CSWAP = 0x31,
	VR_OP_ATOMIC_RESP = 0x32,
	VR_OP_ACK = 0x40,
	VR_OP_NAK = 0x41,
	VR_OP_CONNECT_REQ = 0x50,
	VR_OP_CONNECT_ACK = 0x51,
	VR_OP_DISCONNECT = 0x52,
	VR_OP_RESOLVE = 0x53,  /* broadcast: who has this name? (see below) */
	VR_OP_ANNOUNCE = 0x54, /* the answer, from the named endpoint */
	VR_OP_CONNECT_RETRY = 0x55, /* a listener's cookie: send the request again with it */
	VR_OP_BUNDLE = 0x60, /* several whole frames in one (see below) */
};

/* A message's first or middle frame: more of the message follows it. */
static inline bool vr_op_mid_message(u8 opcode)
{
	return opcode == VR_OP_WRITE_FIRST || opcode == VR_OP_WRITE_MIDDLE ||
	       opcode == VR_OP_READ_RESP_FIRST || opcode == VR_OP_READ_RESP_MIDDLE ||
	       opcode == VR_OP_SEND_FIRST || opcode == VR_OP_SEND_MIDDLE;
}

/*
 * A bundle carries several small frames to one peer in one Ethernet frame,
 * so small messages pay the per-frame cost of the path once per bundle:
 *   Ethernet header | version, VR_OP_BUNDLE, count (be16), reserved (be32, 0)
 *   | count x ( length (be16) | a whole frame of that length )
 * Each inner frame is exactly what would have been sent alone: its own
 * Ethernet header (the outer one's addresses and EtherType), header and
 * CRC.  A bundle has no CRC of its own; each inner frame is checked on its
 * own, and a bundle never holds a bundle.  The engine unpacks bundles in
 * vr_engine_input, so every host receives them; which hosts send them is
 * up to the host (docs/wire-format.md).
 */
#define VR_BUNDLE_HLEN 8
#define VR_BUNDLE_OFF_COUNT 2
#define VR_BUNDLE_OFF_RESERVED 4
#define VR_BUNDLE_ENTRY_HLEN 2

/* The largest frame worth bundling in bundles of bundle_bytes: two fit. */
static inline u32 vr_wire_bundle_limit(u32 bundle_bytes)
{
	return (bundle_bytes - VR_ETH_HLEN - VR_BUNDLE_HLEN) / 2 - VR_BUNDLE_ENTRY_HLEN;
}

/* Writes the outer Ethernet header (copied from a frame bound for the same
 * peer) and the bundle header with a count of zero; returns the offset of
 * the first entry. */
u32 vr_wire_bundle_init(u8 *bundle, const u8 *first_frame);
void vr_wire_bundle_set_count(u8 *bundle, u16 count);

/*
 * Iterates over a bundle: *pos starts at 0.  The first call checks the
 * whole bundle and yields nothing from a bad one, returning a negative errno
 * as vr_wire_parse would: -ENODATA (truncated), -EPFNOSUPPORT,
 * -EPROTONOSUPPORT, -EOPNOTSUPP (not a bundle), -EMSGSIZE (an entry's length
 * does not fit or is too short for a frame), -EPROTO (reserved bits, a count
 * that is zero or disagrees with the entries, or an inner frame addressed
 * differently from the bundle).  Then each call returns 1 with *inner and
 * *inner_len set to the next frame, and 0 at the end.  Inner frames are not
 * parsed here.  Never reads outside frame[0..len).
 */
int vr_wire_bundle_next(const void *frame, u32 len, u16 ethertype, u32 *pos,
			const u8 **inner, u32 *inner_len);

/* True when frame (at least VR_ETH_HLEN + 2 bytes) has a bundle's opcode. */
static inline bool vr_wire_is_bundle(const void *frame, u32 len)
{
	const u8 *f = (const u8 *)frame;

	return len >= VR_ETH_HLEN + 2 && f[VR_ETH_HLEN + VR_OFF_OPCODE] == VR_OP_BUNDLE;
}

/*
 * The handshake (docs/wire-format.md, Handshake): CONNECT_REQ (operand B 0)
 * -> CONNECT_RETRY with a cookie (operand B), a keyed hash of the request's
 * addresses, ids and ISN under a secret that changes with the listener's
 * clock -> CONNECT_REQ again, echoing the cookie -> CONNECT_ACK.  Only the
 * echoed request creates state, so a sender that does not receive at the
 * MAC it claims opens nothing.  RETRY and NAK answers to a request are
 * connectionless: conn_id = the initiator's id, ack_psn = its ISN.
 */

/*
 * Private data: CONNECT_REQ may carry up to VR_PRIVATE_DATA_MAX bytes of the
 * connecting application's, handed to the accepting one with its connection;
 * CONNECT_ACK carries the listening endpoint's accept data back (e.g. the
 * descriptors of the regions a server offers).  Covered by the CRC always.
 */
#define VR_PRIVATE_DATA_MAX 192

/*
 * Names: an endpoint may announce a name of 1..VR_NAME_MAX bytes (opaque,
 * compared byte for byte).  RESOLVE goes to the broadcast address with the
 * name as payload, src_ep the asking endpoint and msg_id a random nonce;
 * every other field 0.  The host that has an endpoint of that name answers
 * with ANNOUNCE to the asker's MAC: src_ep the named endpoint, dst_ep the
 * asker's, msg_id the nonce, the name as payload.  Names are not
 * authenticated: like ARP, anyone on the segment can answer
 * (docs/wire-format.md).
 */
#define VR_NAME_MAX 64

/* Header flags. */
#define VR_F_ACKREQ 0x01 /* sender wants an immediate ACK (message end) */
#define VR_F_ABORT  0x02 /* data frame of a cancelled message: no payload, place nothing */
/*
 * The CRC covers the Ethernet and vmrdma headers only; the payload's
 * integrity rests on the link's own frame check (Ethernet's FCS).  Only on
 * frames with a payload, and only on a connection whose handshake agreed to
 * it (VR_CAP_LINK_FCS); a receiver drops it on any other connection.
 * docs/wire-format.md says what it gives up.
 */
#define VR_F_LINK_FCS 0x04
/*
 * Authenticated (auth.h): a 24-byte block (nonce, tag) follows the vmrdma
 * header and precedes the payload; the tag covers both headers and the
 * payload, the CRC the headers and the block only.  Only on a connection
 * whose handshake agreed to it (VR_CAP_AUTH); never with LINK_FCS, and not
 * on RESOLVE, ANNOUNCE or CONNECT_RETRY.
 */
#define VR_F_AUTH 0x08
#define VR_AUTH_BLOCK_LEN 24
#define VR_AUTH_KEY_LEN 32    /* a pre-shared, endpoint or connection key */
#define VR_F_ALL    (VR_F_ACKREQ | VR_F_ABORT | VR_F_LINK_FCS | VR_F_AUTH)

/*
 * Capabilities, in operand A of CONNECT_REQ (what the requester allows) and
 * CONNECT_ACK (what the connection will use: the responder's choice, a
 * subset of the request's).  Unknown bits are ignored, so a peer that
 * predates a capability simply never agrees to it.
 */
#define VR_CAP_LINK_FCS 0x1ULL
#define VR_CAP_AUTH 0x2ULL /* informative: an authenticated request is flagged VR_F_AUTH */
#define VR_CAP_SACK 0x4ULL /* selective repeat: the receiver holds frames ahead of a gap */

enum vr_nak_reason {
	VR_NAK_NONE = 0,
	VR_NAK_BAD_KEY = 1,
	VR_NAK_BOUNDS = 2,
	VR_NAK_ACCESS = 3,
	VR_NAK_NO_EP = 4,
	VR_NAK_RNR = 5,
	VR_NAK_RESOURCES = 6,
	VR_NAK_SEQ = 7,
	VR_NAK_INVALID = 8, /* malformed request, e.g. unaligned atomic */
	VR_NAK_REJECTED = 9, /* connection refused by accept policy */
	VR_NAK_TOO_LONG = 10, /* SEND longer than the receive it matched */
	VR_NAK_MAX = 11,
};

/* Parse error classes; vr_wire_parse returns the matching negative errno. */
enum vr_wire_err {
	VR_WERR_TRUNCATED,     /* -ENODATA: shorter than the two headers */
	VR_WERR_ETHERTYPE,     /* -EPFNOSUPPORT: not our EtherType */
	VR_WERR_VERSION,       /* -EPROTONOSUPPORT */
	VR_WERR_OPCODE,        /* -EOPNOTSUPP */
	VR_WERR_LENGTH,        /* -EMSGSIZE: payload length inconsistent */
	VR_WERR_CHECKSUM,      /* -EBADMSG */
	VR_WERR_FIELD,         /* -EPROTO: reserved bits / bad flag / bad NAK reason */
	VR_WERR_MAX,
};

struct vr_hdr {
	u8 version;
	u8 opcode;
	u8 flags;
	u8 nak_reason;
	u16 src_ep;
	u16 dst_ep;
	u32 conn_id;    /* receiver's connection id (0 in CONNECT_REQ) */
	u32 psn;
	u32 ack_psn;    /* cumulative: next PSN the sender of this frame expects */
	u32 msg_id;
	u64 rkey;
	u32 total_len;  /* whole message length */
	u64 remote_off; /* WRITE: target offset of this frame; others: offset in message */
	u64 operand_a;
	u64 operand_b;
	u16 payload_len;
};

/*
 * The SACK map of an ACK or NAK on a connection that agreed to VR_CAP_SACK
 * (docs/wire-format.md, Selective acknowledgement): bit i (word i / 64, bit
 * i % 64 from the least significant) stands for PSN ack_psn + 1 + i and is
 * set when the receiver holds that frame.  It travels in the four 64-bit
 * fields those frames do not use: rkey, remote offset, operands A and B.
 */
#define VR_SACK_BITS 256
#define VR_SACK_WORDS (VR_SACK_BITS / 64)

static inline void vr_sack_put(struct vr_hdr *h, const u64 map[VR_SACK_WORDS])
{
	h->rkey = map[0];
	h->remote_off = map[1];
	h->operand_a = map[2];
	h->operand_b = map[3];
}

static inline void vr_sack_get(const struct vr_hdr *h, u64 map[VR_SACK_WORDS])
{
	map[0] = h->rkey;
	map[1] = h->remote_off;
	map[2] = h->operand_a;
	map[3] = h->operand_b;
}

struct vr_parsed {
	u8 dst_mac[6];
	u8 src_mac[6];
	struct vr_hdr h;
	const u8 *frame;   /* the caller's frame, from its Ethernet header */
	const u8 *payload; /* points into the caller's frame */
	const u8 *auth;    /* VR_F_AUTH: the 24-byte block in the frame; else NULL */
};

/* Bytes before the payload: both headers, and the auth block if flagged. */
static inline u32 vr_wire_hdrs_len(u8 flags)
{
	return VR_ETH_HLEN + VR_HDR_LEN + ((flags & VR_F_AUTH) ? VR_AUTH_BLOCK_LEN : 0);
}

/* Write Ethernet header into eth[0..13]. */
void vr_wire_put_eth(u8 *eth, const u8 dst[6], const u8 src[6], u16 ethertype);

/*
 * Encode h into vh[0..VR_HDR_LEN) (the vmrdma header, right after the
 * Ethernet header) with the CRC field zero.  The CRC is filled in by
 * vr_wire_set_crc once the payload CRC is known (the payload may live in host
 * memory reachable only through mem ops).
 */
void vr_wire_encode(u8 *vh, const struct vr_hdr *h);

/* CRC32C state after Ethernet + vmrdma header of frame (CRC field zero). */
u32 vr_wire_hdr_crc_state(const u8 *frame);
void vr_wire_set_crc(u8 *frame, u32 crc);

/* frame already holds the Ethernet header: encode header and contiguous
 * payload after it and set the CRC (tests, control frames). */
void vr_wire_encode_full(u8 *frame, const struct vr_hdr *h, const void *payload);

/* CRC32C state after both headers and the auth block (frame flagged
 * VR_F_AUTH, CRC field zero). */
u32 vr_wire_auth_crc_state(const u8 *frame);

/*
 * Parse a full Ethernet frame.  Never reads outside frame[0..len).
 * Returns 0, or -ENODATA, -EPFNOSUPPORT, -EPROTONOSUPPORT, -EOPNOTSUPP,
 * -EMSGSIZE, -EBADMSG, -EPROTO (see enum vr_wire_err).
 */
int vr_wire_parse(const void *frame, u32 len, u16 ethertype, struct vr_parsed *out);

/* Map a vr_wire_parse error to its class (VR_WERR_MAX if unknown). */
int vr_wire_err_class(int err);

bool vr_opcode_valid(u8 op);
bool vr_op_is_data(u8 op); /* carries a PSN in the reliable stream */
const char *vr_opcode_name(u8 op);

#endif
