// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * vb_grant.c - the IOTLB.  A registration (proto/xen.h) names a directory
 * page of index-page grant refs, each a page of data-page grant refs.  We
 * map the directory and index pages read-only one at a time, copy the refs
 * out and unmap them, then grant-map the data pages into pages from
 * gnttab_alloc_pages.  They are never vmapped (a PV dom0 cannot map a
 * foreign frame twice): the engine reaches them through vb_mem_ops, which
 * walk the page vector with page_address().  Unmapping waits until no skb
 * holds a region's pages any more.
 */
#include <linux/delay.h>
#include <linux/jiffies.h>
#include <linux/mm.h>
#include <linux/slab.h>
#include <linux/vmalloc.h>
#include <xen/grant_table.h>

#include "vb.h"
#include "crc32c.h"

#define VB_MAP_BATCH 32u

/* --------------------------------------------------------- memory ops */

static bool vb_range_ok(const struct vb_region *r, u64 off, u32 len)
{
	return off <= r->len && len <= r->len - off;
}

static int vb_copy_in(void *mem, u64 off, const void *src, u32 len)
{
	struct vb_region *r = mem;
	u64 pos = r->first_off + off;

	if (!r->writable)
		return -EPERM; /* mapped read-only: a write would fault */
	if (!vb_range_ok(r, off, len))
		return -ERANGE;
	while (len) {
		u32 poff = (u32)(pos & ~PAGE_MASK);
		u32 n = min_t(u32, len, PAGE_SIZE - poff);

		memcpy((u8 *)page_address(r->pages[pos >> PAGE_SHIFT]) + poff, src, n);
		src = (const u8 *)src + n;
		pos += n;
		len -= n;
	}
	return 0;
}

static int vb_copy_out(void *mem, u64 off, void *dst, u32 len)
{
	struct vb_region *r = mem;
	u64 pos = r->first_off + off;

	if (!vb_range_ok(r, off, len))
		return -ERANGE;
	while (len) {
		u32 poff = (u32)(pos & ~PAGE_MASK);
		u32 n = min_t(u32, len, PAGE_SIZE - poff);

		memcpy(dst, (const u8 *)page_address(r->pages[pos >> PAGE_SHIFT]) + poff, n);
		dst = (u8 *)dst + n;
		pos += n;
		len -= n;
	}
	return 0;
}

/* The bytes of a range page by page: its CRC, an authenticated frame's tag. */
static int vb_walk(void *mem, u64 off, u32 len, void (*fn)(void *arg, const u8 *p, u32 n),
		   void *arg)
{
	struct vb_region *r = mem;
	u64 pos = r->first_off + off;

	if (!vb_range_ok(r, off, len))
		return -ERANGE;
	while (len) {
		u32 poff = (u32)(pos & ~PAGE_MASK);
		u32 n = min_t(u32, len, PAGE_SIZE - poff);

		fn(arg, (const u8 *)page_address(r->pages[pos >> PAGE_SHIFT]) + poff, n);
		pos += n;
		len -= n;
	}
	return 0;
}

static void vb_crc_piece(void *arg, const u8 *p, u32 n)
{
	u32 *state = arg;

	*state = vr_crc32c_update(*state, p, n);
}

static u32 vb_crc(void *mem, u64 off, u32 len, u32 state)
{
	vb_walk(mem, off, len, vb_crc_piece, &state); /* out of range: state as it was */
	return state;
}

const struct vr_mem_ops vb_mem_ops = {
	.copy_in = vb_copy_in,
	.copy_out = vb_copy_out,
	.crc32c = vb_crc,
	.walk = vb_walk,
};

/* ------------------------------------------------------------ mapping */

/* Map one page of grant refs read-only, copy n of them out, unmap it. */
static int vb_read_refs(domid_t domid, u32 ref, u32 n, u32 *out)
{
	struct gnttab_map_grant_ref map;
	struct gnttab_unmap_grant_ref unmap;
	struct page *page;
	const __le32 *src;
	unsigned long addr;
	u32 i;
	int rc;

	if (n > VR_XEN_REFS_PER_PAGE)
		return -EINVAL;
	rc = gnttab_alloc_pages(1, &page);
	if (rc)
		return -ENOMEM;
	addr = (unsigned long)page_address(page);
	gnttab_set_map_op(&map, addr, GNTMAP_host_map | GNTMAP_readonly, ref, domid);
	map.status = GNTST_general_error; /* Xen writes it only if the hypercall runs */
	rc = gnttab_map_refs(&map, NULL, &page, 1);
	if (map.status != GNTST_okay) {
		gnttab_free_pages(1, &page);
		return -EFAULT; /* a bad grant ref is the frontend's error */
	}
	if (!rc) {
		src = page_address(page);
		for (i = 0; i < n; i++)
			out[i] = le32_to_cpu(READ_ONCE(src[i]));
	}
	gnttab_set_unmap_op(&unmap, addr, GNTMAP_host_map, map.handle);
	unmap.status = GNTST_general_error;
	if (gnttab_unmap_refs(&unmap, NULL, &page, 1) || unmap.status != GNTST_okay) {
		pr_err(VB_NAME ": dom%u: cannot unmap a registration index page: leaking it\n",
		       domid);
		return -EFAULT;
	}
	gnttab_free_pages(1, &page);
	return rc ? -EFAULT : 0;
}

