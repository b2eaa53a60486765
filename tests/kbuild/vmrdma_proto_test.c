// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * vmrdma_proto_test.c - kernel-safety proof for proto/: an engine over a
 * kmalloc'd buffer, one endpoint, one region, and the listener's side of a
 * handshake fed through the receive path: a CONNECT_REQ (answered by a
 * CONNECT_RETRY with a cookie, nothing kept), then the request echoing the
 * cookie (answered by a CONNECT_ACK).  Init checks the answers, the accept
 * completion and the connection state.  It checks proto/'s cryptography
 * on the kernel's lib/crypto against the vector that tests/proto:auth_test
 * checks on libsodium (auth_vector.h), then logs
 * one "vmrdma_proto_kt: OK: ..." line; on any mismatch it logs
 * "vmrdma_proto_kt: init failed: ..." and returns an error.  Built by
 * tests/kbuild/build.sh; loaded and unloaded under QEMU by
 * tests/qemu/run_module_test.sh.
 */
#include <linux/module.h>
#include <linux/kernel.h>
#include <linux/slab.h>
#include <linux/random.h>

#include "engine.h"
#include "auth.h"
#include "crc32c.h"
#include "auth_vector.h"
#include "ring.h" /* the shared ring ABI must build in the kernel too */

static void *vrt_mem;
static void *vrt_buf;
static struct vr_engine *vrt_eng;
static unsigned int vrt_xmits, vrt_completions;
static struct vr_parsed vrt_sent;	/* the last frame handed to xmit */
static int vrt_sent_rc = -ENODATA;
static struct vr_completion vrt_accept;	/* the VR_WC_ACCEPT completion */
static bool vrt_accepted;

static int vrt_xmit(void *ctx, const struct vr_frame *f)
{
	vrt_xmits++;
	vrt_sent_rc = f->nfrags ? -EMSGSIZE :
		vr_wire_parse(f->hdr, f->hdr_len, VR_ETHERTYPE_DEFAULT, &vrt_sent);
	return 0; /* dropped on the floor: nothing is sent */
}

static void vrt_complete(void *ctx, const struct vr_completion *c)
{
	vrt_completions++;
	if (c->op == VR_WC_ACCEPT && !vrt_accepted) {
		vrt_accept = *c;
		vrt_accepted = true;
	}
}

static u32 vrt_random(void *ctx)
{
	return get_random_u32();
}

static const struct vr_host_ops vrt_host = {
	.xmit = vrt_xmit,
	.complete = vrt_complete,
	.random = vrt_random,
};

/*
 * Every CRC32C implementation the kernel can run here (the crc32 instruction
 * where the CPU has SSE4.2) against the portable tables, at every length to
 * 4 KiB in two pieces: a mismatch would put the kernel backend off the wire.
 * Returns how many besides the portable one ran, or -EPROTO.
 */
static int vrt_crc_check(u8 *buf, u32 size)
{
	static const enum vr_crc32c_impl impls[] = { VR_CRC32C_HW_TABLES, VR_CRC32C_HW_PCLMUL };
	u32 i, len, got, want;
	int ran = 0;

	for (i = 0; i < size; i++)
		buf[i] = (u8)(i * 131 + 7);
	for (i = 0; i < ARRAY_SIZE(impls); i++) {
		if (!vr_crc32c_update_with(impls[i], VR_CRC32C_INIT, buf, 1, &got))
			continue;
		ran++;
		for (len = 0; len <= size; len += len < 64 ? 1 : 13) {
			u32 split = len / 3;

			vr_crc32c_update_with(impls[i], VR_CRC32C_INIT, buf, split, &got);
			vr_crc32c_update_with(impls[i], got, buf + split, len - split, &got);
			want = vr_crc32c_update_portable(VR_CRC32C_INIT, buf, len);
			if (got != want) {
				pr_err("vmrdma_proto_kt: CRC32C implementation %d gives 0x%08x, "
				       "the portable one 0x%08x, at length %u\n", impls[i], got, want, len);
				return -EPROTO;
			}
		}
	}
	memset(buf, 0, size);
	return ran;
}

/*
 * The connection key, a frame's tag (its payload in two pieces) and the
 * cookie hash, computed with the kernel's primitives, must be the bytes
 * user space computes with libsodium.  0 or -EPROTO.
 */
static int vrt_auth_check(void)
{
	u8 psk[32], key[32], frame[VRV_FRAME_LEN], tag[16], sk[16], sin[15];
	struct vr_auth_mac m;
	int i;

	for (i = 0; i < 32; i++)
		psk[i] = VRV_PSK_BYTE(i);
	vr_auth_conn_key(key, psk, VRV_INIT_ID, VRV_INIT_ISN, VRV_ACC_ID, VRV_ACC_ISN);
	if (memcmp(key, vrv_conn_key, 32)) {
		pr_err("vmrdma_proto_kt: connection key %32phN, user space derives %32phN\n", key,
		       vrv_conn_key);
		return -EPROTO;
	}
	for (i = 0; i < VRV_FRAME_LEN; i++)
		frame[i] = VRV_FRAME_BYTE(i);
	vr_auth_begin(&m, vrv_conn_key, VRV_NONCE);
	vr_auth_update(&m, frame, 50);
	vr_auth_update(&m, frame + 50, VRV_FRAME_LEN - 50);
	vr_auth_finish(&m, tag);
	if (memcmp(tag, vrv_tag, 16)) {
		pr_err("vmrdma_proto_kt: frame tag %16phN, user space computes %16phN\n", tag,
		       vrv_tag);
		return -EPROTO;
	}
	for (i = 0; i < 16; i++)
		sk[i] = (u8)i;
	for (i = 0; i < 15; i++)
		sin[i] = (u8)i;
	if (vr_siphash24(sk, sin, sizeof(sin)) != VRV_SIPHASH) {
		pr_err("vmrdma_proto_kt: SipHash-2-4 0x%016llx, the reference 0x%016llx\n",
		       (unsigned long long)vr_siphash24(sk, sin, sizeof(sin)), VRV_SIPHASH);
		return -EPROTO;
	}
	return 0;
}

