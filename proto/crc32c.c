// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * CRC32C (Castagnoli).  Hand-written on purpose: the identical code must
 * build in the kernel and in user space, and the simulator must be
 * bit-for-bit deterministic.  Three implementations of one function,
 * chosen at run time by what the CPU has; same results (the tests compare
 * them at every length, alignment and split):
 *   - portable slicing-by-8 (eight 256-entry tables, 8 bytes per step);
 *   - on x86-64 with SSE4.2, kernel and user space alike: the crc32
 *     instruction in three interleaved chains joined by tables;
 *   - in user space with PCLMUL too: the same chains over three equal parts
 *     of any length, joined by carry-less multiplication.
 * The CRC is on every frame's whole payload, so its speed is the engine's
 * speed: byte-at-a-time tables measured 43% of a transfer's CPU time.
 */
#include "crc32c.h"
#if defined(__KERNEL__) && defined(__x86_64__)
#include <asm/cpufeature.h>
#endif

static u32 vr_crc_table[8][256];
static bool vr_crc_ready;

/* Built on first use; idempotent so a benign race writes identical values,
 * published with release/acquire. */
static void vr_crc_init(void)
{
	u32 i, j, c;

	for (i = 0; i < 256; i++) {
		c = i;
		for (j = 0; j < 8; j++)
			c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
		vr_crc_table[0][i] = c;
	}
	for (i = 0; i < 256; i++) {
		c = vr_crc_table[0][i];
		for (j = 1; j < 8; j++) {
			c = vr_crc_table[0][c & 0xFF] ^ (c >> 8);
			vr_crc_table[j][i] = c;
		}
	}
	__atomic_store_n(&vr_crc_ready, true, __ATOMIC_RELEASE);
}

u32 vr_crc32c_update_portable(u32 crc, const void *data, u32 len)
{
	const u8 *p = data;

	if (!__atomic_load_n(&vr_crc_ready, __ATOMIC_ACQUIRE))
		vr_crc_init();
	while (len >= 8) {
		/* Little-endian assembly by hand: alignment- and host-order-free. */
		u32 lo = crc ^ ((u32)p[0] | (u32)p[1] << 8 | (u32)p[2] << 16 | (u32)p[3] << 24);
		u32 hi = (u32)p[4] | (u32)p[5] << 8 | (u32)p[6] << 16 | (u32)p[7] << 24;

		crc = vr_crc_table[7][lo & 0xFF] ^ vr_crc_table[6][(lo >> 8) & 0xFF] ^
		      vr_crc_table[5][(lo >> 16) & 0xFF] ^ vr_crc_table[4][lo >> 24] ^
		      vr_crc_table[3][hi & 0xFF] ^ vr_crc_table[2][(hi >> 8) & 0xFF] ^
		      vr_crc_table[1][(hi >> 16) & 0xFF] ^ vr_crc_table[0][hi >> 24];
		p += 8;
		len -= 8;
	}
	while (len--)
		crc = vr_crc_table[0][(crc ^ *p++) & 0xFF] ^ (crc >> 8);
	return crc;
}

#if defined(__x86_64__)
/*
 * The crc32 instruction, through inline assembly on general registers only:
 * no vector state is touched, so the same code runs in the kernel (no
 * kernel_fpu_begin needed) and in user space, chosen at run time by the
 * CPU's SSE4.2 flag.
 */
static inline u64 vr_crc_u64(u64 c, u64 v)
{
	__asm__("crc32q %1, %0" : "+r"(c) : "rm"(v));
	return c;
}

static inline u32 vr_crc_u32(u32 c, u32 v)
{
	__asm__("crc32l %1, %0" : "+r"(c) : "rm"(v));
	return c;
}

static inline u32 vr_crc_u16(u32 c, u16 v)
{
	__asm__("crc32w %1, %0" : "+r"(c) : "rm"(v));
	return c;
}

static inline u32 vr_crc_u8(u32 c, u8 v)
{
	__asm__("crc32b %1, %0" : "+r"(c) : "rm"(v));
	return c;
}

