// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * main.c - vmrdma_front: module init and exit.  On Xen it creates
 * /dev/vmrdma and registers the xenbus frontend; elsewhere it says so once
 * and does nothing.
 */
#include "vmrdma_front.h"
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <xen/xen.h>

struct vrf_dev vrf;

static struct miscdevice vrf_misc = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = VR_XEN_MISC_NAME,
	.fops = &vrf_fops,
	.mode = 0666,
};

static bool vrf_registered;

static int __init vrf_init(void)
{
	int err;

	if (!xen_domain()) {
		pr_info("not running on Xen: /dev/vmrdma not created\n");
		return 0;
	}
	mutex_init(&vrf.state_lock);
	vrf_chan_init();
	err = misc_register(&vrf_misc);
	if (err) {
		pr_err("cannot register /dev/%s: %d\n", VR_XEN_MISC_NAME, err);
		return err;
	}
	err = vrf_xenbus_register();
	if (err) {
		pr_err("cannot register the xenbus frontend: %d\n", err);
		misc_deregister(&vrf_misc);
		return err;
	}
	vrf_registered = true;
	return 0;
}

static void __exit vrf_exit(void)
{
	if (!vrf_registered)
		return;
	/* No file is open (each holds the module); remove() tears the ring down. */
	vrf_xenbus_unregister();
	misc_deregister(&vrf_misc);
}

module_init(vrf_init);
module_exit(vrf_exit);
MODULE_DESCRIPTION("vmrdma Xen frontend: /dev/vmrdma for RDMA over Ethernet in a domU");
MODULE_LICENSE("Dual MIT/GPL");
MODULE_ALIAS("xen:" VR_XEN_DEVICE_TYPE);