/* The data-page refs of a registration, in order. */
static int vb_read_all_refs(domid_t domid, u32 dir_ref, u32 npages, u32 *refs)
{
	u32 nidx = vr_xen_index_pages(npages), i;
	u32 *idx;
	int rc;

	idx = kmalloc_array(nidx, sizeof(*idx), GFP_KERNEL);
	if (!idx)
		return -ENOMEM;
	rc = vb_read_refs(domid, dir_ref, nidx, idx);
	for (i = 0; !rc && i < nidx; i++) {
		u32 first = i * VR_XEN_REFS_PER_PAGE;

		rc = vb_read_refs(domid, idx[i], min(VR_XEN_REFS_PER_PAGE, npages - first),
				  refs + first);
	}
	kfree(idx);
	return rc;
}

/*
 * Unmap every mapped data page; false if Xen refused any (those pages stay
 * mapped).  Each page Xen did unmap forgets its handle at once, so a retry
 * (a zombie at unload) only asks for the ones still mapped.
 */
static bool vb_unmap_data(struct vb_region *r)
{
	struct gnttab_unmap_grant_ref *ops;
	struct page **pages;
	u32 *idx, i, j, n = 0;
	bool ok = true;

	if (!r->nmapped)
		return true;
	ops = kcalloc(VB_MAP_BATCH, sizeof(*ops), GFP_KERNEL);
	pages = kcalloc(VB_MAP_BATCH, sizeof(*pages), GFP_KERNEL);
	idx = kcalloc(VB_MAP_BATCH, sizeof(*idx), GFP_KERNEL);
	if (!ops || !pages || !idx) {
		ok = false;
		goto out;
	}
	for (i = 0; i <= r->npages; i++) {
		if (i < r->npages && r->handles[i] != VB_INVALID_HANDLE) {
			gnttab_set_unmap_op(&ops[n], (unsigned long)page_address(r->pages[i]),
					    GNTMAP_host_map, r->handles[i]);
			ops[n].status = GNTST_general_error;
			pages[n] = r->pages[i];
			idx[n++] = i;
		}
		if (n && (n == VB_MAP_BATCH || i == r->npages)) {
			if (gnttab_unmap_refs(ops, NULL, pages, n))
				ok = false;
			for (j = 0; j < n; j++) {
				if (ops[j].status != GNTST_okay) {
					ok = false;
					continue;
				}
				r->handles[idx[j]] = VB_INVALID_HANDLE;
				r->nmapped--;
				atomic_long_dec(&vb.mapped_pages);
			}
			n = 0;
		}
	}
out:
	kfree(ops);
	kfree(pages);
	kfree(idx);
	return ok && !r->nmapped;
}

static int vb_map_data(struct vb_region *r, const u32 *refs)
{
	struct gnttab_map_grant_ref *ops;
	u32 flags = GNTMAP_host_map | (r->writable ? 0 : GNTMAP_readonly);
	u32 base, j, n;
	int rc = 0;

	ops = kcalloc(VB_MAP_BATCH, sizeof(*ops), GFP_KERNEL);
	if (!ops)
		return -ENOMEM;
	for (base = 0; base < r->npages && !rc; base += n) {
		int hrc;

		n = min(VB_MAP_BATCH, r->npages - base);
		for (j = 0; j < n; j++) {
			gnttab_set_map_op(&ops[j],
					  (unsigned long)page_address(r->pages[base + j]),
					  flags, refs[base + j], r->domid);
			/* not kcalloc's 0 (GNTST_okay) if the hypercall never runs */
			ops[j].status = GNTST_general_error;
		}
		hrc = gnttab_map_refs(ops, NULL, &r->pages[base], n);
		for (j = 0; j < n; j++) {
			if (ops[j].status == GNTST_okay) {
				r->handles[base + j] = ops[j].handle;
				r->nmapped++;
				atomic_long_inc(&vb.mapped_pages);
			} else {
				rc = -EFAULT;
			}
		}
		if (hrc)
			rc = -EFAULT;
		cond_resched();
	}
	kfree(ops);
	return rc;
}

