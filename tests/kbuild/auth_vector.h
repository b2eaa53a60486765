/* SPDX-License-Identifier: GPL-2.0 OR MIT */
/*
 * auth_vector.h - one test vector for proto/'s cryptography, checked by the
 * user-space test (tests/proto:auth_test, libsodium underneath) and by the
 * kernel test module (tests/kbuild/vmrdma_proto_test.c, the kernel's
 * lib/crypto underneath): both hosts must derive the same connection key,
 * compute the same frame tag and the same cookie hash, or a kernel host and
 * a user-space host could not talk.  The expected bytes were computed with
 * libsodium's crypto_core_hchacha20 and crypto_aead_chacha20poly1305_ietf_
 * encrypt_detached (an empty message, the frame as additional data); the
 * SipHash line is the reference vector of the SipHash paper (key 00..0f,
 * input 00..0e).
 */
#ifndef VR_AUTH_VECTOR_H
#define VR_AUTH_VECTOR_H

/* pre-shared key: 0x80, 0x81, ... 0x9f */
#define VRV_PSK_BYTE(i) ((u8)(0x80 + (i)))
#define VRV_INIT_ID 0x0003a5a5u
#define VRV_INIT_ISN 0x11223344u
#define VRV_ACC_ID 0x00017e7eu
#define VRV_ACC_ISN 0x55667788u
static const u8 vrv_conn_key[32] = {
	0x6f, 0x4a, 0x88, 0x67, 0x43, 0xc3, 0x47, 0xbf, 0x00, 0x2a, 0xee, 0xfc, 0x2d, 0x68, 0x8f, 0xc7,
	0xb4, 0x1f, 0x9d, 0x4e, 0x58, 0x3b, 0x2c, 0xed, 0xe1, 0x7d, 0x39, 0x6d, 0x3e, 0xf4, 0xa0, 0x59,
};
/* A 123-byte frame (86 bytes of headers, 37 of payload): byte i is i*37+11;
 * its tag under vrv_conn_key with nonce VRV_NONCE (the accepting side's
 * frame 5). */
#define VRV_FRAME_LEN 123
#define VRV_FRAME_BYTE(i) ((u8)((i) * 37 + 11))
#define VRV_NONCE 0x8000000000000005ull
static const u8 vrv_tag[16] = {
	0x43, 0x44, 0xd6, 0x05, 0xa3, 0x2b, 0x3c, 0x72, 0x1c, 0x7d, 0x9d, 0x12, 0x40, 0x6e, 0x4a, 0x27,
};
/* SipHash-2-4, key 00..0f, input 00..0e */
#define VRV_SIPHASH 0xa129ca6149be45e5ull

#endif /* VR_AUTH_VECTOR_H */
