/* SPDX-License-Identifier: GPL-2.0 OR MIT */
/*
 * crypto.h - the OS seam for cryptographic primitives, next to os.h.
 *
 * proto/ keeps every protocol rule that uses cryptography (what a cookie
 * covers, how a connection's key is derived, what a frame's tag covers:
 * conn.c, auth.c); this header only maps the standard primitives onto what
 * the host has:
 *   - in the kernel, lib/crypto: siphash (built in), hchacha/chacha block
 *     (libchacha.ko) and Poly1305 (libpoly1305.ko), their generic C forms, so
 *     that a module needs only those two library modules;
 *   - in user space, libsodium (Debian's libsodium-dev).
 * Both implement the same published algorithms (SipHash-2-4; ChaCha20,
 * HChaCha20 and Poly1305 of RFC 8439 / draft-irtf-cfrg-xchacha), so a kernel
 * host and a user-space host compute the same bytes; tests/proto:auth_test
 * and the kbuild test module check one shared vector.
 */
#ifndef VR_CRYPTO_H
#define VR_CRYPTO_H
#include "os.h"

#ifdef __KERNEL__
#include <linux/siphash.h>
#include <crypto/chacha.h>
#include <crypto/poly1305.h>

struct vr_poly1305 {
	struct poly1305_desc_ctx ctx;
};

static inline int vr_crypto_init(void)
{
	return 0;
}
#else
#include <sodium.h>

struct vr_poly1305 {
	crypto_onetimeauth_poly1305_state st;
};

/* 0, or -ENOSYS when libsodium cannot start (it then must not be used). */
static inline int vr_crypto_init(void)
{
	return sodium_init() < 0 ? -ENOSYS : 0;
}
#endif

static inline u32 vr_get_le32(const u8 *p)
{
	return (u32)p[0] | (u32)p[1] << 8 | (u32)p[2] << 16 | (u32)p[3] << 24;
}

static inline void vr_put_le32(u8 *p, u32 v)
{
	p[0] = (u8)v;
	p[1] = (u8)(v >> 8);
	p[2] = (u8)(v >> 16);
	p[3] = (u8)(v >> 24);
}

static inline u64 vr_get_le64(const u8 *p)
{
	return (u64)vr_get_le32(p) | (u64)vr_get_le32(p + 4) << 32;
}

/* SipHash-2-4 of data under a 16-byte key; the 8-byte result read as a
 * little-endian number. */
static inline u64 vr_siphash24(const u8 key[16], const void *data, u32 len)
{
#ifdef __KERNEL__
	siphash_key_t k = { { vr_get_le64(key), vr_get_le64(key + 8) } };

	return siphash(data, len, &k);
#else
	u8 out[8];

	crypto_shorthash_siphash24(out, (const unsigned char *)data, len, key);
	return vr_get_le64(out);
#endif
}

/* HChaCha20: a 32-byte key and 16 input bytes give a new 32-byte key. */
static inline void vr_hchacha20(u8 out[32], const u8 key[32], const u8 in[16])
{
#ifdef __KERNEL__
	u32 state[16], words[8];
	int i;

	chacha_init_consts(state);
	for (i = 0; i < 8; i++)
		state[4 + i] = vr_get_le32(key + 4 * i);
	for (i = 0; i < 4; i++)
		state[12 + i] = vr_get_le32(in + 4 * i);
	hchacha_block_generic(state, words, 20);
	for (i = 0; i < 8; i++)
		vr_put_le32(out + 4 * i, words[i]);
	memzero_explicit(state, sizeof(state));
	memzero_explicit(words, sizeof(words));
#else
	crypto_core_hchacha20(out, in, key, NULL);
#endif
}

/* The first 32 bytes of ChaCha20's key stream (IETF: 96-bit nonce, block
 * counter 0): the one-time Poly1305 key of RFC 8439, section 2.6. */
static inline void vr_chacha20_poly_key(u8 out[32], const u8 key[32], const u8 nonce[12])
{
#ifdef __KERNEL__
	u32 state[16], k[8];
	u8 iv[16], block[CHACHA_BLOCK_SIZE];
	int i;

	for (i = 0; i < 8; i++)
		k[i] = vr_get_le32(key + 4 * i);
	memset(iv, 0, 4); /* block counter 0 */
	memcpy(iv + 4, nonce, 12);
	chacha_init_generic(state, k, iv);
	chacha_block_generic(state, block, 20);
	memcpy(out, block, 32);
	memzero_explicit(block, sizeof(block));
	memzero_explicit(state, sizeof(state));
	memzero_explicit(k, sizeof(k));
#else
	crypto_stream_chacha20_ietf(out, 32, nonce, key);
#endif
}

static inline void vr_poly1305_init(struct vr_poly1305 *p, const u8 key[32])
{
#ifdef __KERNEL__
	poly1305_init_generic(&p->ctx, key);
#else
	crypto_onetimeauth_poly1305_init(&p->st, key);
#endif
}

static inline void vr_poly1305_update(struct vr_poly1305 *p, const void *data, u32 len)
{
#ifdef __KERNEL__
	poly1305_update_generic(&p->ctx, data, len);
#else
	crypto_onetimeauth_poly1305_update(&p->st, (const unsigned char *)data, len);
#endif
}

static inline void vr_poly1305_final(struct vr_poly1305 *p, u8 tag[16])
{
#ifdef __KERNEL__
	poly1305_final_generic(&p->ctx, tag);
#else
	crypto_onetimeauth_poly1305_final(&p->st, tag);
#endif
}

/* Compares n bytes in time that does not depend on where they differ. */
static inline bool vr_crypto_equal(const u8 *a, const u8 *b, u32 n)
{
	u8 d = 0;
	u32 i;

	for (i = 0; i < n; i++)
		d |= a[i] ^ b[i];
	return d == 0;
}

/* Clears key material the compiler must not elide. */
static inline void vr_crypto_wipe(void *p, u32 n)
{
#ifdef __KERNEL__
	memzero_explicit(p, n);
#else
	sodium_memzero(p, n);
#endif
}

#endif /* VR_CRYPTO_H */
