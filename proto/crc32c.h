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
/* The table-driven version, always available. */
u32 vr_crc32c_update_portable(u32 crc, const void *data, u32 len);

/* The implementations vr_crc32c_update chooses among (crc32c.c says which
 * runs where), so that tests and benchmarks can run each. */
enum vr_crc32c_impl {
	VR_CRC32C_PORTABLE,
	VR_CRC32C_HW_TABLES, /* x86-64 crc32 instruction, fixed parts */
	VR_CRC32C_HW_PCLMUL, /* ... any part length, user space only */
	VR_CRC32C_HW_VPCLMUL, /* AVX-512 carry-less folding, 256 bytes a step, user space only */
};

/* Returns false, leaving *out alone, where this CPU or host cannot run it. */
bool vr_crc32c_update_with(enum vr_crc32c_impl impl, u32 crc, const void *data, u32 len,
			   u32 *out);

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
