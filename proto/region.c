// SPDX-License-Identifier: GPL-2.0 OR MIT
/* region.c - region table: registration, key minting, the access check. */
#include "region.h"
#include "crc32c.h"

#define IDX_MASK ((u64)VR_REGIONS_MAX - 1)

static int ptr_copy_in(void *mem, u64 off, const void *src, u32 len)
{
	memcpy((u8 *)mem + off, src, len);
	return 0;
}

static int ptr_copy_out(void *mem, u64 off, void *dst, u32 len)
{
	memcpy(dst, (const u8 *)mem + off, len);
	return 0;
}

static u32 ptr_crc(void *mem, u64 off, u32 len, u32 st)
{
	return vr_crc32c_update(st, (const u8 *)mem + off, len);
}

static int ptr_walk(void *mem, u64 off, u32 len, void (*fn)(void *arg, const u8 *p, u32 n),
		    void *arg)
{
	fn(arg, (const u8 *)mem + off, len);
	return 0;
}

const struct vr_mem_ops vr_ptr_mem_ops = {
	.copy_in = ptr_copy_in,
	.copy_out = ptr_copy_out,
	.crc32c = ptr_crc,
	.walk = ptr_walk,
};

int vr_region_table_init(struct vr_region_table *t, struct vr_region *slots, u32 cap,
			 u32 (*rnd)(void *ctx), void *rnd_ctx)
{
	u32 i;

	if (!cap || cap > VR_REGIONS_MAX || !slots || !rnd)
		return -EINVAL;
	t->slot = slots;
	t->cap = cap;
	for (i = 0; i < cap; i++) {
		memset(&slots[i], 0, sizeof(slots[i]));
		slots[i].next_free = i + 1 < cap ? i + 1 : VR_NO_SLOT;
	}
	t->free_head = 0;
	t->free_tail = cap - 1;
	t->used = 0;
	t->rnd = rnd;
	t->rnd_ctx = rnd_ctx;
	return 0;
}

/* 48 fresh random bits above the index: never zero (key 0 never names a
 * region) and never the slot's previous key. */
static u64 mint_key(const struct vr_region_table *t, u32 idx, u64 old)
{
	u64 r = (u64)t->rnd(t->rnd_ctx) << 32 | t->rnd(t->rnd_ctx);
	u64 key = (r << VR_KEY_IDX_BITS) | idx;

	/* at most two steps, even for a host whose random is stuck */
	while (!(key >> VR_KEY_IDX_BITS) || key == old)
		key += (u64)1 << VR_KEY_IDX_BITS;
	return key;
}

int vr_region_reg(struct vr_region_table *t, void *mem, u64 len, u32 access,
		  u16 ep, u64 *key)
{
	struct vr_region *r;
	u32 idx;

	if (!mem || !len || (access & ~(u32)VR_ACCESS_ALL) || !key)
		return -EINVAL;
	if (t->free_head == VR_NO_SLOT)
		return -ENOSPC;
	idx = t->free_head;
	r = &t->slot[idx];
	t->free_head = r->next_free;
	if (t->free_head == VR_NO_SLOT)
		t->free_tail = VR_NO_SLOT;
	r->mem = mem;
	r->len = len;
	r->access = access;
	r->ep = ep;
	r->pd = VR_PD_NONE;
	r->key = mint_key(t, idx, r->key);
	r->next_free = VR_NO_SLOT;
	r->state = VR_REGION_VALID;
	t->used++;
	*key = r->key;
	return 0;
}

static struct vr_region *lookup(const struct vr_region_table *t, u64 key)
{
	u64 idx = key & IDX_MASK;
	struct vr_region *r;

	if (idx >= t->cap)
		return NULL;
	r = &t->slot[idx];
	if (r->state != VR_REGION_VALID || r->key != key)
		return NULL;
	return r;
}

int vr_region_dereg(struct vr_region_table *t, u64 key)
{
	struct vr_region *r = lookup(t, key);
	u32 idx;

	if (!r)
		return -ENOENT;
	idx = (u32)(key & IDX_MASK);
	r->state = VR_REGION_FREE;
	r->mem = NULL;
	r->len = 0;
	r->access = 0;
	r->next_free = VR_NO_SLOT;
	if (t->free_tail == VR_NO_SLOT)
		t->free_head = idx;
	else
		t->slot[t->free_tail].next_free = idx;
	t->free_tail = idx;
	t->used--;
	return 0;
}

int vr_region_set_pd(struct vr_region_table *t, u64 key, u16 pd)
{
	struct vr_region *r = lookup(t, key);

	if (!r)
		return -ENOENT;
	r->pd = pd;
	return 0;
}

int vr_region_check_pd(const struct vr_region_table *t, u64 key, u16 ep, u32 pd, u32 access,
		       u64 off, u64 len, const struct vr_region **out)
{
	const struct vr_region *r = lookup(t, key);

	if (!r || r->ep != ep)
		return -EACCES;
	/* Bound to a domain: only its connections (a key that leaked to
	 * another peer of the endpoint is as good as a wrong one). */
	if (r->pd != VR_PD_NONE && pd != VR_PD_HOST && pd != r->pd)
		return -EACCES;
	if ((r->access & access) != access)
		return -EPERM;
	/* off + len <= r->len, written so that nothing can wrap */
	if (off > r->len || len > r->len - off)
		return -ERANGE;
	if (out)
		*out = r;
	return 0;
}
