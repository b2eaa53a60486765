// SPDX-License-Identifier: GPL-2.0 OR MIT
/* wire.c - encoder and bounds-checked parser for vmrdma frames. */
#include "wire.h"
#include "crc32c.h"

void vr_wire_put_eth(u8 *eth, const u8 dst[6], const u8 src[6], u16 ethertype)
{
	memcpy(eth, dst, 6);
	memcpy(eth + 6, src, 6);
	vr_put_be16(eth + 12, ethertype);
}

void vr_wire_encode(u8 *o, const struct vr_hdr *h)
{
	o[VR_OFF_VERSION] = h->version;
	o[VR_OFF_OPCODE] = h->opcode;
	o[VR_OFF_FLAGS] = h->flags;
	o[VR_OFF_NAK] = h->nak_reason;
	vr_put_be16(o + VR_OFF_SRC_EP, h->src_ep);
	vr_put_be16(o + VR_OFF_DST_EP, h->dst_ep);
	vr_put_be32(o + VR_OFF_CONN, h->conn_id);
	vr_put_be32(o + VR_OFF_PSN, h->psn);
	vr_put_be32(o + VR_OFF_ACK_PSN, h->ack_psn);
	vr_put_be32(o + VR_OFF_MSG_ID, h->msg_id);
	vr_put_be64(o + VR_OFF_RKEY, h->rkey);
	vr_put_be32(o + VR_OFF_TOTAL_LEN, h->total_len);
	vr_put_be64(o + VR_OFF_REMOTE_OFF, h->remote_off);
	vr_put_be64(o + VR_OFF_OPERAND_A, h->operand_a);
	vr_put_be64(o + VR_OFF_OPERAND_B, h->operand_b);
	vr_put_be16(o + VR_OFF_PAYLOAD_LEN, h->payload_len);
	vr_put_be16(o + VR_OFF_RESERVED, 0);
	vr_put_be32(o + VR_OFF_RESERVED2, 0);
	vr_put_be32(o + VR_OFF_CRC, 0);
}

u32 vr_wire_hdr_crc_state(const u8 *frame)
{
	return vr_crc32c_update(VR_CRC32C_INIT, frame, VR_ETH_HLEN + VR_HDR_LEN);
}

u32 vr_wire_auth_crc_state(const u8 *frame)
{
	return vr_crc32c_update(VR_CRC32C_INIT, frame, VR_ETH_HLEN + VR_HDR_LEN + VR_AUTH_BLOCK_LEN);
}

void vr_wire_set_crc(u8 *frame, u32 crc)
{
	vr_put_be32(frame + VR_ETH_HLEN + VR_OFF_CRC, crc);
}

void vr_wire_encode_full(u8 *frame, const struct vr_hdr *h, const void *payload)
{
	u32 st;

	vr_wire_encode(frame + VR_ETH_HLEN, h);
	st = vr_wire_hdr_crc_state(frame);
	if (h->payload_len) {
		if (!(h->flags & VR_F_LINK_FCS))
			st = vr_crc32c_update(st, payload, h->payload_len);
		memcpy(frame + VR_ETH_HLEN + VR_HDR_LEN, payload, h->payload_len);
	}
	vr_wire_set_crc(frame, vr_crc32c_final(st));
}

bool vr_opcode_valid(u8 op)
{
	switch (op) {
	case VR_OP_WRITE_FIRST: case VR_OP_WRITE_MIDDLE:
	case VR_OP_WRITE_LAST: case VR_OP_WRITE_ONLY:
	case VR_OP_READ_REQ:
	case VR_OP_READ_RESP_FIRST: case VR_OP_READ_RESP_MIDDLE:
	case VR_OP_READ_RESP_LAST: case VR_OP_READ_RESP_ONLY:
	case VR_OP_SEND_FIRST: case VR_OP_SEND_MIDDLE:
	case VR_OP_SEND_LAST: case VR_OP_SEND_ONLY:
	case VR_OP_ATOMIC_FADD: case VR_OP_ATOMIC_CSWAP: case VR_OP_ATOMIC_RESP:
	case VR_OP_ACK: case VR_OP_NAK:
	case VR_OP_CONNECT_REQ: case VR_OP_CONNECT_ACK: case VR_OP_DISCONNECT:
	case VR_OP_RESOLVE: case VR_OP_ANNOUNCE: case VR_OP_CONNECT_RETRY:
		return true;
	default:
		return false;
	}
}

bool vr_op_is_data(u8 op)
{
	return vr_opcode_valid(op) && op < VR_OP_ACK;
}

