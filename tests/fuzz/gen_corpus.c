// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * gen_corpus.c - writes the seed corpus of rx_fuzz (tests/fuzz/corpus/).
 * Build and run with tests/fuzz/gen_corpus.sh.  Frames are written as
 * FIXUP records with symbolic connection slots, region indexes, relative
 * ACK PSNs and op-slot msg_ids (see rx_fuzz.h), so the seeds stay valid
 * whatever ids and keys the engine mints; a few are raw frames with a real
 * CRC for the parser.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wire.h"
#include "rx_fuzz.h"

#define HDRS (VR_ETH_HLEN + VR_HDR_LEN)

static u8 out[16384];
static size_t olen;

static void rec(u16 pfx, const u8 *body, u32 len)
{
	if (olen + 2 + len > sizeof(out))
		abort();
	out[olen++] = (u8)(pfx >> 8);
	out[olen++] = (u8)pfx;
	memcpy(out + olen, body, len);
	olen += len;
}

static struct vr_hdr hdr(u8 op, u32 conn_slot, u16 src_ep, u16 dst_ep, u32 psn)
{
	struct vr_hdr h;

	memset(&h, 0, sizeof(h));
	h.version = VR_WIRE_VERSION;
	h.opcode = op;
	h.conn_id = conn_slot;
	h.src_ep = src_ep;
	h.dst_ep = dst_ep;
	h.psn = psn;
	return h;
}

/* A frame record; fixup != 0 marks it for the harness to finish. */
static void frame(struct vr_hdr h, const u8 *payload, int fixup)
{
	u8 f[HDRS + 2048];

	vr_wire_put_eth(f, RXF_OUR_MAC, RXF_PEER_MAC, VR_ETHERTYPE_DEFAULT);
	vr_wire_encode_full(f, &h, payload);
	rec((u16)((HDRS + h.payload_len) | (fixup ? RXF_REC_FIXUP : 0)), f,
	    HDRS + h.payload_len);
}

/* A FIXUP bundle record of n frames (headers h[i], payloads from payload). */
static void bundle(const struct vr_hdr *h, u32 n, const u8 *payload)
{
	u8 b[VR_ETH_HLEN + VR_BUNDLE_HLEN + 4 * (2 + HDRS + 256)];
	u32 at, i;

	if (n > 4)
		abort();
	vr_wire_put_eth(b, RXF_OUR_MAC, RXF_PEER_MAC, VR_ETHERTYPE_DEFAULT);
	at = vr_wire_bundle_init(b, b);
	for (i = 0; i < n; i++) {
		u8 *f = b + at + 2;

		if (h[i].payload_len > 256)
			abort();
		vr_put_be16(b + at, (u16)(HDRS + h[i].payload_len));
		vr_wire_put_eth(f, RXF_OUR_MAC, RXF_PEER_MAC, VR_ETHERTYPE_DEFAULT);
		vr_wire_encode_full(f, &h[i], payload);
		at += 2 + HDRS + h[i].payload_len;
	}
	vr_wire_bundle_set_count(b, (u16)n);
	rec((u16)(at | RXF_REC_FIXUP), b, at);
}

static void action(const u8 *args, u32 n)
{
	rec((u16)(RXF_REC_ACTION | n), args, n);
}

#define ACT(...) do { const u8 a_[] = { __VA_ARGS__ }; action(a_, sizeof(a_)); } while (0)

/* A, B: the two connections of the harness setup (slot, peer ep, our ep). */
static struct vr_hdr on_a(u8 op, u32 psn) { return hdr(op, 0, RXF_PEER_EP_A, 0, psn); }
static struct vr_hdr on_b(u8 op, u32 psn) { return hdr(op, 1, RXF_PEER_EP_B, 1, psn); }

static const char *dir;

static void save(const char *name)
{
	char path[512];
	FILE *fp;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fp = fopen(path, "wb");
	if (!fp || fwrite(out, 1, olen, fp) != olen || fclose(fp)) {
		perror(path);
		exit(1);
	}
	printf("%-28s %5zu bytes\n", name, olen);
	olen = 0;
}

