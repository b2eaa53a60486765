// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * vb_net.c - the wire side.  Receive: a packet_type handler feeds whole
 * frames (Ethernet header included) to the engine.  Transmit: the engine's
 * xmit callback builds an skb whose linear part is the header and whose
 * fragments are the granted pages themselves (zero copy); a ubuf_info
 * holds a reference on each region until the stack is done with the
 * pages (or has copied them: veth forwarding and packet taps call
 * skb_orphan_frags, which copies and releases us early).  Small frames
 * (at most about half of VB_BUNDLE_MAX) to one peer are instead copied
 * into a bundle (proto/wire.h): one skb for many.
 */
#include <linux/etherdevice.h>
#include <linux/if_ether.h>
#include <linux/mm.h>
#include <linux/rcupdate.h>
#include <linux/skbuff.h>
#include <linux/slab.h>

#include "vb.h"

struct vb_zc {
	struct ubuf_info ubuf;
	u32 nregions;
	struct vb_region *region[VR_MAX_FRAGS];
};

/* Called once the last skb sharing the ubuf_info lets go of the pages. */
static void vb_zc_callback(struct sk_buff *skb, struct ubuf_info *uarg, bool success)
{
	struct vb_zc *zc = container_of(uarg, struct vb_zc, ubuf);
	struct vb_region *region[VR_MAX_FRAGS];
	u32 i, n;

	if (!refcount_dec_and_test(&uarg->refcnt))
		return;
	rcu_read_lock(); /* module exit waits for this section (synchronize_rcu) */
	n = zc->nregions;
	for (i = 0; i < n; i++)
		region[i] = zc->region[i];
	kfree(zc);
	/* The registration's own reference keeps each count above zero. */
	for (i = 0; i < n; i++)
		refcount_dec(&region[i]->refs);
	atomic_dec(&vb.zc_inflight);
	wake_up_all(&vb.zc_wq);
	rcu_read_unlock();
}

/* Pages a fragment spans. */
static u32 vb_frag_pages(const struct vb_region *r, const struct vr_frag *fr)
{
	u64 start = r->first_off + fr->off;

	if (!fr->len)
		return 0;
	return (u32)(((start + fr->len - 1) >> PAGE_SHIFT) - (start >> PAGE_SHIFT) + 1);
}

static bool vb_frag_ok(const struct vr_frag *fr)
{
	const struct vb_region *r = fr->mem;

	return r && fr->off <= r->len && fr->len <= r->len - fr->off;
}

/* An skb holding the frame's headers, with linear room for `payload` more bytes. */
static struct sk_buff *vb_skb_with_hdr(struct net_device *dev, const struct vr_frame *f, u32 payload)
{
	unsigned int hr = LL_RESERVED_SPACE(dev);
	struct sk_buff *skb;

	skb = alloc_skb(hr + f->hdr_len + payload + dev->needed_tailroom, GFP_ATOMIC);
	if (!skb)
		return NULL;
	skb_reserve(skb, hr);
	skb_put_data(skb, f->hdr, f->hdr_len);
	return skb;
}

/* Fallback when the fragments need more than MAX_SKB_FRAGS pages: copy. */
static struct sk_buff *vb_build_copy(struct net_device *dev, const struct vr_frame *f)
{
	struct sk_buff *skb;
	u32 i;

	skb = vb_skb_with_hdr(dev, f, f->len - f->hdr_len);
	if (!skb)
		return NULL;
	for (i = 0; i < f->nfrags; i++) {
		const struct vr_frag *fr = &f->frag[i];

		if (vb_mem_ops.copy_out(fr->mem, fr->off, skb_put(skb, fr->len), fr->len)) {
			kfree_skb(skb);
			return NULL;
		}
	}
	vb.xmit_copies++;
	return skb;
}

static struct sk_buff *vb_build_zerocopy(struct net_device *dev, const struct vr_frame *f)
{
	struct sk_buff *skb;
	struct vb_zc *zc;
	int nr = 0;
	u32 i;

	skb = vb_skb_with_hdr(dev, f, 0);
	if (!skb)
		return NULL;
	if (!f->nfrags)
		return skb;

