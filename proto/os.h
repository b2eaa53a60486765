/* SPDX-License-Identifier: GPL-2.0 OR MIT */
/*
 * os.h - the only seam between the protocol core and its environment.
 *
 * The protocol files compile unchanged inside a Linux kernel module and in
 * user space.  They may use only what this header provides: fixed-width
 * integers, bool, memcpy/memset/memcmp and errno constants.
 */
#ifndef VR_OS_H
#define VR_OS_H

#ifdef __KERNEL__
#include <linux/types.h>
#include <linux/string.h>
#include <linux/errno.h>
#include <linux/kernel.h>
#include <linux/bitops.h>
#else
#include <stdint.h>
#include <stddef.h>
#include <string.h>
#include <errno.h>
#include <stdbool.h>
typedef uint8_t u8;
typedef uint16_t u16;
typedef uint32_t u32;
typedef uint64_t u64;
typedef int32_t s32;
typedef int64_t s64;
#endif

#define VR_U64_MAX ((u64)~(u64)0)

/* Big-endian accessors written with shifts: alignment- and host-order-free. */
static inline void vr_put_be16(u8 *p, u16 v)
{
	p[0] = (u8)(v >> 8);
	p[1] = (u8)v;
}

static inline void vr_put_be32(u8 *p, u32 v)
{
	p[0] = (u8)(v >> 24);
	p[1] = (u8)(v >> 16);
	p[2] = (u8)(v >> 8);
	p[3] = (u8)v;
}

static inline void vr_put_be64(u8 *p, u64 v)
{
	vr_put_be32(p, (u32)(v >> 32));
	vr_put_be32(p + 4, (u32)v);
}

static inline u16 vr_get_be16(const u8 *p)
{
	return (u16)(((u16)p[0] << 8) | p[1]);
}

static inline u32 vr_get_be32(const u8 *p)
{
	return ((u32)p[0] << 24) | ((u32)p[1] << 16) | ((u32)p[2] << 8) | p[3];
}

static inline u64 vr_get_be64(const u8 *p)
{
	return ((u64)vr_get_be32(p) << 32) | vr_get_be32(p + 4);
}

/* Serial-number arithmetic for 32-bit PSNs (RFC 1982 style). */
static inline bool vr_psn_lt(u32 a, u32 b)
{
	return (s32)(a - b) < 0;
}

static inline bool vr_psn_le(u32 a, u32 b)
{
	return (s32)(a - b) <= 0;
}

/* A branch the hot path almost never takes; a function kept out of it. */
#define vr_unlikely(x) __builtin_expect(!!(x), 0)
#define vr_noinline __attribute__((__noinline__)) /* the kernel defines noinline */

/* Index of the lowest set bit of x (x != 0). */
static inline unsigned int vr_ctz64(u64 x)
{
#ifdef __KERNEL__
	return __ffs64(x);
#else
	return (unsigned int)__builtin_ctzll(x);
#endif
}

/* A compile-time check of an ABI, in C and in C++. */
#ifdef __cplusplus
#define VR_STATIC_ASSERT(c, m) static_assert(c, m)
#else
#define VR_STATIC_ASSERT(c, m) _Static_assert(c, m)
#endif

#endif /* VR_OS_H */
