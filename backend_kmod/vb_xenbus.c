// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * vb_xenbus.c - the xenbus backend driver for device type "vmrdma"
 * (proto/xen.h).  Probe publishes the NIC and the limits and waits
 * (InitWait); when the frontend is Initialised we map its ring, check the
 * header once, bind its event channel and go Connected.  When the
 * frontend closes, disappears (Unknown: its domain is gone) or the driver
 * is removed, the frontend is torn down: interrupt unbound, work flushed,
 * endpoints closed in the engine (their operations fail and are answered),
 * regions unmapped once the network stack has let go of their pages, ring
 * unmapped.
 */
#include <linux/interrupt.h>
#include <linux/slab.h>
#include <xen/events.h>
#include <xen/xenbus.h>

#include "vb.h"

static int vb_publish(struct vb_fe *fe)
{
	struct xenbus_device *dev = fe->dev;
	int rc;

	rc = xenbus_printf(XBT_NIL, dev->nodename, VR_XEN_KEY_MAC, "%pM", vb.mac);
	if (!rc)
		rc = xenbus_printf(XBT_NIL, dev->nodename, VR_XEN_KEY_MTU, "%u", vb.mtu);
	if (!rc)
		rc = xenbus_printf(XBT_NIL, dev->nodename, VR_XEN_KEY_MAX_EPS, "%u", fe->svc.lim.endpoints);
	if (!rc)
		rc = xenbus_printf(XBT_NIL, dev->nodename, VR_XEN_KEY_MAX_REGS, "%u", fe->svc.lim.regions);
	if (!rc)
		rc = xenbus_printf(XBT_NIL, dev->nodename, VR_XEN_KEY_MAX_BYTES, "%llu",
				   fe->svc.lim.registered_bytes);
	if (!rc)
		rc = xenbus_printf(XBT_NIL, dev->nodename, VR_XEN_KEY_MAX_WEIGHT, "%u",
				   fe->svc.lim.max_weight);
	if (rc)
		xenbus_dev_fatal(dev, rc, "writing the backend's keys");
	return rc;
}

static irqreturn_t vb_irq(int irq, void *dev_id)
{
	struct vb_fe *fe = dev_id;

	atomic_set(&fe->eoi_pending, 1); /* the work sends the late EOI */
	if (!READ_ONCE(fe->stopping))
		queue_work(vb.wq, &fe->work);
	return IRQ_HANDLED;
}

static int vb_read_u32(struct xenbus_device *dev, const char *dir, const char *key, u32 *v)
{
	int rc = xenbus_scanf(XBT_NIL, dir, key, "%u", v);

	if (rc != 1) {
		rc = rc < 0 ? rc : -EINVAL;
		xenbus_dev_fatal(dev, rc, "reading %s/%s", dir, key);
		return rc;
	}
	return 0;
}

