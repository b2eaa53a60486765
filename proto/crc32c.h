/* SPDX-License-Identifier: GPL-2.0 OR MIT */
#ifndef VR_CRC32C_H
#define VR_CRC32C_H
#include "os.h"

/*
 * CRC32C (Castagnoli, reflected poly 0x82F63B78).  Streaming form:
 *   crc = vr_crc32c_update(VR_CRC32C_INIT, a, n); crc = update(crc, b, m);
 *   result = vr_crc32c_final(crc);
 */
#define VR_CRC32C_INIT 0xFFFFFFFFu

u32 vr_crc32c_update(u32 crc, const void *data, u32 len);
/* The table-driven version, always available (tests compare the two). */
u32 vr_crc32c_update_portable(u32 crc, const void *data, u32 len);

static inline u32 vr_crc32c_final(u32 crc)
{
	return crc ^ 0xFFFFFFFFu;
}

/* One-shot convenience. */
static inline u32 vr_crc32c(const void *data, u32 len)
{
	return vr_crc32c_final(vr_crc32c_update(VR_CRC32C_INIT, data, len));
}

#endif