int main(int argc, char **argv)
{
	u8 pay[2048];
	struct vr_hdr h;
	u32 i;

	if (argc != 2) {
		fprintf(stderr, "usage: %s OUTDIR\n", argv[0]);
		return 2;
	}
	dir = argv[1];
	for (i = 0; i < sizeof(pay); i++)
		pay[i] = (u8)(i * 7 + 3);

	/* raw CONNECT_REQ to the second listener (real CRC), answered by a
	 * cookie; the request again echoing it (FIXUP), then data on it */
	h = hdr(VR_OP_CONNECT_REQ, 0, 21, 2, 5000);
	h.msg_id = 0x00C00003;
	frame(h, NULL, 0);
	h.operand_b = 1; /* the harness puts in the engine's cookie */
	frame(h, NULL, 1);
	h = hdr(VR_OP_ACK, 2, 21, 2, 5000);
	frame(h, NULL, 1);
	save("connect_req_ep2");

	h = on_a(VR_OP_WRITE_ONLY, RXF_PEER_ISN_A);
	h.flags = VR_F_ACKREQ;
	h.rkey = 0;
	h.remote_off = 16;
	h.total_len = h.payload_len = 32;
	frame(h, pay, 1);
	save("write_only");

	/* a bundle: two writes and an ACK on connection A */
	{
		struct vr_hdr b3[3];

		b3[0] = on_a(VR_OP_WRITE_ONLY, RXF_PEER_ISN_A);
		b3[0].flags = VR_F_ACKREQ;
		b3[0].remote_off = 8;
		b3[0].total_len = b3[0].payload_len = 24;
		b3[1] = on_a(VR_OP_WRITE_ONLY, RXF_PEER_ISN_A + 1);
		b3[1].flags = VR_F_ACKREQ;
		b3[1].remote_off = 64;
		b3[1].total_len = b3[1].payload_len = 40;
		b3[2] = on_a(VR_OP_ACK, 0);
		bundle(b3, 3, pay);
	}
	save("bundle");

	h = on_a(VR_OP_WRITE_FIRST, RXF_PEER_ISN_A);
	h.rkey = 4;
	h.total_len = 40;
	h.payload_len = 16;
	frame(h, pay, 1);
	h = on_a(VR_OP_WRITE_MIDDLE, RXF_PEER_ISN_A + 1);
	h.rkey = 4;
	h.total_len = 40;
	h.remote_off = 16;
	h.payload_len = 16;
	frame(h, pay + 16, 1);
	h = on_a(VR_OP_WRITE_LAST, RXF_PEER_ISN_A + 2); /* PSN wrapped to 0 */
	h.flags = VR_F_ACKREQ;
	h.rkey = 4;
	h.total_len = 40;
	h.remote_off = 32;
	h.payload_len = 8;
	frame(h, pay + 32, 1);
	save("write_multi_wrap");

	h = on_a(VR_OP_SEND_ONLY, RXF_PEER_ISN_A);
	h.flags = VR_F_ACKREQ;
	h.operand_a = 0x55;
	h.total_len = h.payload_len = 40;
	frame(h, pay, 1);
	save("send_only");

	/* three sends for two receives: the third is unexpected, then a
	 * receive is posted for it */
	for (i = 0; i < 3; i++) {
		h = on_a(VR_OP_SEND_ONLY, RXF_PEER_ISN_A + i);
		h.operand_a = i + 1;
		h.total_len = h.payload_len = (u16)(20 + i);
		frame(h, pay + i, 1);
	}
	ACT(RXF_A_POST_RECV, 0, 3, 0x01, 0x00, 0x00, 0x80, 0, 0);
	save("send_unexpected");

	h = on_b(VR_OP_SEND_FIRST, RXF_PEER_ISN_B);
	h.total_len = 1000;
	h.payload_len = 400;
	frame(h, pay, 1);
	h = on_b(VR_OP_SEND_MIDDLE, RXF_PEER_ISN_B + 1);
	h.total_len = 1000;
	h.remote_off = 400;
	h.payload_len = 400;
	frame(h, pay + 400, 1);
	h = on_b(VR_OP_SEND_LAST, RXF_PEER_ISN_B + 2);
	h.flags = VR_F_ACKREQ;
	h.total_len = 1000;
	h.remote_off = 800;
	h.payload_len = 200;
	frame(h, pay + 800, 1);
	save("send_multi_truncated");

	h = on_a(VR_OP_READ_REQ, RXF_PEER_ISN_A);
	h.rkey = 1;
	h.remote_off = 8;
	h.total_len = 64;
	frame(h, NULL, 1);
	h = on_a(VR_OP_ACK, RXF_PEER_ISN_A + 1);
	h.ack_psn = 4; /* WRITE, READ, FADD, READ_RESP */
	frame(h, NULL, 1);
	save("read_req");

	h = on_a(VR_OP_ATOMIC_FADD, RXF_PEER_ISN_A);
	h.rkey = 4;
	h.remote_off = 8;
	h.total_len = 8;
	h.operand_a = 5;
	frame(h, NULL, 1);
	h = on_a(VR_OP_ATOMIC_CSWAP, RXF_PEER_ISN_A + 1);
	h.rkey = 4;
	h.remote_off = 16;
	h.total_len = 8;
	h.operand_a = 0x0706050403020100ull;
	h.operand_b = 42;
	frame(h, NULL, 1);
	save("atomics");

	h = on_a(VR_OP_ACK, RXF_PEER_ISN_A);
	h.ack_psn = 1;
	frame(h, NULL, 1);
	h = on_a(VR_OP_NAK, 1); /* SEQ at our PSN isn+1: go back */
	h.nak_reason = VR_NAK_SEQ;
	h.ack_psn = 1;
	frame(h, NULL, 1);
	ACT(RXF_A_ADVANCE, 0, 10);
	h = on_a(VR_OP_NAK, 2);
	h.nak_reason = VR_NAK_RNR;
	h.ack_psn = 2;
	frame(h, NULL, 1);
	ACT(RXF_A_ADVANCE, 0, 100);
	save("ack_nak");

	h = on_a(VR_OP_READ_RESP_ONLY, RXF_PEER_ISN_A);
	h.msg_id = 1;
	h.total_len = h.payload_len = 200;
	frame(h, pay, 1);
	h = on_a(VR_OP_ATOMIC_RESP, RXF_PEER_ISN_A + 1);
	h.msg_id = 2;
	h.total_len = 8;
	h.operand_a = 42;
	h.flags = VR_F_ACKREQ;
	frame(h, NULL, 1);
	h = on_a(VR_OP_ACK, RXF_PEER_ISN_A + 2);
	h.ack_psn = 3;
	frame(h, NULL, 1);
	save("read_atomic_resp");

	h = on_a(VR_OP_READ_RESP_FIRST, RXF_PEER_ISN_A);
	h.msg_id = 1;
	h.total_len = 200;
	h.payload_len = 120;
	frame(h, pay, 1);
	h = on_a(VR_OP_READ_RESP_LAST, RXF_PEER_ISN_A + 1);
	h.msg_id = 1;
	h.flags = VR_F_ABORT;
	h.nak_reason = VR_NAK_BOUNDS;
	h.total_len = 200;
	h.remote_off = 120;
	frame(h, NULL, 1);
	save("read_resp_abort");

	h = on_a(VR_OP_DISCONNECT, RXF_PEER_ISN_A);
	frame(h, NULL, 1);
	ACT(RXF_A_DISCONNECT, 0);
	ACT(RXF_A_CONNECT, 1, 0, 33);
	ACT(RXF_A_TX_POLL, 4);
	save("disconnect_reconnect");

	/* close an endpoint with a receive posted and traffic for it in
	 * flight, let its DISCONNECTs out, reopen it, and address it again */
	ACT(RXF_A_POST_RECV, 0, 3, 0, 0, 0, 64, 5, 0);
	ACT(RXF_A_EP_CLOSE, 0);
	h = on_a(VR_OP_WRITE_ONLY, RXF_PEER_ISN_A);
	h.rkey = 0;
	h.total_len = h.payload_len = 8;
	frame(h, pay, 1);
	ACT(RXF_A_TX_POLL, 8);
	ACT(RXF_A_EP_CLOSE, 0, 1);
	ACT(RXF_A_REREG, 0);
	ACT(RXF_A_CONNECT, 0, 0, 33);
	ACT(RXF_A_TX_POLL, 8);
	save("ep_close_reopen");

	/* no ACKs ever: RTO back-off until the connection fails */
	for (i = 0; i < 6; i++)
		ACT(RXF_A_ADVANCE, 0x03, 0x20);
	save("rto_timeout");

	ACT(RXF_A_DEREG, 0);
	h = on_a(VR_OP_WRITE_ONLY, RXF_PEER_ISN_A); /* stale key: NAK BAD_KEY */
	h.rkey = 0;
	h.total_len = h.payload_len = 8;
	frame(h, pay, 1);
	ACT(RXF_A_REREG, 0);
	h = on_b(VR_OP_WRITE_ONLY, RXF_PEER_ISN_B); /* R2 via ep1 */
	h.rkey = 2;
	h.remote_off = 1000;
	h.total_len = h.payload_len = 24;
	frame(h, pay, 1);
	save("dereg_stale_key");

	h = on_a(VR_OP_WRITE_ONLY, RXF_PEER_ISN_A); /* R1 has no REMOTE_WRITE */
	h.rkey = 1;
	h.total_len = h.payload_len = 8;
	frame(h, pay, 1);
	save("write_no_access");

	ACT(RXF_A_POST_WRITE, 0, 0, 0x00, 0x10, 0, 0, 0x12, 0x34, 0, 0, 0x05, 0xDC);
	ACT(RXF_A_POST_READ, 0, 3, 0x00, 0x00, 0, 0, 0x56, 0x78, 0, 0, 0x00, 0x40);
	ACT(RXF_A_POST_SEND, 1, 2, 0x00, 0x00, 0x00, 0x80, 0x09);
	ACT(RXF_A_POST_CSWAP, 0, 0x00, 0x10, 1, 2);
	ACT(RXF_A_XMIT_MODE, 2);
	ACT(RXF_A_ADVANCE, 0, 60);
	ACT(RXF_A_XMIT_MODE, 0);
	h = on_a(VR_OP_ACK, RXF_PEER_ISN_A);
	h.ack_psn = 5;
	frame(h, NULL, 1);
	save("host_posts");

	/* parser-only material: raw frames that fail each check */
	h = on_a(VR_OP_ACK, RXF_PEER_ISN_A);
	frame(h, NULL, 0); /* raw: conn 0 is no connection */
	{
		u8 f[HDRS + 8];

		vr_wire_put_eth(f, RXF_OUR_MAC, RXF_PEER_MAC, VR_ETHERTYPE_DEFAULT);
		h = on_a(VR_OP_WRITE_ONLY, 0);
		h.total_len = h.payload_len = 8;
		vr_wire_encode_full(f, &h, pay);
		f[HDRS + 3] ^= 1; /* bad CRC */
		rec(sizeof(f), f, sizeof(f));
		rec(40, f, 40); /* truncated */
		f[12] = 0x08; /* IPv4 */
		rec(sizeof(f), f, sizeof(f));
	}
	save("parser_errors");

	/* names: RESOLVE broadcasts for ep0's name and a stranger's, an
	 * ANNOUNCE nobody asked for, then questions of our own */
	{
		static const u8 bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
		u8 f[HDRS + VR_NAME_MAX];

		h = hdr(VR_OP_RESOLVE, 0, RXF_PEER_EP_A, 0, 0);
		h.msg_id = 0x1234567;
		h.payload_len = 8;
		vr_wire_put_eth(f, bcast, RXF_PEER_MAC, VR_ETHERTYPE_DEFAULT);
		vr_wire_encode_full(f, &h, "fuzz-ep0");
		rec((u16)(HDRS + 8), f, HDRS + 8);
		h.payload_len = 7;
		vr_wire_encode_full(f, &h, "nowhere");
		rec((u16)(HDRS + 7), f, HDRS + 7);
		h = hdr(VR_OP_ANNOUNCE, 0, RXF_PEER_EP_A, 1, 0);
		h.msg_id = 0x89abcdef;
		h.payload_len = 8;
		frame(h, (const u8 *)"fuzz-ep9", 0);
		ACT(RXF_A_RESOLVE, 1, 8);
		ACT(RXF_A_ADVANCE, 0x4e, 0x20);
		ACT(RXF_A_RESOLVE, 0, 1);
		save("names");
	}
	/* private data: a CONNECT_REQ with 40 bytes to ep2, a connect of ours
	 * with 192 */
	h = hdr(VR_OP_CONNECT_REQ, 0, 22, 2, 7000);
	h.msg_id = 0x00D00004;
	h.payload_len = 40;
	frame(h, pay, 0);
	h.operand_b = 1;
	frame(h, pay, 1);
	ACT(RXF_A_CONNECT_DATA, 1, 0, 33, 192);
	ACT(RXF_A_ADVANCE, 0x4e, 0x20);
	save("private_data");

	/* the initiator's side: a connect of ours (slot 2) gets a cookie,
	 * echoes it and is accepted; then a forged refusal comes too late */
	ACT(RXF_A_CONNECT, 1, 0, 33);
	ACT(RXF_A_TX_POLL, 4);
	h = hdr(VR_OP_CONNECT_RETRY, 2, 33, 1, 0);
	h.operand_b = 0x0123456789abcdefull;
	frame(h, NULL, 1);
	ACT(RXF_A_TX_POLL, 4);
	h = hdr(VR_OP_CONNECT_ACK, 2, 33, 1, 9000);
	h.msg_id = 0x00E00005;
	frame(h, NULL, 1);
	h = hdr(VR_OP_NAK, 2, 33, 1, 0);
	h.nak_reason = VR_NAK_REJECTED;
	frame(h, NULL, 1);
	save("handshake_initiator");

	/* connection A's peer ids with a new ISN: a cookie, the request
	 * echoing it is challenged (A is probed), A stays silent, the
	 * connection fails, and the request is accepted */
	h = hdr(VR_OP_CONNECT_REQ, 0, RXF_PEER_EP_A, 0, 4242);
	h.msg_id = RXF_PEER_ID_A;
	frame(h, NULL, 1);
	h.operand_b = 1;
	frame(h, NULL, 1);
	ACT(RXF_A_TX_POLL, 4);
	ACT(RXF_A_ADVANCE, 0x01, 0xF4);
	frame(h, NULL, 1);
	ACT(RXF_A_TX_POLL, 4);
	save("handshake_challenge");
	return 0;
}