const char *vr_opcode_name(u8 op)
{
	switch (op) {
	case VR_OP_WRITE_FIRST: return "WRITE_FIRST";
	case VR_OP_WRITE_MIDDLE: return "WRITE_MIDDLE";
	case VR_OP_WRITE_LAST: return "WRITE_LAST";
	case VR_OP_WRITE_ONLY: return "WRITE_ONLY";
	case VR_OP_READ_REQ: return "READ_REQ";
	case VR_OP_READ_RESP_FIRST: return "READ_RESP_FIRST";
	case VR_OP_READ_RESP_MIDDLE: return "READ_RESP_MIDDLE";
	case VR_OP_READ_RESP_LAST: return "READ_RESP_LAST";
	case VR_OP_READ_RESP_ONLY: return "READ_RESP_ONLY";
	case VR_OP_SEND_FIRST: return "SEND_FIRST";
	case VR_OP_SEND_MIDDLE: return "SEND_MIDDLE";
	case VR_OP_SEND_LAST: return "SEND_LAST";
	case VR_OP_SEND_ONLY: return "SEND_ONLY";
	case VR_OP_ATOMIC_FADD: return "ATOMIC_FADD";
	case VR_OP_ATOMIC_CSWAP: return "ATOMIC_CSWAP";
	case VR_OP_ATOMIC_RESP: return "ATOMIC_RESP";
	case VR_OP_ACK: return "ACK";
	case VR_OP_NAK: return "NAK";
	case VR_OP_CONNECT_REQ: return "CONNECT_REQ";
	case VR_OP_CONNECT_ACK: return "CONNECT_ACK";
	case VR_OP_DISCONNECT: return "DISCONNECT";
	case VR_OP_RESOLVE: return "RESOLVE";
	case VR_OP_ANNOUNCE: return "ANNOUNCE";
	case VR_OP_CONNECT_RETRY: return "CONNECT_RETRY";
	case VR_OP_BUNDLE: return "BUNDLE";
	default: return "?";
	}
}

int vr_wire_err_class(int err)
{
	switch (err) {
	case -ENODATA: return VR_WERR_TRUNCATED;
	case -EPFNOSUPPORT: return VR_WERR_ETHERTYPE;
	case -EPROTONOSUPPORT: return VR_WERR_VERSION;
	case -EOPNOTSUPP: return VR_WERR_OPCODE;
	case -EMSGSIZE: return VR_WERR_LENGTH;
	case -EBADMSG: return VR_WERR_CHECKSUM;
	case -EPROTO: return VR_WERR_FIELD;
	default: return VR_WERR_MAX;
	}
}

static void decode(const u8 *p, struct vr_hdr *h)
{
	h->version = p[VR_OFF_VERSION];
	h->opcode = p[VR_OFF_OPCODE];
	h->flags = p[VR_OFF_FLAGS];
	h->nak_reason = p[VR_OFF_NAK];
	h->src_ep = vr_get_be16(p + VR_OFF_SRC_EP);
	h->dst_ep = vr_get_be16(p + VR_OFF_DST_EP);
	h->conn_id = vr_get_be32(p + VR_OFF_CONN);
	h->psn = vr_get_be32(p + VR_OFF_PSN);
	h->ack_psn = vr_get_be32(p + VR_OFF_ACK_PSN);
	h->msg_id = vr_get_be32(p + VR_OFF_MSG_ID);
	h->rkey = vr_get_be64(p + VR_OFF_RKEY);
	h->total_len = vr_get_be32(p + VR_OFF_TOTAL_LEN);
	h->remote_off = vr_get_be64(p + VR_OFF_REMOTE_OFF);
	h->operand_a = vr_get_be64(p + VR_OFF_OPERAND_A);
	h->operand_b = vr_get_be64(p + VR_OFF_OPERAND_B);
	h->payload_len = vr_get_be16(p + VR_OFF_PAYLOAD_LEN);
}