/*
 * The crc32 instruction has a latency of three cycles and a throughput of
 * one, so one dependent chain uses a third of it.  Long buffers run as
 * three independent chains over three equal parts (the second and third
 * from zero) that are then joined: crc(c, A B C) = shift(crc(c, A), |B|+|C|)
 * ^ shift(crc(0, B), |C|) ^ crc(0, C), where shift(v, n) is crc(v, n zero
 * bytes), a linear map on 32 bits.
 */
static u32 vr_crc_chain(u32 crc, const u8 *p, u32 len)
{
	u64 c = crc;

	while (len >= 8) {
		u64 v;

		memcpy(&v, p, 8);
		c = vr_crc_u64(c, v);
		p += 8;
		len -= 8;
	}
	/* The tail in at most three steps, not up to seven: every frame's
	 * header CRC (86 bytes) ends in two, and each step is a 3-cycle link
	 * of the chain. */
	if (len >= 4) {
		u32 v;

		memcpy(&v, p, 4);
		c = vr_crc_u32((u32)c, v);
		p += 4;
		len -= 4;
	}
	if (len >= 2) {
		u16 v;

		memcpy(&v, p, 2);
		c = vr_crc_u16((u32)c, v);
		p += 2;
		len -= 2;
	}
	if (len)
		c = vr_crc_u8((u32)c, *p);
	return (u32)c;
}

/* Three chains over p[0..n), p[n..2n), p[2n..3n), n a multiple of 8. */
static inline void vr_crc_three(const u8 *p, u32 n, u64 *a, u64 *b, u64 *c)
{
	u32 i;

	for (i = 0; i < n; i += 8) {
		u64 x, y, z;

		/*
		 * Three streams are too few for the hardware prefetcher on
		 * memory that is not in cache (a message being sent): ask for
		 * each stream's lines 512 bytes ahead; prefetches never fault.
		 */
		if (!(i & 63)) {
			__builtin_prefetch(p + i + 512);
			__builtin_prefetch(p + n + i + 512);
			__builtin_prefetch(p + 2 * n + i + 512);
		}
		memcpy(&x, p + i, 8);
		memcpy(&y, p + n + i, 8);
		memcpy(&z, p + 2 * n + i, 8);
		*a = vr_crc_u64(*a, x);
		*b = vr_crc_u64(*b, y);
		*c = vr_crc_u64(*c, z);
	}
}

/*
 * Without carry-less multiplication (the kernel, or a CPU without PCLMUL):
 * fixed part lengths (1024, then 128 for what is left), whose shifts are
 * kept as four byte-indexed tables each.
 */
static const u32 vr_crc_strides[2] = { 1024, 128 };
/* The shortest part either three-chain path uses (the PCLMUL one's minimum
 * is below the tables' 128). */
#define VR_CRC_SHORTEST_PART 64

/* [s][0]: shift by stride s, [s][1]: by twice it; four byte-indexed tables */
static u32 vr_shift_table[2][2][4][256];
static bool vr_shift_ready;

static u32 vr_crc_zeros(u32 crc, u32 n)
{
	u64 c = crc;

	while (n >= 8) {
		c = vr_crc_u64(c, 0);
		n -= 8;
	}
	while (n--)
		c = vr_crc_u8((u32)c, 0);
	return (u32)c;
}

/* Built on first use; idempotent, published with release/acquire so that a
 * second thread (or CPU) never reads a half-built table. */
static void vr_shift_init(void)
{
	u32 st, t, k, b, bit;

	for (st = 0; st < 2; st++)
		for (t = 0; t < 2; t++) {
			u32 basis[32];

			for (bit = 0; bit < 32; bit++)
				basis[bit] = vr_crc_zeros(1u << bit, vr_crc_strides[st] * (t + 1));
			for (k = 0; k < 4; k++)
				for (b = 0; b < 256; b++) {
					u32 v = 0;

					for (bit = 0; bit < 8; bit++)
						if (b & (1u << bit))
							v ^= basis[8 * k + bit];
					vr_shift_table[st][t][k][b] = v;
				}
		}
	__atomic_store_n(&vr_shift_ready, true, __ATOMIC_RELEASE);
}