	zc = kmalloc(sizeof(*zc), GFP_ATOMIC);
	if (!zc) {
		kfree_skb(skb);
		return NULL;
	}
	zc->nregions = 0;
	for (i = 0; i < f->nfrags; i++) {
		struct vb_region *r = f->frag[i].mem;

		refcount_inc(&r->refs);
		zc->region[zc->nregions++] = r;
	}
	zc->ubuf.callback = vb_zc_callback;
	refcount_set(&zc->ubuf.refcnt, 1);
	zc->ubuf.flags = SKBFL_ZEROCOPY_FRAG;
	atomic_inc(&vb.zc_inflight);
	/* From here kfree_skb() runs the callback, which drops the references. */
	skb_zcopy_init(skb, &zc->ubuf);

	for (i = 0; i < f->nfrags; i++) {
		const struct vr_frag *fr = &f->frag[i];
		struct vb_region *r = fr->mem;
		u64 pos = r->first_off + fr->off;
		u32 left = fr->len;

		while (left) {
			struct page *page = r->pages[pos >> PAGE_SHIFT];
			u32 poff = (u32)(pos & ~PAGE_MASK);
			u32 n = min_t(u32, left, PAGE_SIZE - poff);

			get_page(page);
			skb_fill_page_desc(skb, nr++, page, poff, n);
			skb->len += n;
			skb->data_len += n;
			skb->truesize += n;
			pos += n;
			left -= n;
		}
	}
	return skb;
}

/* Bundles are capped so that their skb stays an order-1 allocation. */
#define VB_BUNDLE_MAX 7000u

static u32 vb_bundle_size(void)
{
	return min_t(u32, ETH_HLEN + vb.mtu, VB_BUNDLE_MAX);
}

static void vb_skb_set_frame(struct sk_buff *skb, struct net_device *dev)
{
	skb->dev = dev;
	skb->protocol = htons(vb.ethertype);
	skb_reset_mac_header(skb);
	skb_set_network_header(skb, ETH_HLEN);
}

/* Under vb.lock: no more frames join the open bundle; the encoder says
 * which bytes of its skb go out (one frame alone goes out plain). */
void vb_bundle_close(void)
{
	struct sk_buff *skb = vb.bundle;
	struct vr_bundle_span span;

	if (!skb)
		return;
	vb.bundle = NULL;
	if (!vr_bundle_close(&vb.bundle_writer, &span)) {
		/* nothing joined (its one frame failed to copy): send nothing */
		__skb_unlink(skb, &vb.txq);
		kfree_skb(skb);
		return;
	}
	skb_put(skb, span.off + span.len);
	skb_pull(skb, span.off);
	vb_skb_set_frame(skb, skb->dev);
	if (span.count > 1)
		vb.tx_bundles++;
}

/*
 * Copies a small frame into the open bundle, or into a new one if it is
 * full or for another peer.  0: queued; -ENOMEM: no bundle skb (send the
 * frame alone); -EFAULT: its pages could not be read (the frame is lost).
 */
static int vb_bundle_add(struct net_device *dev, const struct vr_frame *f)
{
	struct sk_buff *skb;
	u32 size = vb_bundle_size();

	if (vb.bundle && !vr_bundle_joins(&vb.bundle_writer, f))
		vb_bundle_close();
	if (!vb.bundle) {
		skb = alloc_skb(LL_RESERVED_SPACE(dev) + size + dev->needed_tailroom, GFP_ATOMIC);
		if (!skb)
			return -ENOMEM;
		skb_reserve(skb, LL_RESERVED_SPACE(dev));
		skb->dev = dev;
		/* The encoder writes into the tailroom; vb_bundle_close puts it. */
		vr_bundle_open(&vb.bundle_writer, skb->data, size, f);
		__skb_queue_tail(&vb.txq, skb);
		vb.bundle = skb;
	}
	return vr_bundle_append(&vb.bundle_writer, f, &vb_mem_ops) ? -EFAULT : 0;
}

