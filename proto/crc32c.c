// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * Software table-driven CRC32C.  Hand-written on purpose: the identical code
 * must build in the kernel (where lib/crc32c exists) and in user space
 * (where it does not), and the simulator must be bit-for-bit deterministic.
 * Hosts with hardware CRC can swap this file without touching the protocol.
 */
#include "crc32c.h"

static u32 vr_crc_table[256];
static bool vr_crc_ready;

/* Built on first use; idempotent so a benign race writes identical values. */
static void vr_crc_init(void)
{
	u32 i, j, c;

	for (i = 0; i < 256; i++) {
		c = i;
		for (j = 0; j < 8; j++)
			c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
		vr_crc_table[i] = c;
	}
	vr_crc_ready = true;
}

u32 vr_crc32c_update(u32 crc, const void *data, u32 len)
{
	const u8 *p = data;

	if (!vr_crc_ready)
		vr_crc_init();
	while (len--)
		crc = vr_crc_table[(crc ^ *p++) & 0xFF] ^ (crc >> 8);
	return crc;
}