static u32 vr_shift(u32 st, u32 t, u32 v)
{
	const u32 (*tab)[256] = vr_shift_table[st][t];

	return tab[0][v & 0xFF] ^ tab[1][(v >> 8) & 0xFF] ^ tab[2][(v >> 16) & 0xFF] ^
	       tab[3][v >> 24];
}

static u32 vr_crc32c_update_hw(u32 crc, const void *data, u32 len)
{
	const u8 *p = data;
	u32 st;

	if (!__atomic_load_n(&vr_shift_ready, __ATOMIC_ACQUIRE))
		vr_shift_init();
	for (st = 0; st < 2; st++) {
		const u32 stride = vr_crc_strides[st];

		while (len >= 3 * stride) {
			u64 a = crc, b = 0, c = 0;

			vr_crc_three(p, stride, &a, &b, &c);
			crc = vr_shift(st, 1, (u32)a) ^ vr_shift(st, 0, (u32)b) ^ (u32)c;
			p += 3 * stride;
			len -= 3 * stride;
		}
	}
	return vr_crc_chain(crc, p, len);
}

#ifndef __KERNEL__
#include <immintrin.h>
/*
 * In user space with PCLMUL: three equal parts of any length (a multiple of
 * 8 up to VR_FOLD_MAX), so a frame's payload is one pass of three chains
 * instead of fixed blocks and a long single-chain tail.  shift(v, n) is
 * crc32q(0, clmul(v, K(n))) with K(n) = x^(8n-33) mod P, bit-reflected:
 * the carry-less product of two reflected 32-bit values is v*K*x (one
 * place off), and crc32q(0, t) multiplies t by x^32, so together v*x^(8n).
 */
#define VR_FOLD_MIN VR_CRC_SHORTEST_PART /* shorter parts: the join costs more than it saves */
#define VR_FOLD_MAX 4096

/* vr_fold_k[j] = K(8j) for j = 1 .. 2 * VR_FOLD_MAX / 8 */
static u32 vr_fold_k[2 * VR_FOLD_MAX / 8 + 1];
static bool vr_fold_ready;

static void vr_fold_init(void)
{
	u32 v = 1; /* x^31, reflected: K(8) */
	u32 j, s;

	for (j = 1; j <= 2 * VR_FOLD_MAX / 8; j++) {
		vr_fold_k[j] = v;
		for (s = 0; s < 64; s++) /* times x^64: the next 8 bytes */
			v = (v >> 1) ^ ((v & 1) ? 0x82F63B78u : 0);
	}
	__atomic_store_n(&vr_fold_ready, true, __ATOMIC_RELEASE);
}

__attribute__((target("pclmul")))
static u32 vr_crc32c_update_pclmul(u32 crc, const void *data, u32 len)
{
	const u8 *p = data;

	if (!__atomic_load_n(&vr_fold_ready, __ATOMIC_ACQUIRE))
		vr_fold_init();
	while (len >= 3 * VR_FOLD_MIN) {
		u32 n = len / 24 * 8;
		u64 a = crc, b = 0, c = 0, t;
		__m128i ta, tb;

		if (n > VR_FOLD_MAX)
			n = VR_FOLD_MAX;
		vr_crc_three(p, n, &a, &b, &c);
		ta = _mm_clmulepi64_si128(_mm_cvtsi32_si128((int)(u32)a),
					  _mm_cvtsi32_si128((int)vr_fold_k[2 * n / 8]), 0);
		tb = _mm_clmulepi64_si128(_mm_cvtsi32_si128((int)(u32)b),
					  _mm_cvtsi32_si128((int)vr_fold_k[n / 8]), 0);
		t = (u64)_mm_cvtsi128_si64(_mm_xor_si128(ta, tb));
		crc = (u32)vr_crc_u64(0, t) ^ (u32)c;
		p += 3 * n;
		len -= 3 * n;
	}
	return vr_crc_chain(crc, p, len);
}

