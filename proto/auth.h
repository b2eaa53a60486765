/* SPDX-License-Identifier: GPL-2.0 OR MIT */
/*
 * auth.h - authenticated frames (docs/wire-format.md, Authentication): the
 * rule of what a frame's tag covers, how a connection's key is derived from
 * a pre-shared or application key, and the replay window.  The primitives
 * come from crypto.h (the kernel's lib/crypto or libsodium), so a kernel
 * host and a user-space host compute the same tags.
 *
 * A frame flagged VR_F_AUTH carries, between its vmrdma header and its
 * payload, a 24-byte block: the 64-bit nonce (big-endian) and the 16-byte
 * tag.  The tag is the RFC 8439 ChaCha20-Poly1305 tag with no plaintext and
 * as additional data the Ethernet header, the vmrdma header (CRC field 0)
 * and the payload, under the connection's key and the 96-bit nonce
 * 0^32 || le64(nonce): exactly what an AEAD library computes for an empty
 * message (libsodium's crypto_aead_chacha20poly1305_ietf_encrypt_detached,
 * the kernel's chacha20poly1305_encrypt).  The nonce is the sender's frame
 * counter, with bit 63 set when the sender is the accepting side, so no
 * (key, nonce) pair ever covers two different frames.
 */
#ifndef VR_AUTH_H
#define VR_AUTH_H
#include "os.h"
#include "crypto.h"
#include "wire.h"

#define VR_AUTH_TAG_LEN 16      /* after the 8-byte nonce in the VR_AUTH_BLOCK_LEN block */
#define VR_AUTH_NONCE_PASSIVE (1ULL << 63)
#define VR_AUTH_REPLAY_WINDOW 64

/*
 * A connection's key: HChaCha20 of the pre-shared key over the initiator's
 * connection id and ISN and the acceptor's (16 bytes, big-endian); both sides
 * draw their halves from their CSPRNG, so every connection has a key of its
 * own.  A CONNECT_REQ, sent before the acceptor's half exists, uses the key
 * with the acceptor's half zero (an id is never 0, so it is never a
 * connection's key).
 */
void vr_auth_conn_key(u8 out[VR_AUTH_KEY_LEN], const u8 psk[VR_AUTH_KEY_LEN], u32 init_id,
		      u32 init_isn, u32 acc_id, u32 acc_isn);

/* A tag being computed: begin, feed the Ethernet and vmrdma headers (CRC
 * field 0), then the payload in as many pieces as it comes in, finish. */
struct vr_auth_mac {
	struct vr_poly1305 poly;
	u64 len;  /* bytes fed so far */
};
void vr_auth_begin(struct vr_auth_mac *m, const u8 key[VR_AUTH_KEY_LEN], u64 nonce);
void vr_auth_update(void *m, const u8 *data, u32 len); /* a vr_mem_ops.walk callback */
void vr_auth_finish(struct vr_auth_mac *m, u8 tag[VR_AUTH_TAG_LEN]);

/*
 * Checks a received frame's tag under key: frame starts at its Ethernet
 * header (its CRC field is read as 0), block is its 24-byte auth block,
 * payload its payload.  True when the tag matches.
 */
bool vr_auth_check(const u8 key[VR_AUTH_KEY_LEN], const u8 *frame, const u8 *block,
		   const u8 *payload, u32 payload_len);

/* The receiver's replay window: a nonce is taken once, and not when it is
 * more than VR_AUTH_REPLAY_WINDOW below the highest one taken. */
struct vr_replay {
	u64 next;    /* highest nonce taken + 1 (0: none yet) */
	u64 seen;    /* bit i: nonce next - 1 - i was taken */
};
bool vr_replay_fresh(const struct vr_replay *w, u64 nonce);
void vr_replay_take(struct vr_replay *w, u64 nonce);

#endif /* VR_AUTH_H */