/* Opcode-specific payload/length rules, applied after the CRC passed. */
static int check_semantics(const struct vr_hdr *h)
{
	bool abort = h->flags & VR_F_ABORT;
	u32 pl = h->payload_len;

	if (h->nak_reason >= VR_NAK_MAX)
		return -EPROTO;
	/* NAK reason is meaningful only in NAK and aborted READ_RESP frames. */
	if (h->nak_reason && h->opcode != VR_OP_NAK &&
	    !(abort && h->opcode >= VR_OP_READ_RESP_FIRST &&
	      h->opcode <= VR_OP_READ_RESP_ONLY))
		return -EPROTO;
	if (h->opcode == VR_OP_NAK && h->nak_reason == VR_NAK_NONE)
		return -EPROTO;
	if (abort && !vr_op_is_data(h->opcode))
		return -EPROTO;
	/* Header-only CRC is a property of payloads: a frame without one has
	 * no reason to leave anything unchecked. */
	if ((h->flags & VR_F_LINK_FCS) && !pl)
		return -EPROTO;
	/* ... of data payloads: private data and names are always checked. */
	if ((h->flags & VR_F_LINK_FCS) && !vr_op_is_data(h->opcode))
		return -EPROTO;
	/* Authenticated frames belong to a connection (or open one); the tag
	 * already covers the payload, so LINK_FCS would mean nothing. */
	if ((h->flags & VR_F_AUTH) &&
	    ((h->flags & VR_F_LINK_FCS) || h->opcode == VR_OP_RESOLVE ||
	     h->opcode == VR_OP_ANNOUNCE || h->opcode == VR_OP_CONNECT_RETRY))
		return -EPROTO;

	switch (h->opcode) {
	case VR_OP_WRITE_FIRST: case VR_OP_WRITE_MIDDLE:
	case VR_OP_WRITE_LAST: case VR_OP_WRITE_ONLY:
		if (pl > h->total_len || (abort && pl))
			return -EMSGSIZE;
		if (h->opcode == VR_OP_WRITE_ONLY && !abort && pl != h->total_len)
			return -EMSGSIZE;
		/* overflow-safe end of target range */
		if (h->remote_off > VR_U64_MAX - pl)
			return -EMSGSIZE;
		return 0;
	case VR_OP_SEND_FIRST: case VR_OP_SEND_MIDDLE:
	case VR_OP_SEND_LAST: case VR_OP_SEND_ONLY:
	case VR_OP_READ_RESP_FIRST: case VR_OP_READ_RESP_MIDDLE:
	case VR_OP_READ_RESP_LAST: case VR_OP_READ_RESP_ONLY:
		if (abort && pl)
			return -EMSGSIZE;
		if (h->remote_off > h->total_len || pl > h->total_len - h->remote_off)
			return -EMSGSIZE;
		if ((h->opcode == VR_OP_SEND_FIRST || h->opcode == VR_OP_SEND_ONLY ||
		     h->opcode == VR_OP_READ_RESP_FIRST ||
		     h->opcode == VR_OP_READ_RESP_ONLY) && h->remote_off != 0)
			return -EMSGSIZE;
		if ((h->opcode == VR_OP_SEND_ONLY || h->opcode == VR_OP_READ_RESP_ONLY) &&
		    !abort && pl != h->total_len)
			return -EMSGSIZE;
		if ((h->opcode == VR_OP_SEND_LAST || h->opcode == VR_OP_READ_RESP_LAST) &&
		    !abort && h->remote_off + pl != h->total_len)
			return -EMSGSIZE;
		return 0;
	case VR_OP_ATOMIC_FADD: case VR_OP_ATOMIC_CSWAP:
		if (pl || h->total_len != 8)
			return -EMSGSIZE;
		return 0;
	case VR_OP_CONNECT_REQ: case VR_OP_CONNECT_ACK:
		return pl > VR_PRIVATE_DATA_MAX ? -EMSGSIZE : 0;
	case VR_OP_RESOLVE: case VR_OP_ANNOUNCE:
		if (!pl || pl > VR_NAME_MAX)
			return -EMSGSIZE;
		if (h->opcode == VR_OP_RESOLVE && (h->dst_ep || h->conn_id))
			return -EPROTO;
		return 0;
	default:
		return pl ? -EMSGSIZE : 0;
	}
}

int vr_wire_parse(const void *frame, u32 len, u16 ethertype, struct vr_parsed *out)
{
	const u8 *f = frame;
	const u8 *p;
	u32 st, crc, hl;
	u8 hdrs[VR_ETH_HLEN + VR_HDR_LEN];
	bool auth;

	if (!f || len < VR_ETH_HLEN + VR_HDR_LEN)
		return -ENODATA;
	if (vr_get_be16(f + 12) != ethertype)
		return -EPFNOSUPPORT;
	p = f + VR_ETH_HLEN;
	if (p[VR_OFF_VERSION] != VR_WIRE_VERSION)
		return -EPROTONOSUPPORT;
	/* The flag is inside what the CRC covers, so a corrupted flag fails
	 * the CRC (or this length check) before anything trusts it. */
	auth = p[VR_OFF_FLAGS] & VR_F_AUTH;
	hl = vr_wire_hdrs_len(p[VR_OFF_FLAGS]);
	if (len < hl)
		return -ENODATA;
	/* Exact length: our frames are never below the 60-byte Ethernet minimum,
	 * so there is no padding to tolerate. */
	if (vr_get_be16(p + VR_OFF_PAYLOAD_LEN) != len - hl)
		return -EMSGSIZE;
	/* CRC covers the Ethernet header too: a flipped MAC must not create a
	 * "new peer" (e.g. a ghost connection from a corrupted CONNECT_REQ). */
	/* One pass over both headers, the CRC field read as zero: the header
	 * CRC is one dependent chain, and every call and tail lengthens it. */
	memcpy(hdrs, f, sizeof(hdrs));
	memset(hdrs + VR_ETH_HLEN + VR_OFF_CRC, 0, 4);
	st = vr_crc32c_update(VR_CRC32C_INIT, hdrs, sizeof(hdrs));
	/* An authenticated frame's payload is covered by its tag, checked
	 * once the connection (and so the key) is known. */
	if (auth)
		st = vr_crc32c_update(st, p + VR_HDR_LEN, VR_AUTH_BLOCK_LEN);
	else if (!(p[VR_OFF_FLAGS] & VR_F_LINK_FCS))
		st = vr_crc32c_update(st, p + VR_HDR_LEN, len - hl);
	crc = vr_get_be32(p + VR_OFF_CRC);
	if (vr_crc32c_final(st) != crc)
		return -EBADMSG;
	if (!vr_opcode_valid(p[VR_OFF_OPCODE]))
		return -EOPNOTSUPP;
	if ((p[VR_OFF_FLAGS] & ~VR_F_ALL) || vr_get_be16(p + VR_OFF_RESERVED) ||
	    vr_get_be32(p + VR_OFF_RESERVED2))
		return -EPROTO;
	memcpy(out->dst_mac, f, 6);
	memcpy(out->src_mac, f + 6, 6);
	decode(p, &out->h);
	out->frame = f;
	out->auth = auth ? p + VR_HDR_LEN : NULL;
	out->payload = f + hl;
	return check_semantics(&out->h);
}

