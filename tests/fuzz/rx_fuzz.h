/* SPDX-License-Identifier: GPL-2.0 OR MIT */
/*
 * rx_fuzz.h - input format of the receive-path fuzz target (rx_fuzz.c),
 * shared with the seed generator (gen_corpus.c) and the corpus replayer.
 *
 * A fuzz input is a sequence of records, each a 2-byte big-endian prefix P
 * followed by a body (a body cut short by the end of the input is used as
 * far as it goes; a lone trailing byte is ignored):
 *
 *   P & 0x8000 == 0   FRAME: body is one Ethernet frame of (P & 0x3FFF)
 *                     bytes, fed to vr_engine_input at the current time.
 *       P & 0x4000    FIXUP: before feeding, the harness rewrites the frame
 *                     into something the engine will look at (see below),
 *                     so the fuzzer does not have to find CRCs and ids.
 *   P & 0x8000        ACTION: body of (P & 0x7FFF) bytes; body[0] selects a
 *                     host action (enum rxf_action), the rest are arguments
 *                     (missing argument bytes read as 0).
 *
 * FIXUP rewrites (frames of at least VR_ETH_HLEN + VR_HDR_LEN bytes):
 *   - Ethernet: dst = engine MAC, src = RXF_PEER_MAC, EtherType default;
 *   - version = VR_WIRE_VERSION, both reserved fields = 0,
 *     payload_len = frame length - 86;
 *   - conn_id < RXF_MAX_CONNS: the live id of that connection slot
 *     (as learnt from the CONNECT_REQ/ACK frames the engine sent);
 *   - then, if the connection is known: ack_psn += that connection's ISN,
 *     and for NAK frames psn += ISN (so these fields are relative);
 *   - CONNECT_REQ with operand B (the cookie) 1: the cookie of the last
 *     CONNECT_RETRY the engine sent, so a request can complete a handshake;
 *   - rkey < 16: the current key of model region (rkey % RXF_NREG);
 *   - READ_RESP_* / ATOMIC_RESP with msg_id < 0x10000: the msg_id of the
 *     latest request the engine sent whose op slot was (msg_id & 0xFFFF);
 *   - finally the CRC is recomputed.
 * A FIXUP record holding a bundle (opcode VR_OP_BUNDLE) gets its outer
 * Ethernet header, version and reserved field made valid; each entry that
 * fits gets the rewrites above as a lone frame; the count is set to the
 * entries found and any bytes after the last whole entry are cut off.
 * Everything else (opcode, flags, nak reason, PSN of data frames, lengths,
 * offsets, operands, payload) is left as fuzzed.
 *
 * Fixed setup done before every input (all deterministic):
 *   ep0 listening, ep1 active, ep2 listening, ep3 closed;
 *   regions R0..R4 (see rx_fuzz.c); connection slot 0 = passive open on
 *   ep0 from RXF_PEER_MAC ep RXF_PEER_EP_A (peer ISN RXF_PEER_ISN_A; the
 *   request, the engine's CONNECT_RETRY, the request echoing its cookie),
 *   slot 1 = active open from ep1 to peer ep RXF_PEER_EP_B (peer ISN
 *   RXF_PEER_ISN_B); receives posted on ep0/ep1; on slot 0 a WRITE, a READ
 *   (op slot 1) and an FADD (op slot 2) are in flight; on slot 1 a SEND.
 */
#ifndef RX_FUZZ_H
#define RX_FUZZ_H
#include <stddef.h>
#include <stdint.h>

#define RXF_REC_ACTION 0x8000u
#define RXF_REC_FIXUP 0x4000u
#define RXF_REC_LEN_MASK 0x3FFFu
#define RXF_ACT_LEN_MASK 0x7FFFu

#define RXF_MAX_CONNS 4
#define RXF_NREG 5

#define RXF_PEER_EP_A 7
#define RXF_PEER_EP_B 9
#define RXF_PEER_ID_A 0x000A0001u
#define RXF_PEER_ID_B 0x000B0002u
#define RXF_PEER_ISN_A 0xFFFFFFFEu /* wraps after two frames */
#define RXF_PEER_ISN_B 100u

static const uint8_t RXF_OUR_MAC[6] = { 0x02, 0, 0, 0, 0, 0x01 };
static const uint8_t RXF_PEER_MAC[6] = { 0x02, 0, 0, 0, 0, 0x02 };

enum rxf_action {
	RXF_A_ADVANCE = 0,   /* u16 dt_us: now += dt; timers; tx_poll */
	RXF_A_POST_WRITE,    /* conn, lreg, u16 loff, u32 rkey, u16 roff, u16 len */
	RXF_A_POST_READ,     /* same */
	RXF_A_POST_SEND,     /* conn, lreg, u16 loff, u16 len, u8 tag */
	RXF_A_POST_FADD,     /* conn, u16 roff, u8 add */
	RXF_A_POST_CSWAP,    /* conn, u16 roff, u8 cmp, u8 swap */
	RXF_A_POST_RECV,     /* ep, lreg, u16 loff, u16 len, u8 tag, u8 mask */
	RXF_A_DEREG,         /* region */
	RXF_A_REREG,         /* region */
	RXF_A_DISCONNECT,    /* conn */
	RXF_A_CONNECT,       /* ep, u16 peer_ep */
	RXF_A_XMIT_MODE,     /* 0 ok, 1 -EAGAIN, 2 every other frame dropped */
	RXF_A_TX_POLL,       /* budget */
	RXF_A_EP_CLOSE,      /* ep, u8 listen: close an open endpoint, or reopen a closed one */
	RXF_A_RESOLVE,       /* ep, u8 name length: ask the segment for a name */
	RXF_A_CONNECT_DATA,  /* ep, u16 peer_ep, u8 private data length */
	RXF_A_MAX,
};

/* What the last LLVMFuzzerTestOneInput call did (for the replayer). */
struct rxf_stats {
	unsigned records, frames, accepted, actions, xmits, completions;
	unsigned ok_completions; /* of posted ops, status 0 */
	unsigned changed;        /* region bytes written */
};
extern struct rxf_stats rxf_last_stats;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif
