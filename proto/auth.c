// SPDX-License-Identifier: GPL-2.0 OR MIT
/* auth.c - authenticated frames: key derivation, tags, the replay window
 * (auth.h, docs/wire-format.md Authentication). */
#include "auth.h"

void vr_auth_conn_key(u8 out[VR_AUTH_KEY_LEN], const u8 psk[VR_AUTH_KEY_LEN], u32 init_id,
		      u32 init_isn, u32 acc_id, u32 acc_isn)
{
	u8 in[16];

	vr_put_be32(in, init_id);
	vr_put_be32(in + 4, init_isn);
	vr_put_be32(in + 8, acc_id);
	vr_put_be32(in + 12, acc_isn);
	vr_hchacha20(out, psk, in);
}

void vr_auth_begin(struct vr_auth_mac *m, const u8 key[VR_AUTH_KEY_LEN], u64 nonce)
{
	u8 iv[12], otk[32];

	/* RFC 8439 2.8: the one-time Poly1305 key is ChaCha20's first block
	 * under the 96-bit nonce 0^32 || le64(nonce). */
	memset(iv, 0, 4);
	vr_put_le32(iv + 4, (u32)nonce);
	vr_put_le32(iv + 8, (u32)(nonce >> 32));
	vr_chacha20_poly_key(otk, key, iv);
	vr_poly1305_init(&m->poly, otk);
	vr_crypto_wipe(otk, sizeof(otk));
	m->len = 0;
}

void vr_auth_update(void *mac, const u8 *data, u32 len)
{
	struct vr_auth_mac *m = mac;

	vr_poly1305_update(&m->poly, data, len);
	m->len += len;
}

void vr_auth_finish(struct vr_auth_mac *m, u8 tag[VR_AUTH_TAG_LEN])
{
	static const u8 zero[16];
	u8 lens[16];

	/* The additional data padded to 16 bytes, then its length and the
	 * (empty) ciphertext's, little-endian. */
	if (m->len % 16)
		vr_poly1305_update(&m->poly, zero, (u32)(16 - m->len % 16));
	vr_put_le32(lens, (u32)m->len);
	vr_put_le32(lens + 4, (u32)(m->len >> 32));
	memset(lens + 8, 0, 8);
	vr_poly1305_update(&m->poly, lens, sizeof(lens));
	vr_poly1305_final(&m->poly, tag);
}

bool vr_auth_check(const u8 key[VR_AUTH_KEY_LEN], const u8 *frame, const u8 *block,
		   const u8 *payload, u32 payload_len)
{
	struct vr_auth_mac m;
	u8 hdrs[VR_ETH_HLEN + VR_HDR_LEN], tag[VR_AUTH_TAG_LEN];

	memcpy(hdrs, frame, sizeof(hdrs));
	memset(hdrs + VR_ETH_HLEN + VR_OFF_CRC, 0, 4);
	vr_auth_begin(&m, key, vr_get_be64(block));
	vr_auth_update(&m, hdrs, sizeof(hdrs));
	if (payload_len)
		vr_auth_update(&m, payload, payload_len);
	vr_auth_finish(&m, tag);
	return vr_crypto_equal(tag, block + 8, VR_AUTH_TAG_LEN);
}

bool vr_replay_fresh(const struct vr_replay *w, u64 nonce)
{
	u64 back;

	if (nonce >= w->next)
		return true;
	back = w->next - 1 - nonce;
	return back < VR_AUTH_REPLAY_WINDOW && !(w->seen & (1ULL << back));
}

void vr_replay_take(struct vr_replay *w, u64 nonce)
{
	if (nonce >= w->next) {
		u64 shift = nonce + 1 - w->next;

		w->seen = shift >= 64 ? 0 : w->seen << shift;
		w->seen |= 1;
		w->next = nonce + 1;
	} else {
		w->seen |= 1ULL << (w->next - 1 - nonce);
	}
}