/* Map the ring, check its header, bind the event channel. */
static int vb_connect(struct vb_fe *fe)
{
	struct xenbus_device *dev = fe->dev;
	grant_ref_t refs[VR_XEN_MAX_RING_PAGES];
	struct vr_ring_shared *sh;
	u32 size, npages, evtchn, weight, i;
	char key[16];
	void *va;
	int rc, irq;

	rc = vb_read_u32(dev, dev->otherend, VR_XEN_KEY_RING_SIZE, &size);
	if (!rc)
		rc = vb_read_u32(dev, dev->otherend, VR_XEN_KEY_RING_PAGES, &npages);
	if (!rc)
		rc = vb_read_u32(dev, dev->otherend, VR_XEN_KEY_EVTCHN, &evtchn);
	if (rc)
		return rc;
	if (!vr_ring_size_ok(size) || !npages || npages > VR_XEN_MAX_RING_PAGES ||
	    vr_ring_bytes(size) > npages * VR_XEN_PAGE_SIZE) {
		xenbus_dev_fatal(dev, -EINVAL, "bad ring: size %u in %u page(s)", size, npages);
		return -EINVAL;
	}
	for (i = 0; i < npages; i++) {
		snprintf(key, sizeof(key), VR_XEN_KEY_RING_REF, i);
		rc = vb_read_u32(dev, dev->otherend, key, &refs[i]);
		if (rc)
			return rc;
	}
	fe->svc.admin_weight = 0;
	if (xenbus_scanf(XBT_NIL, dev->nodename, VR_XEN_KEY_WEIGHT, "%u", &weight) == 1)
		fe->svc.admin_weight = min_t(u32, weight, VR_WEIGHT_MAX);

	rc = vb_fe_ring_init(fe, size);
	if (rc) {
		xenbus_dev_fatal(dev, rc, "allocating the slot table");
		return rc;
	}
	rc = xenbus_map_ring_valloc(dev, refs, npages, &va);
	if (rc) {
		xenbus_dev_fatal(dev, rc, "mapping the ring");
		goto err_slots;
	}
	sh = va;
	if (!vr_ring_header_ok(sh, size)) {
		rc = -EPROTO;
		xenbus_dev_fatal(dev, rc, "ring header does not match ring-size %u", size);
		goto err_unmap;
	}
	/* From here on only our own copies of size and offsets are used. */
	fe->size = size;
	fe->shared = sh;
	fe->reqs = (struct vr_ring_req *)((u8 *)va + vr_ring_req_off());
	fe->rsps = (struct vr_ring_rsp *)((u8 *)va + vr_ring_rsp_off(size));
	fe->req_cons = 0;
	fe->rsp_prod_pvt = 0;
	VR_RING_WRITE(sh->rsp_prod, 0);
	VR_RING_WRITE(sh->state, VR_RING_STATE_OPEN);
	VR_RING_WRITE(sh->req_event, 1);
	atomic_set(&fe->eoi_pending, 0);

	spin_lock_bh(&vb.lock);
	fe->ring_va = va;
	fe->stopping = false;
	fe->broken = false;
	fe->tearing = false;
	fe->teardown_failed = 0;
	vb.mapped_rings++;
	spin_unlock_bh(&vb.lock);

	/* The work EOIs only once irq_bound is set: hold the mutex over both. */
	mutex_lock(&fe->irq_mutex);
	irq = bind_interdomain_evtchn_to_irqhandler_lateeoi(dev, evtchn, vb_irq, 0,
							    "vmrdma-back", fe);
	if (irq >= 0) {
		fe->irq = irq;
		fe->irq_bound = true;
	}
	mutex_unlock(&fe->irq_mutex);
	if (irq < 0) {
		rc = irq;
		xenbus_dev_fatal(dev, rc, "binding event channel %u", evtchn);
		spin_lock_bh(&vb.lock);
		fe->ring_va = NULL;
		fe->stopping = true;
		vb.mapped_rings--;
		spin_unlock_bh(&vb.lock);
		cancel_work_sync(&fe->work);
		goto err_unmap;
	}
	spin_lock_bh(&vb.lock);
	fe->notify = true;
	spin_unlock_bh(&vb.lock);
	return 0;

err_unmap:
	xenbus_unmap_ring_vfree(dev, va);
err_slots:
	vb_fe_ring_free(fe);
	return rc;
}

/* Undo vb_connect and everything the frontend built since.  Idempotent. */
static void vb_teardown(struct vb_fe *fe)
{
	struct vr_fe_slot *slots;
	u16 *free_slots;
	LIST_HEAD(regions);
	u32 neps = 0, nregs = 0, npages = 0, failed;
	void *va;

	if (!fe->ring_va)
		return;
	spin_lock_bh(&vb.lock);
	fe->stopping = true;   /* no new work from the interrupt, no accepts */
	fe->notify = false;
	spin_unlock_bh(&vb.lock);

	mutex_lock(&fe->irq_mutex);
	if (fe->irq_bound) {
		unbind_from_irqhandler(fe->irq, fe);
		fe->irq_bound = false;
	}
	mutex_unlock(&fe->irq_mutex);
	cancel_work_sync(&fe->work);

	vb_lock();
	vb_fe_close_all(fe, &regions, &neps);
	failed = fe->teardown_failed;
	vb_unlock(); /* DISCONNECTs go out */

	vb_regions_release(&regions, &nregs, &npages);

	spin_lock_bh(&vb.lock);
	va = fe->ring_va;
	fe->ring_va = NULL;
	slots = fe->svc.slots;
	free_slots = fe->svc.free_slots;
	fe->svc.slots = NULL;
	fe->svc.free_slots = NULL;
	fe->svc.size = 0;
	fe->svc.nfree = 0;
	vb.mapped_rings--;
	spin_unlock_bh(&vb.lock);
	kvfree(slots);
	kvfree(free_slots);
	xenbus_unmap_ring_vfree(fe->dev, va);

	pr_info(VB_NAME ": frontend dom%u gone: %u endpoints closed, %u regions (%u pages) unmapped, %u operations failed\n",
		fe->domid, neps, nregs, npages, failed);
}

/* Unlinks and frees a frontend that has nothing mapped or bound (any more). */
static void vb_fe_free(struct vb_fe *fe)
{
	spin_lock_bh(&vb.lock);
	list_del(&fe->node);
	vb.nfrontends--;
	spin_unlock_bh(&vb.lock);
	dev_set_drvdata(&fe->dev->dev, NULL);
	kfree(fe->svc.eps);
	kvfree(fe->svc.regions);
	kfree(fe);
}

