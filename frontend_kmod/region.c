// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * region.c - REG and DEREG: pin the application's pages, grant each to
 * the backend, hand it the refs through a directory of index pages
 * (proto/xen.h), and undo all of it only once the backend no longer maps
 * the pages.
 */
#include "vmrdma_front.h"
#include <linux/capability.h>
#include <linux/mm.h>
#include <linux/sched.h>
#include <linux/sched/mm.h>
#include <linux/sched/signal.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <xen/page.h>

#define VRF_WRITE_ACCESS (VR_ACCESS_LOCAL_WRITE | VR_ACCESS_REMOTE_WRITE | VR_ACCESS_REMOTE_ATOMIC)

/* f->lock held. */
struct vrf_region *vrf_region_find(struct vrf_file *f, u64 key)
{
	struct vrf_region *r;

	list_for_each_entry(r, &f->regions, node)
		if (r->key == key)
			return r;
	return NULL;
}

/*
 * End the data grants and unpin.  A grant the backend still maps is ended
 * later by the grant table (gnttab_end_foreign_access with no page takes
 * its own reference to the page until then), so unpinning now is safe:
 * the page is not reused while mapped.  Never pass the page itself: the
 * grant table would put_page() a page we only hold through FOLL_PIN.
 */
static void vrf_region_free(struct vrf_region *r)
{
	u32 i;

	for (i = 0; i < r->ngranted; i++) {
		gnttab_end_foreign_access(r->refs[i], NULL);
		if ((i & 1023) == 1023)
			cond_resched();
	}
	if (r->npinned)
		unpin_user_pages_dirty_lock(r->pages, r->npinned, r->writable);
	if (r->mm) {
		atomic64_sub(r->naccounted, &r->mm->pinned_vm);
		mmdrop(r->mm);
	}
	kvfree(r->refs);
	kvfree(r->pages);
	kfree(r);
}

/*
 * Forget a region already unlinked from f: DEREG it at the backend (if
 * tell_backend and the backend f talked to is still there), then free it.
 * Returns the call's error (-ETIMEDOUT, -ESHUTDOWN) or the backend's status.
 */
int vrf_region_drop(struct vrf_file *f, struct vrf_region *r, bool tell_backend)
{
	struct vr_ring_req req;
	struct vr_ring_rsp rsp;
	int ret = -ESHUTDOWN;

	if (tell_backend) {
		memset(&req, 0, sizeof(req));
		req.opcode = VR_RING_DEREG;
		req.ep = r->ep;
		req.lkey = r->key;
		ret = vrf_chan_call(f->epoch, &req, &rsp);
		if (!ret)
			ret = rsp.status;
	}
	vrf_region_free(r);
	return ret;
}

/*
 * Long-term pins count against RLIMIT_MEMLOCK in the caller's
 * mm->pinned_vm, as RDMA's ib_umem does: /dev/vmrdma is open to every user.
 */
static int vrf_account(struct vrf_region *r, u32 npages)
{
	unsigned long limit = rlimit(RLIMIT_MEMLOCK) >> PAGE_SHIFT;
	struct mm_struct *mm = current->mm;
	s64 pinned;

	pinned = atomic64_add_return(npages, &mm->pinned_vm);
	if ((u64)pinned > limit && !capable(CAP_IPC_LOCK)) {
		atomic64_sub(npages, &mm->pinned_vm);
		return -ENOMEM;
	}
	mmgrab(mm);
	r->mm = mm;
	r->naccounted = npages;
	return 0;
}

/* Pin [addr, addr + npages pages), writable if asked. */
static int vrf_pin(struct vrf_region *r, unsigned long start, u32 npages)
{
	unsigned int flags = FOLL_LONGTERM | (r->writable ? FOLL_WRITE : 0);
	int n;

	while (r->npinned < npages) {
		u32 chunk = min_t(u32, npages - r->npinned, 65536u);

		n = pin_user_pages_fast(start + (unsigned long)r->npinned * PAGE_SIZE, (int)chunk,
					flags, r->pages + r->npinned);
		if (n <= 0)
			return n ? n : -EFAULT;
		r->npinned += (u32)n;
		cond_resched();
	}
	return 0;
}

static int vrf_grant_data(struct vrf_region *r, domid_t domid, u32 npages)
{
	int ref;

	while (r->ngranted < npages) {
		ref = gnttab_grant_foreign_access(domid, xen_page_to_gfn(r->pages[r->ngranted]),
						  !r->writable);
		if (ref < 0)
			return ref;
		r->refs[r->ngranted++] = (grant_ref_t)ref;
		if ((r->ngranted & 1023) == 0)
			cond_resched();
	}
	return 0;
}