static void vb_region_free(struct vb_region *r)
{
	if (r->pages && r->npages && r->pages[0])
		gnttab_free_pages(r->npages, r->pages);
	kvfree(r->pages);
	kvfree(r->handles);
	kfree(r);
}

int vb_region_map(domid_t domid, u32 dir_ref, u32 npages, u32 first_off, u64 len,
		  bool writable, struct vb_region **out)
{
	struct vb_region *r;
	u32 *refs = NULL, i;
	int rc;

	if (!npages || npages > VR_XEN_MAX_REG_PAGES)
		return -EINVAL;
	r = kzalloc(sizeof(*r), GFP_KERNEL);
	if (!r)
		return -ENOMEM;
	INIT_LIST_HEAD(&r->node);
	refcount_set(&r->refs, 1);
	r->npages = npages;
	r->first_off = first_off;
	r->len = len;
	r->writable = writable;
	r->domid = domid;
	r->pages = kvcalloc(npages, sizeof(*r->pages), GFP_KERNEL);
	r->handles = kvmalloc_array(npages, sizeof(*r->handles), GFP_KERNEL);
	refs = kvmalloc_array(npages, sizeof(*refs), GFP_KERNEL);
	if (!r->pages || !r->handles || !refs) {
		rc = -ENOMEM;
		goto err;
	}
	for (i = 0; i < npages; i++)
		r->handles[i] = VB_INVALID_HANDLE;
	rc = vb_read_all_refs(domid, dir_ref, npages, refs);
	if (rc)
		goto err;
	if (gnttab_alloc_pages(npages, r->pages)) {
		memset(r->pages, 0, npages * sizeof(*r->pages));
		rc = -ENOMEM;
		goto err;
	}
	rc = vb_map_data(r, refs);
	if (rc) {
		if (!vb_unmap_data(r)) {
			pr_err(VB_NAME ": dom%u: cannot unmap a failed registration: leaking it\n",
			       domid);
			kvfree(refs);
			return rc;
		}
		goto err;
	}
	kvfree(refs);
	*out = r;
	return 0;
err:
	kvfree(refs);
	vb_region_free(r);
	return rc;
}

static bool vb_pages_idle(const struct vb_region *r)
{
	u32 i;

	for (i = 0; i < r->npages; i++)
		if (r->handles[i] != VB_INVALID_HANDLE && page_count(r->pages[i]) > 1)
			return false;
	return true;
}

/*
 * The engine no longer knows the region (vr_dereg_mr or vr_ep_close ran):
 * wait until no skb holds its pages, unmap and free it.  Returns -EBUSY if
 * the stack still held on at deadline (jiffies): the region then stays
 * mapped (never unmapped under the stack) and the caller parks it.
 */
int vb_region_release(struct vb_region *r, unsigned long deadline)
{
	long left = time_after(deadline, jiffies) ? (long)(deadline - jiffies) : 0;

	if (!wait_event_timeout(vb.zc_wq, refcount_read(&r->refs) == 1, left))
		return -EBUSY;
	/* skb_release_data runs our callback before it drops the frag refs. */
	while (!vb_pages_idle(r)) {
		if (time_after(jiffies, deadline))
			return -EBUSY;
		msleep(1);
	}
	if (!vb_unmap_data(r))
		return -EBUSY;
	vb_region_free(r);
	return 0;
}

/*
 * Release every region on list (taken off the engine and the frontend).
 * The regions share one VB_RELEASE_MS budget: teardown runs in the xenwatch
 * thread, which must not stall for VB_RELEASE_MS per region.
 */
void vb_regions_release(struct list_head *list, u32 *nregions, u32 *npages)
{
	unsigned long deadline = jiffies + msecs_to_jiffies(VB_RELEASE_MS);
	struct vb_region *r, *tmp;

	list_for_each_entry_safe(r, tmp, list, node) {
		u32 pages = r->npages;

		list_del_init(&r->node);
		if (vb_region_release(r, deadline)) {
			pr_warn(VB_NAME ": dom%u: region of %u pages still held by the network stack after %u ms: left mapped\n",
				r->domid, pages, VB_RELEASE_MS);
			spin_lock_bh(&vb.lock);
			list_add_tail(&r->node, &vb.zombies);
			vb.leaked_regions++;
			spin_unlock_bh(&vb.lock);
			continue;
		}
		if (nregions)
			(*nregions)++;
		if (npages)
			*npages += pages;
	}
}
