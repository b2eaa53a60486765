/* SPDX-License-Identifier: GPL-2.0 OR MIT */
/*
 * region.h - registered memory regions (the IOTLB).
 *
 * A region maps a key to (host memory handle, length, access, owner
 * endpoint).  The same 64-bit value serves as lkey and rkey:
 *
 *   key = random (48 bits, from the host's CSPRNG) << 16 | slot index
 *
 * Lookup is O(1) via the index; every registration draws fresh random bits
 * (never all zero, never the slot's previous key), so a guesser who knows
 * the slot still faces 2^48 values per try, and a stale key from a delayed
 * frame names a newer registration of the same slot only with probability
 * 2^-48.
 */
#ifndef VR_REGION_H
#define VR_REGION_H
#include "os.h"

#define VR_ACCESS_LOCAL_WRITE   0x1
#define VR_ACCESS_REMOTE_READ   0x2
#define VR_ACCESS_REMOTE_WRITE  0x4
#define VR_ACCESS_REMOTE_ATOMIC 0x8
#define VR_ACCESS_LOCAL_READ    0x0 /* always granted to the owner */
#define VR_ACCESS_ALL 0xF

/*
 * Memory access seam.  `mem` is the opaque handle given at registration
 * (a pointer for user hosts, a page vector for the kernel host).  All return
 * 0 or a negative errno.  crc32c continues a CRC32C state over the bytes.
 */
struct vr_mem_ops {
	int (*copy_in)(void *mem, u64 off, const void *src, u32 len);  /* write mem */
	int (*copy_out)(void *mem, u64 off, void *dst, u32 len);       /* read mem */
	u32 (*crc32c)(void *mem, u64 off, u32 len, u32 state);
	/* Optional: hands the bytes to fn in contiguous pieces, in order (the
	 * tag of an authenticated frame); without it the engine copies them out
	 * through a small buffer. */
	int (*walk)(void *mem, u64 off, u32 len, void (*fn)(void *arg, const u8 *p, u32 n),
		    void *arg);
};

/* Default ops for user hosts: mem is a plain pointer to the first byte. */
extern const struct vr_mem_ops vr_ptr_mem_ops;

enum { VR_REGION_FREE = 0, VR_REGION_VALID = 1 };

struct vr_region {
	void *mem;
	u64 len;
	u64 key;
	u32 access;
	u32 next_free;
	u16 ep;       /* owning endpoint index */
	u16 pd;       /* protection domain (0: every connection of the endpoint) */
	u8 state;
};

/*
 * Protection domains: a region bound to domain pd (1..) may be used only by
 * connections in that domain; a region of domain 0 (the default) by every
 * connection of its endpoint.  A connection is in at most one domain (0:
 * none).  The check takes the domain of the connection that uses the key,
 * or VR_PD_HOST for the host's own access (no connection: posting a
 * receive, reading a frontend's private data), which the domain does not
 * restrict.
 */
#define VR_PD_NONE 0u
#define VR_PD_HOST 0xFFFFFFFFu

struct vr_region_table {
	struct vr_region *slot;
	u32 cap;
	u32 free_head, free_tail; /* FIFO: oldest freed slot is reused first */
	u32 used;
	u32 (*rnd)(void *ctx);
	void *rnd_ctx;
};

#define VR_NO_SLOT 0xFFFFFFFFu
#define VR_KEY_IDX_BITS 16
#define VR_REGIONS_MAX (1u << VR_KEY_IDX_BITS)

/* slots must hold cap entries.  Returns 0 or -EINVAL (cap 0 or above
 * VR_REGIONS_MAX). */
int vr_region_table_init(struct vr_region_table *t, struct vr_region *slots, u32 cap,
			 u32 (*rnd)(void *ctx), void *rnd_ctx);

/*
 * Register.  Returns 0 and *key, or -EINVAL (len 0, unknown access bits,
 * NULL mem), -ENOSPC (table full).
 */
int vr_region_reg(struct vr_region_table *t, void *mem, u64 len, u32 access,
		  u16 ep, u64 *key);

/* Invalidate and free.  Returns 0, or -ENOENT if key names no live region. */
int vr_region_dereg(struct vr_region_table *t, u64 key);

/*
 * The single access check.  Validates together: key (index and random
 * bits), state, owner endpoint, protection domain (the using connection's
 * `pd` must be the region's, unless the region's is 0 or pd is
 * VR_PD_HOST), every bit of `access`, and off + len <= region length
 * without overflow.  len 0 is in bounds iff off <= length.  Returns 0 and
 * *out, or:
 *   -EACCES  key unknown / stale / freed / owned by another endpoint or
 *            bound to another protection domain
 *   -EPERM   region lacks a requested access right
 *   -ERANGE  range outside the region
 */
int vr_region_check_pd(const struct vr_region_table *t, u64 key, u16 ep, u32 pd, u32 access,
		       u64 off, u64 len, const struct vr_region **out);

/* The check for the host's own use (no connection): the domain is not asked. */
static inline int vr_region_check(const struct vr_region_table *t, u64 key, u16 ep, u32 access,
				  u64 off, u64 len, const struct vr_region **out)
{
	return vr_region_check_pd(t, key, ep, VR_PD_HOST, access, off, len, out);
}

/* Binds a live region to domain pd (0: back to its endpoint's).  0 or -ENOENT. */
int vr_region_set_pd(struct vr_region_table *t, u64 key, u16 pd);

#endif