/* The directory and its index pages (granted read-only to the backend). */
struct vrf_dir {
	u32 nidx;
	struct page *dir;
	grant_ref_t dir_ref;
	struct page **idx;
	grant_ref_t *idx_ref;
};

/*
 * End the directory's grants: the backend unmapped them before answering;
 * if it did not answer, the grant table frees each page once it is
 * unmapped.  Pages never granted are freed here.
 */
static void vrf_dir_free(struct vrf_dir *d)
{
	u32 i;

	for (i = 0; i < d->nidx && d->idx; i++) {
		if (!d->idx[i])
			continue;
		if (d->idx_ref[i] != INVALID_GRANT_REF)
			gnttab_end_foreign_access(d->idx_ref[i], d->idx[i]);
		else
			__free_page(d->idx[i]);
	}
	if (d->dir) {
		if (d->dir_ref != INVALID_GRANT_REF)
			gnttab_end_foreign_access(d->dir_ref, d->dir);
		else
			__free_page(d->dir);
	}
	kfree(d->idx);
	kfree(d->idx_ref);
}

static int vrf_grant_page(domid_t domid, struct page *pg, grant_ref_t *ref)
{
	int r = gnttab_grant_foreign_access(domid, xen_page_to_gfn(pg), 1);

	if (r < 0)
		return r;
	*ref = (grant_ref_t)r;
	return 0;
}

static int vrf_dir_build(struct vrf_dir *d, const struct vrf_region *r, domid_t domid,
			 u32 npages)
{
	__le32 *p;
	u32 i, j, n;
	int err;

	d->nidx = vr_xen_index_pages(npages);
	d->dir_ref = INVALID_GRANT_REF;
	d->idx = kcalloc(d->nidx, sizeof(*d->idx), GFP_KERNEL);
	d->idx_ref = kcalloc(d->nidx, sizeof(*d->idx_ref), GFP_KERNEL);
	if (!d->idx || !d->idx_ref)
		return -ENOMEM;
	for (i = 0; i < d->nidx; i++)
		d->idx_ref[i] = INVALID_GRANT_REF;
	for (i = 0; i < d->nidx; i++) {
		d->idx[i] = alloc_page(GFP_KERNEL | __GFP_ZERO);
		if (!d->idx[i])
			return -ENOMEM;
		p = page_address(d->idx[i]);
		n = min_t(u32, npages - i * VR_XEN_REFS_PER_PAGE, VR_XEN_REFS_PER_PAGE);
		for (j = 0; j < n; j++)
			p[j] = cpu_to_le32(r->refs[i * VR_XEN_REFS_PER_PAGE + j]);
		err = vrf_grant_page(domid, d->idx[i], &d->idx_ref[i]);
		if (err)
			return err;
	}
	d->dir = alloc_page(GFP_KERNEL | __GFP_ZERO);
	if (!d->dir)
		return -ENOMEM;
	p = page_address(d->dir);
	for (i = 0; i < d->nidx; i++)
		p[i] = cpu_to_le32(d->idx_ref[i]);
	return vrf_grant_page(domid, d->dir, &d->dir_ref);
}

