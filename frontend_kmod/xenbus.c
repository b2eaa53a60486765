// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * xenbus.c - the xenbus frontend for device type "vmrdma": one device per
 * domain.  Backend InitWait: allocate, initialise and grant the shared
 * ring, bind an event channel, publish them, Initialised.  Backend
 * Connected: read its NIC and limits, Connected.  Backend Closing, Closed
 * or gone, or remove(): fail everything outstanding, end the ring's
 * grants, Closed.
 */
#include "vmrdma_front.h"
#include <linux/gfp.h>
#include <linux/interrupt.h>
#include <linux/mm.h>
#include <xen/events.h>
#include <xen/xenbus.h>

static irqreturn_t vrf_irq(int irq, void *data)
{
	schedule_work(&vrf.work);
	return IRQ_HANDLED;
}

/* state_lock held: unbind, stop the work, end the ring's grants. */
static void vrf_ring_teardown(struct xenbus_device *dev)
{
	if (vrf.irq > 0)
		unbind_from_irqhandler(vrf.irq, &vrf); /* closes the channel */
	else if (vrf.evtchn)
		xenbus_free_evtchn(dev, vrf.evtchn);
	vrf.irq = 0;
	vrf.evtchn = 0;
	cancel_work_sync(&vrf.work);
	if (vrf.ring) {
		spin_lock(&vrf.lock);
		vrf.sh = NULL;
		vrf.reqs = NULL;
		vrf.rsps = NULL;
		spin_unlock(&vrf.lock);
		/* Grants still mapped by the backend end (and free) later. */
		xenbus_teardown_ring(&vrf.ring, vrf.ring_pages, vrf.ring_refs);
	}
}

/* state_lock held: the backend is gone or going; fail what is outstanding. */
static void vrf_disconnect(struct xenbus_device *dev)
{
	bool was;

	spin_lock(&vrf.lock);
	was = vrf.connected;
	vrf.connected = false;
	spin_unlock(&vrf.lock);
	vrf_ring_teardown(dev);
	vrf_chan_fail_all();
	if (was)
		dev_info(&dev->dev, "backend disconnected\n");
}

static int vrf_publish(struct xenbus_device *dev)
{
	struct xenbus_transaction xbt;
	const char *what;
	char key[24];
	unsigned int i;
	int err;

again:
	err = xenbus_transaction_start(&xbt);
	if (err) {
		xenbus_dev_fatal(dev, err, "starting transaction");
		return err;
	}
	what = VR_XEN_KEY_RING_SIZE;
	err = xenbus_printf(xbt, dev->nodename, VR_XEN_KEY_RING_SIZE, "%u", VRF_RING_SIZE);
	if (err)
		goto abort;
	what = VR_XEN_KEY_RING_PAGES;
	err = xenbus_printf(xbt, dev->nodename, VR_XEN_KEY_RING_PAGES, "%u", vrf.ring_pages);
	if (err)
		goto abort;
	what = "ring-ref";
	for (i = 0; i < vrf.ring_pages; i++) {
		snprintf(key, sizeof(key), VR_XEN_KEY_RING_REF, i);
		err = xenbus_printf(xbt, dev->nodename, key, "%u", vrf.ring_refs[i]);
		if (err)
			goto abort;
	}
	what = VR_XEN_KEY_EVTCHN;
	err = xenbus_printf(xbt, dev->nodename, VR_XEN_KEY_EVTCHN, "%u", vrf.evtchn);
	if (err)
		goto abort;
	err = xenbus_transaction_end(xbt, 0);
	if (err == -EAGAIN)
		goto again;
	if (err) {
		xenbus_dev_fatal(dev, err, "completing transaction");
		return err;
	}
	return 0;
abort:
	xenbus_transaction_end(xbt, 1);
	xenbus_dev_fatal(dev, err, "writing %s", what);
	return err;
}

/* state_lock held, backend InitWait. */
static int vrf_ring_setup(struct xenbus_device *dev)
{
	struct vr_ring_shared *sh;
	unsigned int i;
	int err;

	vrf.ring_pages = DIV_ROUND_UP(vr_ring_bytes(VRF_RING_SIZE), XEN_PAGE_SIZE);
	for (i = 0; i < VR_XEN_MAX_RING_PAGES; i++)
		vrf.ring_refs[i] = INVALID_GRANT_REF;
	/*
	 * Zeroed order-0 pages (alloc_pages_exact), granted; the header is
	 * written before the refs are published.  On failure ring is NULL.
	 */
	err = xenbus_setup_ring(dev, GFP_KERNEL, &vrf.ring, vrf.ring_pages, vrf.ring_refs);
	if (err) {
		vrf.ring = NULL;
		return err;
	}
	sh = vrf.ring;
	vr_ring_init(sh, VRF_RING_SIZE);
	vrf_chan_reset(sh);

	err = xenbus_alloc_evtchn(dev, &vrf.evtchn);
	if (err) {
		vrf.evtchn = 0;
		goto fail;
	}
	err = bind_evtchn_to_irqhandler(vrf.evtchn, vrf_irq, 0, "vmrdma", &vrf);
	if (err < 0) {
		xenbus_dev_fatal(dev, err, "binding the event channel");
		goto fail;
	}
	vrf.irq = err;
	err = vrf_publish(dev);
	if (err)
		goto fail;
	spin_lock(&vrf.lock);
	vrf.otherend_id = dev->otherend_id;
	spin_unlock(&vrf.lock);
	return xenbus_switch_state(dev, XenbusStateInitialised);
fail:
	vrf_ring_teardown(dev);
	return err;
}

