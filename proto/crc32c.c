// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * CRC32C (Castagnoli).  Hand-written on purpose: the identical code must
 * build in the kernel and in user space, and the simulator must be
 * bit-for-bit deterministic.  Two implementations of one function:
 *   - portable slicing-by-8 (eight 256-entry tables, 8 bytes per step),
 *     used everywhere, including the kernel;
 *   - in user space on x86-64 with SSE4.2, the crc32 instruction, chosen
 *     at run time.  Same results; the tests compare the two.
 * The CRC is on every frame's whole payload, so its speed is the engine's
 * speed: byte-at-a-time tables measured 43% of a transfer's CPU time.
 */
#include "crc32c.h"

static u32 vr_crc_table[8][256];
static bool vr_crc_ready;

/* Built on first use; idempotent so a benign race writes identical values. */
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
	vr_crc_ready = true;
}

u32 vr_crc32c_update_portable(u32 crc, const void *data, u32 len)
{
	const u8 *p = data;

	if (!vr_crc_ready)
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

#if !defined(__KERNEL__) && defined(__x86_64__)
__attribute__((target("sse4.2")))
static u32 vr_crc32c_update_sse42(u32 crc, const void *data, u32 len)
{
	const u8 *p = data;
	u64 c = crc;

	while (len >= 8) {
		u64 v;

		memcpy(&v, p, 8);
		c = __builtin_ia32_crc32di(c, v);
		p += 8;
		len -= 8;
	}
	while (len--)
		c = __builtin_ia32_crc32qi((u32)c, *p++);
	return (u32)c;
}

u32 vr_crc32c_update(u32 crc, const void *data, u32 len)
{
	static int hw = -1;

	if (hw < 0)
		hw = __builtin_cpu_supports("sse4.2") ? 1 : 0;
	return hw ? vr_crc32c_update_sse42(crc, data, len) :
		    vr_crc32c_update_portable(crc, data, len);
}
#else
u32 vr_crc32c_update(u32 crc, const void *data, u32 len)
{
	return vr_crc32c_update_portable(crc, data, len);
}
#endif