/* REG: arg0 = ep, arg1 = user address, arg2 = length, arg3 = access. */
void vrf_ctl_reg(struct vrf_file *f, const struct vr_ctl_msg *msg, struct vr_ctl_msg *reply)
{
	u64 addr = msg->arg[1], len = msg->arg[2], access = msg->arg[3];
	struct vrf_dir dir = { 0 };
	struct vr_ring_req req;
	struct vr_ring_rsp rsp;
	struct vrf_region *r;
	u32 max_regs, npages;
	u64 max_bytes, loff;
	domid_t domid;
	bool owned;
	int err;

	spin_lock(&f->lock);
	owned = msg->arg[0] <= 0xffff && vrf_ep_owned(f, (u16)msg->arg[0]);
	spin_unlock(&f->lock);
	spin_lock(&vrf.lock);
	max_regs = vrf.max_regs;
	max_bytes = vrf.max_bytes;
	domid = vrf.otherend_id;
	spin_unlock(&vrf.lock);

	if (!owned) {
		vrf_refuse(reply, -ENOENT, "not your endpoint");
		return;
	}
	if (len == 0) {
		vrf_refuse(reply, -EINVAL, "length must not be 0");
		return;
	}
	if (access & ~(u64)(VR_ACCESS_LOCAL_WRITE | VR_ACCESS_REMOTE_READ |
			    VR_ACCESS_REMOTE_WRITE | VR_ACCESS_REMOTE_ATOMIC)) {
		vrf_refuse(reply, -EINVAL, "unknown access bits");
		return;
	}
	if (addr + len < addr || addr + len > TASK_SIZE) {
		vrf_refuse(reply, -EINVAL, "address+length is outside user space");
		return;
	}
	loff = addr & ~PAGE_MASK;
	if ((loff + len + PAGE_SIZE - 1) / PAGE_SIZE > VR_XEN_MAX_REG_PAGES) {
		vrf_refuse(reply, -EINVAL, "region larger than 2^20 pages");
		return;
	}
	npages = vr_xen_reg_pages(loff, len);
	if (f->nr_regions >= max_regs) {
		snprintf(reply->text, sizeof(reply->text), "limit: %u regions per frontend", max_regs);
		reply->status = -ENOSPC;
		return;
	}
	if (len > max_bytes - min(max_bytes, f->reg_bytes)) {
		snprintf(reply->text, sizeof(reply->text), "limit: %llu registered bytes per frontend",
			 (unsigned long long)max_bytes);
		reply->status = -ENOSPC;
		return;
	}

	r = kzalloc(sizeof(*r), GFP_KERNEL);
	if (!r) {
		vrf_refuse(reply, -ENOMEM, "out of memory");
		return;
	}
	r->ep = (u16)msg->arg[0];
	r->len = len;
	r->writable = (access & VRF_WRITE_ACCESS) != 0;
	r->pages = kvcalloc(npages, sizeof(*r->pages), GFP_KERNEL);
	r->refs = kvcalloc(npages, sizeof(*r->refs), GFP_KERNEL);
	if (!r->pages || !r->refs) {
		vrf_region_free(r);
		vrf_refuse(reply, -ENOMEM, "out of memory");
		return;
	}
	err = vrf_account(r, npages);
	if (err) {
		vrf_refuse(reply, err, "RLIMIT_MEMLOCK: too many pinned pages");
		vrf_region_free(r);
		return;
	}
	err = vrf_pin(r, (unsigned long)(addr - loff), npages);
	if (err) {
		vrf_refuse(reply, err, r->writable ? "cannot pin the pages for writing" :
			   "cannot pin the pages");
		vrf_region_free(r);
		return;
	}
	err = vrf_grant_data(r, domid, npages);
	if (!err)
		err = vrf_dir_build(&dir, r, domid, npages);
	if (err) {
		vrf_dir_free(&dir);
		vrf_region_free(r);
		vrf_refuse(reply, err, err == -ENOMEM ? "out of memory" : "out of grant references");
		return;
	}

	memset(&req, 0, sizeof(req));
	req.opcode = VR_RING_REG;
	req.ep = r->ep;
	req.loff = loff;
	req.operand = len;
	req.swap = npages;
	req.tag = dir.dir_ref;
	req.mask = access;
	err = vrf_chan_call(f->epoch, &req, &rsp);
	/* The backend copied the refs and unmapped the directory before answering. */
	vrf_dir_free(&dir);
	if (err || rsp.status) {
		vrf_region_free(r);
		if (err)
			vrf_refuse_call(reply, err);
		else
			vrf_refuse(reply, rsp.status, "the backend refused the registration");
		return;
	}
	r->key = rsp.value;
	spin_lock(&f->lock);
	list_add_tail(&r->node, &f->regions);
	f->nr_regions++;
	f->reg_bytes += len;
	spin_unlock(&f->lock);
	reply->arg[0] = r->key;
}

/* DEREG: arg0 = key. */
void vrf_ctl_dereg(struct vrf_file *f, const struct vr_ctl_msg *msg, struct vr_ctl_msg *reply)
{
	struct vrf_region *r = NULL;
	int st;

	spin_lock(&f->lock);
	r = vrf_region_find(f, msg->arg[0]);
	if (r) {
		list_del(&r->node);
		f->nr_regions--;
		f->reg_bytes -= r->len;
	}
	spin_unlock(&f->lock);
	if (!r) {
		vrf_refuse(reply, -ENOENT, "not your region");
		return;
	}
	st = vrf_region_drop(f, r, vrf_chan_live(f->epoch));
	/* The region is gone here either way; a vanished backend maps nothing. */
	if (st == -ETIMEDOUT)
		vrf_refuse_call(reply, st);
	else if (st && st != -ESHUTDOWN)
		vrf_refuse(reply, st, "deregistered; the backend answered an error");
}