/* Engine callback, under vb.lock: build the frame, queue it for vb_unlock(). */
int vb_xmit(void *ctx, const struct vr_frame *f)
{
	struct net_device *dev = vb.dev;
	struct sk_buff *skb;
	u32 i, pages = 0, total = f->hdr_len;

	if (vb.stopping || !vb.attached)
		return -ENODEV;
	if (f->nfrags > VR_MAX_FRAGS)
		return -EINVAL;
	for (i = 0; i < f->nfrags; i++) {
		if (!vb_frag_ok(&f->frag[i]))
			return -EINVAL;
		pages += vb_frag_pages(f->frag[i].mem, &f->frag[i]);
		total += f->frag[i].len;
	}
	if (total != f->len || f->hdr_len < ETH_HLEN)
		return -EINVAL;
	if (vr_bundle_wanted(vb_bundle_size(), f->len)) {
		int rc = vb_bundle_add(dev, f);

		if (rc == -EFAULT) {
			vb.xmit_drops++;
			return rc; /* lost on the wire: the protocol recovers */
		}
		if (!rc)
			return 0;
	}
	/* Frames leave in the engine's order: this one goes after the bundle. */
	vb_bundle_close();
	if (pages > MAX_SKB_FRAGS)
		skb = vb_build_copy(dev, f);
	else
		skb = vb_build_zerocopy(dev, f);
	if (!skb) {
		vb.xmit_drops++;
		return -ENOMEM; /* lost on the wire: the protocol recovers */
	}
	vb_skb_set_frame(skb, dev);
	__skb_queue_tail(&vb.txq, skb);
	return 0;
}

/* packet_type handler for our EtherType on vb.dev (softirq). */
int vb_rcv(struct sk_buff *skb, struct net_device *dev, struct packet_type *pt,
	   struct net_device *orig_dev)
{
	const u8 *frame;
	u32 len;

	skb = skb_share_check(skb, GFP_ATOMIC);
	if (!skb)
		return NET_RX_DROP;
	if (!skb_mac_header_was_set(skb) || skb_linearize(skb))
		goto drop;
	frame = skb_mac_header(skb);
	if (frame < skb->head || frame > skb->data)
		goto drop;
	len = (u32)(skb_tail_pointer(skb) - frame);
	if (len < ETH_HLEN)
		goto drop;
	vb_lock();
	if (!vb.stopping)
		vr_engine_input(vb.eng, frame, len, vb_now());
	vb_unlock();
	consume_skb(skb);
	return NET_RX_SUCCESS;
drop:
	kfree_skb(skb);
	return NET_RX_DROP;
}

/* The bound device is going away: let go of it (we serve nothing after). */
static int vb_netdev_event(struct notifier_block *nb, unsigned long event, void *ptr)
{
	struct net_device *dev = netdev_notifier_info_to_dev(ptr);

	/* Unregistering the notifier replays UNREGISTER for every device:
	 * only a device still bound is news.
	 */
	if (event == NETDEV_UNREGISTER && dev == vb.dev && READ_ONCE(vb.attached)) {
		pr_warn(VB_NAME ": %s is being unregistered: no more traffic\n", dev->name);
		vb_net_detach();
	}
	return NOTIFY_DONE;
}

/* Takes over the reference dev_get_by_name gave. */
int vb_net_attach(struct net_device *dev)
{
	int rc;

	vb.dev = dev;
	vb.attached = true;
	vb.ptype.type = htons(vb.ethertype);
	vb.ptype.dev = dev;
	vb.ptype.func = vb_rcv;
	dev_add_pack(&vb.ptype);
	vb.netdev_nb.notifier_call = vb_netdev_event;
	rc = register_netdevice_notifier(&vb.netdev_nb);
	if (rc) {
		vb_net_detach();
		return rc;
	}
	return 0;
}

/*
 * Idempotent.  Skbs are built under vb.lock and sent inside an RCU read
 * section that starts before the lock is dropped (vb_unlock), so after
 * synchronize_net() nobody hands vb.dev a frame any more.
 */
void vb_net_detach(void)
{
	bool was;

	spin_lock_bh(&vb.lock);
	was = vb.attached;
	vb.attached = false;
	spin_unlock_bh(&vb.lock);
	if (!was)
		return;
	dev_remove_pack(&vb.ptype); /* waits for running handlers */
	synchronize_net();
	dev_put(vb.dev);
}