static int __init vrt_init(void)
{
	static const u8 mac[6] = { 0x02, 0, 0, 0, 0, 0x01 };
	static const u8 peer[6] = { 0x02, 0, 0, 0, 0, 0x02 };
	struct vr_config cfg = {
		.mtu = 1500,
		.max_endpoints = 2,
		.max_conns = 2,
		.max_regions = 4,
		.max_ops = 4,
		.max_recvs = 4,
		.unexp_depth = 1,
		.unexp_buf_size = 256,
		.host = &vrt_host,
	};
	u8 frame[VR_ETH_HLEN + VR_HDR_LEN];
	struct vr_hdr h = {
		.version = VR_WIRE_VERSION,
		.opcode = VR_OP_CONNECT_REQ,
		.src_ep = 5,
		.dst_ep = 0,
		.msg_id = 0x00010001,
		.psn = 1,
	};
	size_t need;
	u64 key;
	int rc, sent, crc_impls;

	memcpy(cfg.mac, mac, 6);
	need = vr_engine_mem_size(&cfg);
	if (!need)
		return -EINVAL;
	vrt_mem = kmalloc(need, GFP_KERNEL);
	vrt_buf = kzalloc(4096, GFP_KERNEL);
	if (!vrt_mem || !vrt_buf) {
		rc = -ENOMEM;
		goto err;
	}
	crc_impls = vrt_crc_check(vrt_buf, 4096);
	if (crc_impls < 0) {
		rc = crc_impls;
		goto err;
	}
	rc = vrt_auth_check();
	if (rc)
		goto err;
	rc = vr_engine_create(&cfg, vrt_mem, need, &vrt_eng);
	if (rc)
		goto err;
	rc = vr_ep_open(vrt_eng, 0, 1, true);
	if (rc)
		goto err_eng;
	rc = vr_reg_mr(vrt_eng, 0, vrt_buf, 4096, VR_ACCESS_ALL, &key);
	if (rc)
		goto err_eng;
	vr_wire_put_eth(frame, mac, peer, VR_ETHERTYPE_DEFAULT);
	vr_wire_encode_full(frame, &h, NULL);
	rc = vr_engine_input(vrt_eng, frame, sizeof(frame), 1000);
	if (rc)
		goto err_eng;
	sent = vr_engine_tx_poll(vrt_eng, 2000, 8);
	if (vrt_accepted || sent != 1 || vrt_sent_rc ||
	    vrt_sent.h.opcode != VR_OP_CONNECT_RETRY || !vrt_sent.h.operand_b ||
	    vrt_sent.h.conn_id != h.msg_id || vrt_sent.h.ack_psn != h.psn) {
		pr_err("vmrdma_proto_kt: expected one CONNECT_RETRY and no connection, got %d "
		       "frame(s) (parse %d, opcode 0x%02x)\n", sent, vrt_sent_rc,
		       vrt_sent.h.opcode);
		rc = -EPROTO;
		goto err_eng;
	}
	h.operand_b = vrt_sent.h.operand_b; /* echo the cookie */
	vr_wire_encode_full(frame, &h, NULL);
	rc = vr_engine_input(vrt_eng, frame, sizeof(frame), 3000);
	if (rc)
		goto err_eng;
	sent = vr_engine_tx_poll(vrt_eng, 4000, 8);
	if (!vrt_accepted || vrt_accept.status ||
	    vr_conn_state(vrt_eng, vrt_accept.conn) != VR_CONN_CONNECTED) {
		pr_err("vmrdma_proto_kt: CONNECT_REQ not accepted\n");
		rc = -EPROTO;
		goto err_eng;
	}
	if (sent != 1 || vrt_sent_rc || vrt_sent.h.opcode != VR_OP_CONNECT_ACK ||
	    vrt_sent.h.conn_id != h.msg_id || vrt_sent.h.dst_ep != h.src_ep) {
		pr_err("vmrdma_proto_kt: expected one CONNECT_ACK, got %d frame(s) "
		       "(parse %d, opcode 0x%02x)\n", sent, vrt_sent_rc,
		       vrt_sent.h.opcode);
		rc = -EPROTO;
		goto err_eng;
	}
	pr_info("vmrdma_proto_kt: OK: engine of %zu bytes, region key 0x%016llx, "
		"CONNECT_REQ answered by a cookie, accepted with it as connection %u, answered by %s; "
		"CRC32C: %s; connection key, frame tag and SipHash as user space computes them\n",
		need, (unsigned long long)key, vrt_accept.conn, vr_opcode_name(vrt_sent.h.opcode),
		crc_impls ? "the crc32 instruction agrees with the portable tables" :
			    "portable tables only (no SSE4.2)");
	return 0;

err_eng:
	vr_engine_destroy(vrt_eng);
err:
	pr_err("vmrdma_proto_kt: init failed: %d\n", rc);
	kfree(vrt_buf);
	kfree(vrt_mem);
	return rc;
}

static void __exit vrt_exit(void)
{
	vr_engine_destroy(vrt_eng);
	kfree(vrt_buf);
	kfree(vrt_mem);
	pr_info("vmrdma_proto_kt: unloaded (%u xmits, %u completions)\n", vrt_xmits,
		vrt_completions);
}

module_init(vrt_init);
module_exit(vrt_exit);
MODULE_LICENSE("Dual MIT/GPL");
MODULE_DESCRIPTION("vmrdma protocol engine kernel build test");
