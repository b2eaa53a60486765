// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * file.c - /dev/vmrdma's file operations: an open file is a context like
 * one of vmrdmad's frontends.  VR_IOC_CTL answers HELLO, OPEN_EP,
 * CLOSE_EP, REG, DEREG and LIMITS in place (status and text like
 * vmrdmad's replies); VR_IOC_KICK consumes the mmap'd request ring;
 * release gives back everything the file had.
 */
#include "vmrdma_front.h"
#include <linux/eventfd.h>
#include <linux/mm.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/vmalloc.h>

unsigned int vrf_max_ring_size = 1024;
module_param_named(max_ring_size, vrf_max_ring_size, uint, 0444);
MODULE_PARM_DESC(max_ring_size, "largest ring (entries) a file may ask for at HELLO");

void vrf_refuse(struct vr_ctl_msg *reply, int status, const char *why)
{
	reply->status = status;
	strscpy(reply->text, why, sizeof(reply->text));
}

/* A vrf_chan_call error as a reply. */
void vrf_refuse_call(struct vr_ctl_msg *reply, int err)
{
	if (err == -ETIMEDOUT)
		vrf_refuse(reply, err, "the vmrdma backend did not answer in 10 s");
	else if (err == -ESHUTDOWN)
		vrf_refuse(reply, err, "the vmrdma backend disconnected");
	else
		vrf_refuse(reply, err, "cannot reach the vmrdma backend");
}

/* f->lock held. */
static struct vrf_ep *vrf_ep_find(struct vrf_file *f, u16 id)
{
	struct vrf_ep *e;

	list_for_each_entry(e, &f->eps, node)
		if (e->id == id)
			return e;
	return NULL;
}

/* f->lock held. */
bool vrf_ep_owned(struct vrf_file *f, u16 ep)
{
	return vrf_ep_find(f, ep) != NULL;
}

void vrf_file_free(struct kref *ref)
{
	kfree(container_of(ref, struct vrf_file, ref));
}

static int vrf_open(struct inode *inode, struct file *filp)
{
	struct vrf_file *f = kzalloc(sizeof(*f), GFP_KERNEL);

	if (!f)
		return -ENOMEM;
	kref_init(&f->ref);
	mutex_init(&f->ctl_lock);
	mutex_init(&f->req_lock);
	spin_lock_init(&f->lock);
	INIT_LIST_HEAD(&f->eps);
	INIT_LIST_HEAD(&f->conns);
	INIT_LIST_HEAD(&f->regions);
	INIT_LIST_HEAD(&f->wait_node);
	filp->private_data = f;
	return 0;
}

static void vrf_hello(struct vrf_file *f, const struct vr_ctl_msg *msg, struct vr_ctl_msg *reply)
{
	struct vr_ring_shared *sh;
	struct eventfd_ctx *efd;
	bool connected;
	u64 want = msg->arg[0] ? msg->arg[0] : 256;
	u32 size, mtu, epoch;
	u8 mac[6];
	size_t len;
	void *ring;
	int i;

	if (f->hello) {
		vrf_refuse(reply, -EPROTO, "hello twice");
		return;
	}
	spin_lock(&vrf.lock);
	connected = vrf.connected;
	epoch = vrf.epoch;
	memcpy(mac, vrf.mac, sizeof(mac));
	mtu = vrf.mtu;
	spin_unlock(&vrf.lock);
	if (!connected) {
		vrf_refuse(reply, -ENODEV, "no vmrdma backend connected");
		return;
	}
	while (want > vrf_max_ring_size && want > VR_RING_MIN_SIZE)
		want >>= 1; /* stays a power of two */
	size = want > VR_RING_MAX_SIZE ? 0 : (u32)want;
	if (!vr_ring_size_ok(size)) {
		vrf_refuse(reply, -EINVAL, "ring size must be a power of two from 2 to 4096");
		return;
	}
	if (msg->arg[1] > INT_MAX) {
		vrf_refuse(reply, -EBADF, "arg1 is not an eventfd");
		return;
	}
	efd = eventfd_ctx_fdget((int)msg->arg[1]);
	if (IS_ERR(efd)) {
		vrf_refuse(reply, (int)PTR_ERR(efd), "arg1 is not an eventfd");
		return;
	}
	len = PAGE_ALIGN(vr_ring_bytes(size));
	ring = vmalloc_user(len);
	if (!ring) {
		eventfd_ctx_put(efd);
		vrf_refuse(reply, -ENOMEM, "cannot create the shared ring");
		return;
	}
	sh = ring;
	vr_ring_init(sh, size);
	f->ring = ring;
	f->ring_len = len;
	f->size = size;
	f->sh = sh;
	f->reqs = (struct vr_ring_req *)((char *)ring + vr_ring_req_off());
	f->rsps = (struct vr_ring_rsp *)((char *)ring + vr_ring_rsp_off(size));
	f->efd = efd;
	f->epoch = epoch;
	smp_store_release(&f->hello, true);

	reply->arg[0] = size;
	for (i = 0; i < 6; i++)
		reply->arg[1] |= (u64)mac[i] << (8 * i);
	reply->arg[2] = mtu;
	reply->arg[3] = len;
}

static void vrf_open_ep(struct vrf_file *f, const struct vr_ctl_msg *msg, struct vr_ctl_msg *reply)
{
	struct vr_ring_req req;
	struct vr_ring_rsp rsp;
	struct vrf_ep *e;
	u32 max_eps, max_weight;
	u64 w;
	bool owned;
	int err;

	if (msg->arg[0] > 0xffff) {
		vrf_refuse(reply, -EINVAL, "endpoint id out of range");
		return;
	}
	spin_lock(&vrf.lock);
	max_eps = vrf.max_eps;
	max_weight = vrf.max_weight;
	spin_unlock(&vrf.lock);
	spin_lock(&f->lock);
	owned = vrf_ep_owned(f, (u16)msg->arg[0]);
	spin_unlock(&f->lock);
	if (owned) {
		vrf_refuse(reply, -EEXIST, "endpoint already open");
		return;
	}
	if (f->nr_eps >= max_eps) {
		snprintf(reply->text, sizeof(reply->text), "limit: %u endpoints per frontend", max_eps);
		reply->status = -ENOSPC;
		return;
	}
	e = kzalloc(sizeof(*e), GFP_KERNEL);
	if (!e) {
		vrf_refuse(reply, -ENOMEM, "out of memory");
		return;
	}
	e->id = (u16)msg->arg[0];
	w = msg->arg[1] ? msg->arg[1] : 1;
	if (w > max_weight)
		w = max_weight;
	memset(&req, 0, sizeof(req));
	req.opcode = VR_RING_OPEN_EP;
	req.ep = e->id;
	req.operand = w;
	req.mask = msg->arg[2] != 0;
	err = vrf_chan_call(f->epoch, &req, &rsp);
	if (err || rsp.status) {
		kfree(e);
		if (err)
			vrf_refuse_call(reply, err);
		else
			vrf_refuse(reply, rsp.status, "the backend cannot open the endpoint");
		return;
	}
	spin_lock(&f->lock);
	list_add_tail(&e->node, &f->eps);
	f->nr_eps++;
	spin_unlock(&f->lock);
}

/*
 * Unlink endpoint `id` with its connections, and its regions onto `regs`;
 * returns the endpoint (NULL if not f's).
 */
static struct vrf_ep *vrf_ep_unlink(struct vrf_file *f, u16 id, struct list_head *regs)
{
	struct vrf_region *r, *rn;
	struct vrf_conn *c, *cn;
	struct vrf_ep *e;

	spin_lock(&f->lock);
	e = vrf_ep_find(f, id);
	if (e) {
		list_del(&e->node);
		f->nr_eps--;
		list_for_each_entry_safe(c, cn, &f->conns, node) {
			if (c->ep == id) {
				list_del(&c->node);
				kfree(c);
			}
		}
		list_for_each_entry_safe(r, rn, &f->regions, node) {
			if (r->ep == id) {
				list_move_tail(&r->node, regs);
				f->nr_regions--;
				f->reg_bytes -= r->len;
			}
		}
	}
	spin_unlock(&f->lock);
	return e;
}

/*
 * Close endpoint e at the backend (it closes its connections and fails its
 * operations), then DEREG its regions and free them.  *live is cleared once
 * the backend is gone or silent, so later steps do not wait for it again.
 * Returns CLOSE_EP's outcome.
 */
static int vrf_ep_close(struct vrf_file *f, struct vrf_ep *e, struct list_head *regs, bool *live)
{
	struct vrf_region *r, *rn;
	struct vr_ring_req req;
	struct vr_ring_rsp rsp;
	int ret = -ESHUTDOWN, st;

	if (*live) {
		memset(&req, 0, sizeof(req));
		req.opcode = VR_RING_CLOSE_EP;
		req.ep = e->id;
		ret = vrf_chan_call(f->epoch, &req, &rsp);
		if (ret)
			*live = false;
		else
			ret = rsp.status;
	}
	list_for_each_entry_safe(r, rn, regs, node) {
		list_del(&r->node);
		st = vrf_region_drop(f, r, *live);
		if (st == -ETIMEDOUT || st == -ESHUTDOWN)
			*live = false;
	}
	kfree(e);
	return ret;
}

static void vrf_close_ep(struct vrf_file *f, const struct vr_ctl_msg *msg, struct vr_ctl_msg *reply)
{
	LIST_HEAD(regs);
	struct vrf_ep *e = NULL;
	bool live;
	int st;

	if (msg->arg[0] <= 0xffff)
		e = vrf_ep_unlink(f, (u16)msg->arg[0], &regs);
	if (!e) {
		vrf_refuse(reply, -ENOENT, "not your endpoint");
		return;
	}
	live = vrf_chan_live(f->epoch);
	st = vrf_ep_close(f, e, &regs, &live);
	/* Closed here either way; a vanished backend has nothing open. */
	if (st == -ETIMEDOUT)
		vrf_refuse_call(reply, st);
	else if (st && st != -ESHUTDOWN)
		vrf_refuse(reply, st, "closed; the backend answered an error");
}

static void vrf_limits(struct vr_ctl_msg *reply)
{
	spin_lock(&vrf.lock);
	reply->arg[0] = vrf.max_eps;
	reply->arg[1] = vrf.max_regs;
	reply->arg[2] = vrf.max_bytes;
	reply->arg[4] = vrf.max_weight;
	spin_unlock(&vrf.lock);
	reply->arg[3] = min_t(u32, vrf_max_ring_size, VR_RING_MAX_SIZE);
}

static long vrf_ioctl_ctl(struct vrf_file *f, void __user *arg)
{
	struct vr_ctl_msg msg, reply;

	if (copy_from_user(&msg, arg, sizeof(msg)))
		return -EFAULT;
	memset(&reply, 0, sizeof(reply));
	reply.magic = VR_CTL_MAGIC;
	reply.version = VR_CTL_VERSION;
	reply.type = msg.type;
	reply.seq = msg.seq;
	if (mutex_lock_killable(&f->ctl_lock))
		return -EINTR;
	if (msg.magic != VR_CTL_MAGIC) {
		vrf_refuse(&reply, -EPROTO, "bad control message magic");
	} else if (msg.version != VR_CTL_VERSION) {
		vrf_refuse(&reply, -EPROTO, "control protocol version is not 1");
	} else if (msg.type != VR_CTL_HELLO && msg.type != VR_CTL_ADMIN_LIST &&
		   msg.type != VR_CTL_ADMIN_SET && !f->hello) {
		vrf_refuse(&reply, -EPROTO, "say hello first");
	} else {
		switch (msg.type) {
		case VR_CTL_HELLO:
			vrf_hello(f, &msg, &reply);
			break;
		case VR_CTL_OPEN_EP:
			vrf_open_ep(f, &msg, &reply);
			break;
		case VR_CTL_CLOSE_EP:
			vrf_close_ep(f, &msg, &reply);
			break;
		case VR_CTL_REG:
			vrf_ctl_reg(f, &msg, &reply);
			break;
		case VR_CTL_DEREG:
			vrf_ctl_dereg(f, &msg, &reply);
			break;
		case VR_CTL_LIMITS:
			vrf_limits(&reply);
			break;
		case VR_CTL_ADMIN_LIST:
		case VR_CTL_ADMIN_SET:
			vrf_refuse(&reply, -EOPNOTSUPP, "administration is done in dom0");
			break;
		default:
			snprintf(reply.text, sizeof(reply.text), "unknown control message type %u",
				 msg.type);
			reply.status = -EINVAL;
			break;
		}
	}
	mutex_unlock(&f->ctl_lock);
	if (copy_to_user(arg, &reply, sizeof(reply)))
		return -EFAULT;
	return 0;
}

static long vrf_ioctl(struct file *filp, unsigned int cmd, unsigned long arg)
{
	struct vrf_file *f = filp->private_data;

	switch (cmd) {
	case VR_IOC_CTL:
		return vrf_ioctl_ctl(f, (void __user *)arg);
	case VR_IOC_KICK:
		if (!smp_load_acquire(&f->hello))
			return -EINVAL;
		return vrf_file_consume(f);
	default:
		return -ENOTTY;
	}
}

/* The ring at offset 0, shared, at most its length.  No lock: see vmrdma_front.h. */
static int vrf_mmap(struct file *filp, struct vm_area_struct *vma)
{
	struct vrf_file *f = filp->private_data;

	if (!smp_load_acquire(&f->hello))
		return -EINVAL;
	if (vma->vm_pgoff != 0 || !(vma->vm_flags & VM_SHARED) ||
	    vma->vm_end - vma->vm_start > f->ring_len)
		return -EINVAL;
	return remap_vmalloc_range(vma, f->ring, 0);
}

/*
 * Close or process exit: responses to the file's pending operations are
 * dropped from now on; its endpoints are closed and its regions
 * deregistered at the backend (bounded waits), then everything is freed.
 * mmaps hold the file, so the ring is no longer mapped here.
 */
static int vrf_release(struct inode *inode, struct file *filp)
{
	struct vrf_file *f = filp->private_data;
	struct vrf_region *r, *rn;
	struct vrf_conn *c, *cn;
	LIST_HEAD(regs);
	struct vrf_ep *e;
	bool live;

	mutex_lock(&f->ctl_lock);
	mutex_lock(&f->req_lock);
	spin_lock(&f->lock);
	f->dead = true;
	spin_unlock(&f->lock);
	mutex_unlock(&f->req_lock);
	vrf_chan_unwait(f);

	live = f->hello && vrf_chan_live(f->epoch);
	for (;;) {
		spin_lock(&f->lock);
		e = list_first_entry_or_null(&f->eps, struct vrf_ep, node);
		spin_unlock(&f->lock);
		if (!e)
			break;
		vrf_ep_unlink(f, e->id, &regs);
		vrf_ep_close(f, e, &regs, &live);
	}
	/* Every region belongs to an endpoint closed above; defensive. */
	spin_lock(&f->lock);
	list_splice_init(&f->regions, &regs);
	list_for_each_entry_safe(c, cn, &f->conns, node) {
		list_del(&c->node);
		kfree(c);
	}
	spin_unlock(&f->lock);
	list_for_each_entry_safe(r, rn, &regs, node) {
		list_del(&r->node);
		if (vrf_region_drop(f, r, live) == -ETIMEDOUT)
			live = false;
	}
	if (f->efd)
		eventfd_ctx_put(f->efd);
	vfree(f->ring);
	mutex_unlock(&f->ctl_lock);
	kref_put(&f->ref, vrf_file_free);
	return 0;
}

const struct file_operations vrf_fops = {
	.owner = THIS_MODULE,
	.open = vrf_open,
	.release = vrf_release,
	.unlocked_ioctl = vrf_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	.mmap = vrf_mmap,
	.llseek = noop_llseek,
};