static int vrf_parse_mac(const char *s, u8 mac[6])
{
	unsigned int b[6];
	int i;

	if (sscanf(s, "%x:%x:%x:%x:%x:%x", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5]) != 6)
		return -EINVAL;
	for (i = 0; i < 6; i++) {
		if (b[i] > 0xff)
			return -EINVAL;
		mac[i] = (u8)b[i];
	}
	return 0;
}

/* state_lock held, backend Connected, we Initialised. */
static void vrf_connect(struct xenbus_device *dev)
{
	unsigned long long max_bytes;
	u32 mtu, max_eps, max_regs, max_weight;
	u8 mac[6];
	char *s;
	int err;

	s = xenbus_read(XBT_NIL, dev->otherend, VR_XEN_KEY_MAC, NULL);
	if (IS_ERR(s)) {
		xenbus_dev_fatal(dev, (int)PTR_ERR(s), "reading %s/%s", dev->otherend,
				 VR_XEN_KEY_MAC);
		return;
	}
	err = vrf_parse_mac(s, mac);
	kfree(s);
	if (err) {
		xenbus_dev_fatal(dev, err, "parsing %s/%s", dev->otherend, VR_XEN_KEY_MAC);
		return;
	}
	mtu = xenbus_read_unsigned(dev->otherend, VR_XEN_KEY_MTU, 1500);
	max_eps = xenbus_read_unsigned(dev->otherend, VR_XEN_KEY_MAX_EPS, 16);
	max_regs = xenbus_read_unsigned(dev->otherend, VR_XEN_KEY_MAX_REGS, 64);
	max_weight = xenbus_read_unsigned(dev->otherend, VR_XEN_KEY_MAX_WEIGHT, 1024);
	if (xenbus_scanf(XBT_NIL, dev->otherend, VR_XEN_KEY_MAX_BYTES, "%llu", &max_bytes) != 1)
		max_bytes = 1ULL << 30;
	if (max_weight == 0)
		max_weight = 1;

	err = xenbus_switch_state(dev, XenbusStateConnected);
	if (err)
		return;
	spin_lock(&vrf.lock);
	memcpy(vrf.mac, mac, sizeof(mac));
	vrf.mtu = mtu;
	vrf.max_eps = max_eps;
	vrf.max_regs = max_regs;
	vrf.max_weight = max_weight;
	vrf.max_bytes = max_bytes;
	vrf.epoch++;
	vrf.connected = true;
	spin_unlock(&vrf.lock);
	dev_info(&dev->dev, "connected to backend domain %u: mac %pM mtu %u\n",
		 dev->otherend_id, mac, mtu);
	schedule_work(&vrf.work); /* anything the backend answered already */
}

static void vrf_backend_changed(struct xenbus_device *dev, enum xenbus_state backend_state)
{
	mutex_lock(&vrf.state_lock);
	if (vrf.xdev != dev)
		goto out;
	switch (backend_state) {
	case XenbusStateInitWait:
		if (dev->state == XenbusStateInitialising || dev->state == XenbusStateClosed)
			vrf_ring_setup(dev);
		break;
	case XenbusStateConnected:
		if (dev->state == XenbusStateInitialised)
			vrf_connect(dev);
		break;
	case XenbusStateClosing:
	case XenbusStateClosed:
	case XenbusStateUnknown:
		if (dev->state == XenbusStateInitialising && backend_state != XenbusStateClosing)
			break; /* nothing set up yet */
		vrf_disconnect(dev);
		if (dev->state != XenbusStateClosed)
			xenbus_frontend_closed(dev);
		break;
	default:
		break;
	}
out:
	mutex_unlock(&vrf.state_lock);
}

static int vrf_probe(struct xenbus_device *dev, const struct xenbus_device_id *id)
{
	int err = 0;

	mutex_lock(&vrf.state_lock);
	if (vrf.xdev) {
		err = -EBUSY;
		xenbus_dev_fatal(dev, err, "only one vmrdma device per domain (%s is in use)",
				 vrf.xdev->nodename);
	} else {
		vrf.xdev = dev;
	}
	mutex_unlock(&vrf.state_lock);
	return err;
}

static void vrf_remove(struct xenbus_device *dev)
{
	mutex_lock(&vrf.state_lock);
	if (vrf.xdev == dev) {
		vrf_disconnect(dev);
		vrf.xdev = NULL;
	}
	mutex_unlock(&vrf.state_lock);
}

static const struct xenbus_device_id vrf_ids[] = {
	{ VR_XEN_DEVICE_TYPE },
	{ "" }
};

static struct xenbus_driver vrf_driver = {
	.ids = vrf_ids,
	.probe = vrf_probe,
	.remove = vrf_remove,
	.otherend_changed = vrf_backend_changed,
	.not_essential = true,
};

int vrf_xenbus_register(void)
{
	return xenbus_register_frontend(&vrf_driver);
}

void vrf_xenbus_unregister(void)
{
	xenbus_unregister_driver(&vrf_driver);
}