static int vb_probe(struct xenbus_device *dev, const struct xenbus_device_id *id)
{
	struct vb_fe *fe;
	int rc;

	fe = kzalloc(sizeof(*fe), GFP_KERNEL);
	if (!fe) {
		xenbus_dev_fatal(dev, -ENOMEM, "allocating the frontend's state");
		return -ENOMEM;
	}
	fe->dev = dev;
	fe->domid = dev->otherend_id;
	fe->svc.eng = vb.eng;
	fe->svc.host.respond = vb_svc_respond;
	fe->svc.host.ctx = fe;
	fe->svc.lim.endpoints = min_t(u32, vb_max_endpoints, VB_ENG_ENDPOINTS);
	fe->svc.lim.regions = min_t(u32, vb_max_regions, VB_ENG_REGIONS);
	fe->svc.lim.registered_bytes = vb_max_bytes;
	fe->svc.lim.max_weight = vr_svc_clamp_weight(vb_max_weight);
	fe->svc.max_conns = clamp_t(u32, vb_max_conns, 1, VB_ENG_CONNS);
	fe->svc.max_ep_id = VB_ENG_ENDPOINTS;
	fe->svc.eps_cap = max_t(u32, fe->svc.lim.endpoints, 1);
	fe->svc.eps = kcalloc(fe->svc.eps_cap, sizeof(*fe->svc.eps), GFP_KERNEL);
	fe->svc.conns = fe->conns;
	fe->svc.conns_cap = VB_ENG_CONNS;
	fe->svc.regions_cap = max_t(u32, fe->svc.lim.regions, 1);
	fe->svc.regions = kvcalloc(fe->svc.regions_cap, sizeof(*fe->svc.regions), GFP_KERNEL);
	if (!fe->svc.eps || !fe->svc.regions) {
		kfree(fe->svc.eps);
		kvfree(fe->svc.regions);
		kfree(fe);
		xenbus_dev_fatal(dev, -ENOMEM, "allocating the frontend's state");
		return -ENOMEM;
	}
	INIT_LIST_HEAD(&fe->regions);
	INIT_LIST_HEAD(&fe->node);
	mutex_init(&fe->irq_mutex);
	INIT_WORK(&fe->work, vb_ring_work);
	fe->stopping = true; /* until connected */

	spin_lock_bh(&vb.lock);
	fe->id = vb.next_fe_id++;
	fe->svc.id = fe->id;
	if (!vb.next_fe_id)
		vb.next_fe_id = 1;
	list_add_tail(&fe->node, &vb.frontends);
	vb.nfrontends++;
	spin_unlock_bh(&vb.lock);
	dev_set_drvdata(&dev->dev, fe);

	rc = vb_publish(fe);
	if (!rc)
		rc = xenbus_switch_state(dev, XenbusStateInitWait);
	if (rc)
		vb_fe_free(fe);
	return rc;
}

static void vb_remove(struct xenbus_device *dev)
{
	struct vb_fe *fe = dev_get_drvdata(&dev->dev);

	if (!fe)
		return;
	vb_teardown(fe);
	vb_fe_free(fe);
}

static void vb_frontend_changed(struct xenbus_device *dev, enum xenbus_state state)
{
	struct vb_fe *fe = dev_get_drvdata(&dev->dev);

	if (!fe)
		return;
	switch (state) {
	case XenbusStateInitialising:
		if (dev->state == XenbusStateClosed && !vb_publish(fe))
			xenbus_switch_state(dev, XenbusStateInitWait); /* it came back */
		break;
	case XenbusStateInitialised:
	case XenbusStateConnected:
		if (dev->state == XenbusStateConnected || fe->ring_va)
			break;
		if (dev->state != XenbusStateInitWait)
			break; /* closing after an error: wait for the frontend to close */
		if (vb_connect(fe))
			break;
		xenbus_switch_state(dev, XenbusStateConnected);
		queue_work(vb.wq, &fe->work); /* requests posted before we looked */
		break;
	case XenbusStateClosing:
		vb_teardown(fe);
		xenbus_switch_state(dev, XenbusStateClosing);
		break;
	case XenbusStateClosed:
		vb_teardown(fe);
		xenbus_switch_state(dev, XenbusStateClosed);
		if (xenbus_dev_is_online(dev))
			break;
		fallthrough;
	case XenbusStateUnknown:
		/* The frontend's directory is gone: its domain died. */
		vb_teardown(fe);
		device_unregister(&dev->dev);
		break;
	default:
		break;
	}
}

static const struct xenbus_device_id vb_ids[] = {
	{ VR_XEN_DEVICE_TYPE },
	{ "" }
};

static struct xenbus_driver vb_driver = {
	.ids = vb_ids,
	.probe = vb_probe,
	.remove = vb_remove,
	.otherend_changed = vb_frontend_changed,
};

int vb_xenbus_init(void)
{
	return xenbus_register_backend(&vb_driver);
}

void vb_xenbus_exit(void)
{
	xenbus_unregister_driver(&vb_driver);
}