/*
 * In user space with AVX-512 VPCLMULQDQ: carry-less folding (Intel's "Fast
 * CRC Computation Using PCLMULQDQ", reflected form), four 128-bit lanes per
 * register and four registers, so a 1428-byte payload is five steps of four
 * independent multiply chains where the crc32 instruction, one 8-byte step a
 * cycle, is at its limit.  A 128-bit lane L moved forward by D bits becomes
 * clmul(L.lo, k(D + 32)) ^ clmul(L.hi, k(D - 32)), k(n) = x^n mod P
 * bit-reflected and shifted left by one.  The initial CRC enters XORed into
 * the first four bytes (the CRC is linear); the last 16 folded bytes end
 * through two crc32q, and what is left through the instruction chain.
 */
#define VR_VFOLD_MIN 256
#define VR_K(lo, hi) _mm512_broadcast_i32x4(_mm_set_epi64x((long long)(hi), (long long)(lo)))

__attribute__((target("avx512f,vpclmulqdq")))
static inline __m512i vr_vfold(__m512i x, __m512i k, __m512i next)
{
	return _mm512_ternarylogic_epi64(_mm512_clmulepi64_epi128(x, k, 0x00),
					 _mm512_clmulepi64_epi128(x, k, 0x11), next, 0x96);
}

__attribute__((target("pclmul")))
static inline __m128i vr_fold128(__m128i x, __m128i k, __m128i next)
{
	return _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(x, k, 0x00),
					   _mm_clmulepi64_si128(x, k, 0x11)), next);
}

__attribute__((target("avx512f,vpclmulqdq,pclmul,sse4.2")))
static u32 vr_crc32c_update_vpclmul(u32 crc, const void *data, u32 len)
{
	const u8 *p = data;
	__m512i a0, a1, a2, a3, k;
	__m128i x, k1;
	u64 c;

	if (len < VR_VFOLD_MIN)
		return vr_crc32c_update_pclmul(crc, data, len);
	a0 = _mm512_xor_si512(_mm512_loadu_si512((const void *)p), _mm512_zextsi128_si512(_mm_cvtsi32_si128((int)crc)));
	a1 = _mm512_loadu_si512((const void *)(p + 64));
	a2 = _mm512_loadu_si512((const void *)(p + 128));
	a3 = _mm512_loadu_si512((const void *)(p + 192));
	p += 256;
	len -= 256;
	k = VR_K(0xdcb17aa4ull, 0xb9e02b86ull); /* k(2080), k(2016): 256 bytes on */
	while (len >= 256) {
		a0 = vr_vfold(a0, k, _mm512_loadu_si512((const void *)p));
		a1 = vr_vfold(a1, k, _mm512_loadu_si512((const void *)(p + 64)));
		a2 = vr_vfold(a2, k, _mm512_loadu_si512((const void *)(p + 128)));
		a3 = vr_vfold(a3, k, _mm512_loadu_si512((const void *)(p + 192)));
		p += 256;
		len -= 256;
	}
	/* The four registers into one, each moved on by its own distance at
	 * once (a tree, not a chain of dependent folds: the end of a short
	 * payload is latency, not throughput). */
	k = VR_K(0x740eef02ull, 0x9e4addf8ull); /* k(544), k(480): 64 bytes on */
	a3 = _mm512_ternarylogic_epi64(
		vr_vfold(a0, VR_K(0xa87ab8a8ull, 0xab7aff2aull), a3), /* 192 bytes on */
		vr_vfold(a1, VR_K(0x6992cea2ull, 0x0d3b6092ull), _mm512_setzero_si512()), /* 128 */
		vr_vfold(a2, k, _mm512_setzero_si512()), 0x96);
	while (len >= 64) {
		a3 = vr_vfold(a3, k, _mm512_loadu_si512((const void *)p));
		p += 64;
		len -= 64;
	}
	/* The register's four lanes into one, likewise, then 16 bytes at a time. */
	k1 = _mm_set_epi64x((long long)0x14cd00bd6ull, (long long)0xf20c0dfeull); /* k(160), k(96) */
	x = _mm_xor_si128(
		vr_fold128(_mm512_extracti32x4_epi32(a3, 0),
			   _mm_set_epi64x((long long)0x1d82c63daull, (long long)0x1c291d04ull), /* 48 bytes on */
			   _mm512_extracti32x4_epi32(a3, 3)),
		vr_fold128(_mm512_extracti32x4_epi32(a3, 1),
			   _mm_set_epi64x((long long)0x0ba4fc28eull, (long long)0x1384aa63aull), /* 32 */
			   vr_fold128(_mm512_extracti32x4_epi32(a3, 2), k1, _mm_setzero_si128())));
	/* Clean upper vector state before the SSE code the caller runs (and
	 * the kernel saves on every switch): without it engine_bench's frames
	 * took 145-152 ns in some runs and 196-228 ns in others. */
	_mm256_zeroupper();
	while (len >= 16) {
		x = vr_fold128(x, k1, _mm_loadu_si128((const __m128i *)p));
		p += 16;
		len -= 16;
	}
	c = _mm_crc32_u64(0, (u64)_mm_cvtsi128_si64(x));
	c = _mm_crc32_u64(c, (u64)_mm_extract_epi64(x, 1));
	return vr_crc_chain((u32)c, p, len);
}
#endif