u32 vr_wire_bundle_init(u8 *bundle, const u8 *first_frame)
{
	u8 *b = bundle + VR_ETH_HLEN;

	memcpy(bundle, first_frame, VR_ETH_HLEN);
	b[VR_OFF_VERSION] = VR_WIRE_VERSION;
	b[VR_OFF_OPCODE] = VR_OP_BUNDLE;
	vr_put_be16(b + VR_BUNDLE_OFF_COUNT, 0);
	vr_put_be32(b + VR_BUNDLE_OFF_RESERVED, 0);
	return VR_ETH_HLEN + VR_BUNDLE_HLEN;
}

void vr_wire_bundle_set_count(u8 *bundle, u16 count)
{
	vr_put_be16(bundle + VR_ETH_HLEN + VR_BUNDLE_OFF_COUNT, count);
}

/* Checks a bundle's whole structure: count entries that fit exactly, each
 * long enough for a frame and addressed like the bundle. */
static int bundle_check(const u8 *f, u32 len)
{
	u32 count = vr_get_be16(f + VR_ETH_HLEN + VR_BUNDLE_OFF_COUNT);
	u32 at = VR_ETH_HLEN + VR_BUNDLE_HLEN;
	u32 seen = 0, n;

	while (at < len) {
		if (len - at < VR_BUNDLE_ENTRY_HLEN)
			return -EMSGSIZE;
		n = vr_get_be16(f + at);
		at += VR_BUNDLE_ENTRY_HLEN;
		if (n < VR_ETH_HLEN + VR_HDR_LEN || n > len - at)
			return -EMSGSIZE;
		if (memcmp(f + at, f, VR_ETH_HLEN))
			return -EPROTO;
		at += n;
		seen++;
	}
	return seen == count ? 0 : -EPROTO;
}

int vr_wire_bundle_next(const void *frame, u32 len, u16 ethertype, u32 *pos,
			const u8 **inner, u32 *inner_len)
{
	const u8 *f = frame;
	const u8 *b = f + VR_ETH_HLEN;
	u32 at;
	int rc;

	if (!*pos) {
		if (len < VR_ETH_HLEN + VR_BUNDLE_HLEN)
			return -ENODATA;
		if (vr_get_be16(f + 12) != ethertype)
			return -EPFNOSUPPORT;
		if (b[VR_OFF_VERSION] != VR_WIRE_VERSION)
			return -EPROTONOSUPPORT;
		if (b[VR_OFF_OPCODE] != VR_OP_BUNDLE)
			return -EOPNOTSUPP;
		if (vr_get_be32(b + VR_BUNDLE_OFF_RESERVED) ||
		    !vr_get_be16(b + VR_BUNDLE_OFF_COUNT))
			return -EPROTO;
		rc = bundle_check(f, len);
		if (rc)
			return rc;
		*pos = VR_ETH_HLEN + VR_BUNDLE_HLEN;
	}
	at = *pos;
	if (at >= len)
		return 0;
	/* bundle_check vouched for every entry's bounds. */
	*inner_len = vr_get_be16(f + at);
	*inner = f + at + VR_BUNDLE_ENTRY_HLEN;
	*pos = at + VR_BUNDLE_ENTRY_HLEN + *inner_len;
	return 1;
}