static bool vr_crc_can(enum vr_crc32c_impl impl)
{
	switch (impl) {
	case VR_CRC32C_PORTABLE:
		return true;
#ifdef __KERNEL__
	case VR_CRC32C_HW_TABLES:
		return boot_cpu_has(X86_FEATURE_XMM4_2);
	default:
		return false;
#else
	case VR_CRC32C_HW_TABLES:
		return __builtin_cpu_supports("sse4.2");
	case VR_CRC32C_HW_PCLMUL:
		return __builtin_cpu_supports("sse4.2") && __builtin_cpu_supports("pclmul");
	case VR_CRC32C_HW_VPCLMUL:
		return __builtin_cpu_supports("sse4.2") && __builtin_cpu_supports("pclmul") &&
		       __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("vpclmulqdq");
	default:
		return false;
#endif
	}
}

static u32 vr_crc_run(enum vr_crc32c_impl impl, u32 crc, const void *data, u32 len)
{
	switch (impl) {
#ifndef __KERNEL__
	case VR_CRC32C_HW_PCLMUL:
		return vr_crc32c_update_pclmul(crc, data, len);
	case VR_CRC32C_HW_VPCLMUL:
		return vr_crc32c_update_vpclmul(crc, data, len);
#endif
	case VR_CRC32C_HW_TABLES:
		return vr_crc32c_update_hw(crc, data, len);
	default:
		return vr_crc32c_update_portable(crc, data, len);
	}
}

bool vr_crc32c_update_with(enum vr_crc32c_impl impl, u32 crc, const void *data, u32 len,
			   u32 *out)
{
	if (!vr_crc_can(impl))
		return false;
	*out = vr_crc_run(impl, crc, data, len);
	return true;
}

/* The fastest this CPU can run, chosen once.  Below three parts of the
 * shortest length either instruction path splits into, both are one chain:
 * every frame's header (86 bytes) goes straight there. */
u32 vr_crc32c_update(u32 crc, const void *data, u32 len)
{
	static int impl = -1;
	int which = __atomic_load_n(&impl, __ATOMIC_RELAXED);

	if (which < 0) {
		which = vr_crc_can(VR_CRC32C_HW_VPCLMUL) ? VR_CRC32C_HW_VPCLMUL :
			vr_crc_can(VR_CRC32C_HW_PCLMUL) ? VR_CRC32C_HW_PCLMUL :
			vr_crc_can(VR_CRC32C_HW_TABLES) ? VR_CRC32C_HW_TABLES :
							  VR_CRC32C_PORTABLE;
		__atomic_store_n(&impl, which, __ATOMIC_RELAXED);
	}
	if (which != VR_CRC32C_PORTABLE && len < 3 * VR_CRC_SHORTEST_PART)
		return vr_crc_chain(crc, data, len);
	return vr_crc_run((enum vr_crc32c_impl)which, crc, data, len);
}
#else
bool vr_crc32c_update_with(enum vr_crc32c_impl impl, u32 crc, const void *data, u32 len,
			   u32 *out)
{
	if (impl != VR_CRC32C_PORTABLE)
		return false;
	*out = vr_crc32c_update_portable(crc, data, len);
	return true;
}

u32 vr_crc32c_update(u32 crc, const void *data, u32 len)
{
	return vr_crc32c_update_portable(crc, data, len);
}
#endif
