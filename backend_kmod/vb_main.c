// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * vb_main.c - vmrdma_back: module parameters, init/exit, the one protocol
 * engine of the module, its lock, timer and transmit pump, and
 * /proc/vmrdma_back.
 */
#include <linux/module.h>
#include <linux/kernel.h>
#include <linux/mm.h>
#include <linux/proc_fs.h>
#include <linux/random.h>
#include <linux/seq_file.h>
#include <linux/slab.h>
#include <linux/timekeeping.h>
#include <net/net_namespace.h>
#include <xen/xen.h>

#include "vb.h"

static char *netdev;
module_param(netdev, charp, 0444);
MODULE_PARM_DESC(netdev, "network device to bind (required), e.g. veth0");

static ushort ethertype = VR_ETHERTYPE_DEFAULT;
module_param(ethertype, ushort, 0444);
MODULE_PARM_DESC(ethertype, "EtherType of vmrdma frames (default 0x88B5)");

static char *auth_key;
module_param(auth_key, charp, 0400);
MODULE_PARM_DESC(auth_key, "64 hex digits: authenticate every connection with this "
		 "pre-shared key (docs/wire-format.md, Authentication); default off");

unsigned int vb_max_endpoints = 16;
module_param_named(max_endpoints, vb_max_endpoints, uint, 0644);
MODULE_PARM_DESC(max_endpoints, "endpoints per frontend (default 16)");

unsigned int vb_max_conns = 32;
module_param_named(max_conns, vb_max_conns, uint, 0644);
MODULE_PARM_DESC(max_conns, "connections per frontend, open or opening (default 32)");

unsigned int vb_max_regions = 64;
module_param_named(max_regions, vb_max_regions, uint, 0644);
MODULE_PARM_DESC(max_regions, "registered regions per frontend (default 64)");

unsigned long long vb_max_bytes = 256ULL << 20;
module_param_named(max_bytes, vb_max_bytes, ullong, 0644);
MODULE_PARM_DESC(max_bytes, "registered bytes per frontend (default 256 MiB)");

unsigned int vb_max_weight = 16;
module_param_named(max_weight, vb_max_weight, uint, 0644);
MODULE_PARM_DESC(max_weight, "largest endpoint weight a frontend may ask for (default 16)");

unsigned long long vb_inflight_bytes = 4ULL << 20;
module_param_named(inflight_bytes, vb_inflight_bytes, ullong, 0644);
MODULE_PARM_DESC(inflight_bytes,
		 "WRITE/READ/SEND bytes of all frontends at the engine, shared by weight (default 4 MiB, as vmrdmad; 0: DRR only)");

static unsigned int rto_us;
module_param(rto_us, uint, 0444);
MODULE_PARM_DESC(rto_us,
		 "first retransmission timeout in microseconds (default 0: the engine's profile, 20 ms); for links whose round trips are longer, e.g. emulated ones");

struct vb_state vb;
static bool vb_active;     /* init registered something: exit undoes it */
static struct proc_dir_entry *vb_proc;

u64 vb_now(void)
{
	return ktime_get_ns();
}

static u32 vb_random(void *ctx)
{
	return get_random_u32();
}

static const struct vr_host_ops vb_host_ops = {
	.xmit = vb_xmit,
	.complete = vb_complete,
	.random = vb_random,
	.accept = vb_accept,
};

void vb_lock(void)
{
	spin_lock_bh(&vb.lock);
}

/* Under vb.lock: emit what the engine has, (re)arm the timer. */
static bool vb_kick_locked(void)
{
	u64 now = vb_now(), next;
	u32 round;
	int sent = 0;

	if (vb.stopping)
		return false;
	for (round = 0; round < VB_TX_ROUNDS; round++) {
		sent = vr_engine_tx_poll(vb.eng, now, VB_TX_BUDGET);
		if (sent < (int)VB_TX_BUDGET)
			break;
	}
	next = vr_engine_next_timeout(vb.eng);
	if (next != VR_U64_MAX && next < now + 5000)
		next = now + 5000; /* never a softirq storm on a deadline in the past */
	if (next < vb.armed_at) {
		vb.armed_at = next;
		hrtimer_start(&vb.timer, ns_to_ktime(next), HRTIMER_MODE_ABS_SOFT);
	}
	return sent >= (int)VB_TX_BUDGET; /* more to send: the tx work goes on */
}

/* Leave the engine without pumping it: for a caller that pumps once after
 * a batch of requests (vb_unlock), so their frames leave together. */
void vb_unlock_unpumped(void)
{
	spin_unlock_bh(&vb.lock);
}

/*
 * Hands vb.xmitq's frames to the stack in their order, one context at a
 * time (as a qdisc runs): a softirq that pumps the engine while a process
 * context is still sending must not overtake that context's frames, or the
 * peer sees a gap, asks for everything from there again and the connection
 * halves its window.  A context that finds another sending leaves its frames
 * to it.  Inside an RCU read section (vb_net_detach waits for it).
 */
static void vb_xmit_drain(void)
{
	struct sk_buff *skb;

	spin_lock_bh(&vb.xmitq.lock);
	if (vb.xmitting) {
		spin_unlock_bh(&vb.xmitq.lock);
		return;
	}
	vb.xmitting = true;
	while ((skb = __skb_dequeue(&vb.xmitq))) {
		spin_unlock_bh(&vb.xmitq.lock);
		if (READ_ONCE(vb.attached))
			dev_queue_xmit(skb);
		else
			kfree_skb(skb); /* the device is going: nothing leaves */
		spin_lock_bh(&vb.xmitq.lock);
	}
	vb.xmitting = false;
	spin_unlock_bh(&vb.xmitq.lock);
}

/* Leave the engine: pump, move its frames to vb.xmitq in the engine's
 * order, unlock, then hand them to the stack. */
void vb_unlock(void)
{
	bool more;

	more = vb_kick_locked();
	vb_bundle_close();
	spin_lock(&vb.xmitq.lock);
	skb_queue_splice_tail_init(&vb.txq, &vb.xmitq);
	spin_unlock(&vb.xmitq.lock);
	rcu_read_lock(); /* vb_net_detach waits for this before dropping vb.dev */
	spin_unlock_bh(&vb.lock);
	vb_xmit_drain();
	rcu_read_unlock();
	if (more)
		queue_work(vb.wq, &vb.tx_work);
}

static void vb_tx_work(struct work_struct *work)
{
	vb_lock();
	vb_unlock();
}

static enum hrtimer_restart vb_timer_fn(struct hrtimer *t)
{
	vb_lock();
	vb.armed_at = VR_U64_MAX;
	if (!vb.stopping)
		vr_engine_on_timer(vb.eng, vb_now());
	vb_unlock(); /* re-arms through vb_kick_locked */
	return HRTIMER_NORESTART;
}

/*
 * One line per frontend: its domain, its endpoints and their weights in
 * force (summed), and the bytes its endpoints sent and received (the
 * engine's counters, so the administrator can see the shares).
 */
static void vb_proc_show_frontends(struct seq_file *m)
{
	struct vr_counters c;
	struct vb_fe *fe;
	u64 tx, rx;
	u32 i, neps, weight;

	spin_lock_bh(&vb.lock);
	list_for_each_entry(fe, &vb.frontends, node) {
		tx = rx = 0;
		neps = weight = 0;
		for (i = 0; i < fe->svc.eps_cap; i++) {
			if (!fe->svc.eps[i].used)
				continue;
			neps++;
			weight += fe->svc.eps[i].weight;
			if (!vr_ep_counters(vb.eng, fe->svc.eps[i].id, &c)) {
				tx += c.tx_bytes;
				rx += c.rx_bytes;
			}
		}
		seq_printf(m, "frontend dom%u endpoints %u weight %u tx_bytes %llu rx_bytes %llu bulk_inflight %llu%s\n",
			   fe->domid, neps, weight, tx, rx, fe->svc.bulk_inflight,
			   fe->admission_wait ? " waiting" : "");
	}
	spin_unlock_bh(&vb.lock);
}

static int vb_proc_show(struct seq_file *m, void *v)
{
	u32 fes, rings, regs, eps;
	u64 tx, rx, bundles, tx_bundles, rexmit, stray, copies, drops, leaked, waits, naks_tx = 0, naks_rx = 0;
	struct vr_counters ec;
	u64 req = 0, rsp = 0, rej = 0, viol = 0;
	u32 i;
	struct vb_fe *fe;

	spin_lock_bh(&vb.lock);
	fes = vb.nfrontends;
	rings = vb.mapped_rings;
	regs = vb.nregions;
	eps = vb.nendpoints;
	if (!vb.attached)
		seq_puts(m, "detached 1\n");
	tx = vr_engine_counters(vb.eng)->tx_frames;
	rx = vr_engine_counters(vb.eng)->rx_frames;
	bundles = vr_engine_counters(vb.eng)->rx_bundles;
	tx_bundles = vb.tx_bundles;
	rexmit = vr_engine_counters(vb.eng)->retransmits;
	ec = *vr_engine_counters(vb.eng);
	stray = vb.stray_completions;
	copies = vb.xmit_copies;
	drops = vb.xmit_drops;
	leaked = vb.leaked_regions;
	waits = vb.admission_waits;
	list_for_each_entry(fe, &vb.frontends, node) {
		req += fe->requests;
		rsp += fe->responses;
		rej += fe->svc.rejected;
		viol += fe->violations;
	}
	spin_unlock_bh(&vb.lock);

	seq_printf(m, "frontends %u\n", fes);
	seq_printf(m, "mapped_rings %u\n", rings);
	seq_printf(m, "mapped_pages %ld\n", atomic_long_read(&vb.mapped_pages));
	seq_printf(m, "regions %u\n", regs);
	seq_printf(m, "endpoints %u\n", eps);
	seq_printf(m, "tx_frames %llu\n", tx);
	seq_printf(m, "rx_frames %llu\n", rx);
	seq_printf(m, "rx_bundles %llu\n", bundles);
	seq_printf(m, "tx_bundles %llu\n", tx_bundles);
	seq_printf(m, "retransmits %llu\n", rexmit);
	for (i = 0; i < VR_NAK_MAX; i++) {
		naks_tx += ec.naks_tx[i];
		naks_rx += ec.naks_rx[i];
	}
	seq_printf(m, "timeouts %llu\n", ec.timeouts);
	seq_printf(m, "congestion_events %llu\n", ec.congestion_events);
	seq_printf(m, "duplicates %llu\n", ec.dups);
	seq_printf(m, "out_of_order %llu\n", ec.out_of_order);
	seq_printf(m, "naks_sent %llu\n", naks_tx);
	seq_printf(m, "naks_received %llu\n", naks_rx);
	seq_printf(m, "requests %llu\n", req);
	seq_printf(m, "responses %llu\n", rsp);
	seq_printf(m, "rejected %llu\n", rej);
	seq_printf(m, "violations %llu\n", viol);
	seq_printf(m, "zerocopy_inflight %d\n", atomic_read(&vb.zc_inflight));
	seq_printf(m, "xmit_copies %llu\n", copies);
	seq_printf(m, "xmit_drops %llu\n", drops);
	seq_printf(m, "stray_completions %llu\n", stray);
	seq_printf(m, "leaked_regions %llu\n", leaked);
	seq_printf(m, "admission_waits %llu\n", waits);
	vb_proc_show_frontends(m);
	return 0;
}

static int vb_engine_init(struct net_device *dev)
{
	struct vr_config cfg = {
		.ethertype = ethertype,
		.mtu = vb.mtu,
		.max_endpoints = VB_ENG_ENDPOINTS,
		.max_conns = VB_ENG_CONNS,
		.max_regions = VB_ENG_REGIONS,
		.max_ops = VB_ENG_OPS,
		.max_recvs = VB_ENG_RECVS,
		.unexp_depth = VB_ENG_UNEXP,
		.unexp_buf_size = VB_ENG_UNEXP_BUF,
		.rto_ns = (u64)rto_us * 1000,
		/* otherwise the engine's profile (VR_DEFAULT_* in engine.h) */
		.host = &vb_host_ops,
		.mem = &vb_mem_ops,
		.ctx = &vb,
	};
	size_t need;
	int rc;

	memcpy(cfg.mac, vb.mac, 6);
	if (auth_key) {
		if (strlen(auth_key) != 2 * VR_AUTH_KEY_LEN ||
		    hex2bin(cfg.auth_key, auth_key, VR_AUTH_KEY_LEN)) {
			pr_err(VB_NAME ": auth_key must be %d hex digits\n", 2 * VR_AUTH_KEY_LEN);
			return -EINVAL;
		}
		cfg.auth = VR_AUTH_PSK;
	}
	need = vr_engine_mem_size(&cfg);
	if (!need) {
		pr_err(VB_NAME ": %s: the engine refuses its configuration (MTU %u; 1500..65535 needed)\n",
		       dev->name, dev->mtu);
		return -EINVAL;
	}
	vb.eng_mem = kvzalloc(need, GFP_KERNEL);
	if (!vb.eng_mem)
		return -ENOMEM;
	rc = vr_engine_create(&cfg, vb.eng_mem, need, &vb.eng);
	memzero_explicit(cfg.auth_key, sizeof(cfg.auth_key));
	if (rc) {
		pr_err(VB_NAME ": cannot create the protocol engine: %d\n", rc);
		kvfree(vb.eng_mem);
		vb.eng_mem = NULL;
		return rc;
	}
	pr_info(VB_NAME ": serving %s (MAC %pM, MTU %u, EtherType 0x%04x), engine of %zu bytes%s\n",
		dev->name, vb.mac, vb.mtu, ethertype, need,
		auth_key ? ", frames authenticated with the pre-shared key" : "");
	return 0;
}

/*
 * Waits for every zero-copy skb to come back, then frees zombies.  The wait
 * is not bounded: each such skb calls vb_zc_callback, which is this
 * module's text, so unloading before the last one returns would oops the
 * kernel later (vhost_net waits the same way).
 */
static void vb_drain_zerocopy(void)
{
	struct vb_region *r, *tmp;
	LIST_HEAD(z);

	while (!wait_event_timeout(vb.zc_wq, atomic_read(&vb.zc_inflight) == 0, 60 * HZ))
		pr_warn(VB_NAME ": %d zero-copy skb(s) still in the network stack: unload waits for them\n",
			atomic_read(&vb.zc_inflight));
	spin_lock_bh(&vb.lock);
	list_splice_init(&vb.zombies, &z);
	spin_unlock_bh(&vb.lock);
	list_for_each_entry_safe(r, tmp, &z, node) {
		list_del_init(&r->node);
		if (vb_region_release(r, jiffies + msecs_to_jiffies(VB_RELEASE_MS)))
			pr_err(VB_NAME ": leaving a region of dom%u (%u pages) mapped\n",
			       r->domid, r->npages);
	}
	synchronize_rcu(); /* the last callback has returned */
}

static void vb_engine_stop(void)
{
	spin_lock_bh(&vb.lock);
	vb.stopping = true;
	spin_unlock_bh(&vb.lock);
	hrtimer_cancel(&vb.timer);
	cancel_work_sync(&vb.tx_work);
	spin_lock_bh(&vb.lock);
	vr_engine_destroy(vb.eng); /* no frontend left: completions go nowhere */
	vb.bundle = NULL;
	vb.bundle_writer.buf = NULL;
	spin_unlock_bh(&vb.lock);
	skb_queue_purge(&vb.txq);
	skb_queue_purge(&vb.xmitq);
}

static int __init vb_init(void)
{
	struct net_device *dev;
	int rc;

	if (!xen_domain() || !xen_initial_domain()) {
		pr_info(VB_NAME ": not running in a Xen dom0: nothing to serve\n");
		return 0;
	}
	BUILD_BUG_ON(PAGE_SIZE != VR_XEN_PAGE_SIZE);
	if (!netdev || !*netdev) {
		pr_err(VB_NAME ": netdev= is required (the network device to bind)\n");
		return -EINVAL;
	}
	dev = dev_get_by_name(&init_net, netdev);
	if (!dev) {
		pr_err(VB_NAME ": no network device %s\n", netdev);
		return -ENODEV;
	}

	spin_lock_init(&vb.lock);
	skb_queue_head_init(&vb.txq);
	skb_queue_head_init(&vb.xmitq);
	INIT_WORK(&vb.tx_work, vb_tx_work);
	INIT_LIST_HEAD(&vb.frontends);
	INIT_LIST_HEAD(&vb.zombies);
	init_waitqueue_head(&vb.zc_wq);
	atomic_set(&vb.zc_inflight, 0);
	atomic_long_set(&vb.mapped_pages, 0);
	vb.armed_at = VR_U64_MAX;
	vb.next_fe_id = 1;
	vb.ethertype = ethertype;
	memcpy(vb.mac, dev->dev_addr, 6);
	vb.mtu = dev->mtu;
	hrtimer_init(&vb.timer, CLOCK_MONOTONIC, HRTIMER_MODE_ABS_SOFT);
	vb.timer.function = vb_timer_fn;

	vb.wq = alloc_workqueue("vmrdma_back", WQ_UNBOUND, 0);
	if (!vb.wq) {
		rc = -ENOMEM;
		goto err_dev;
	}
	rc = vb_engine_init(dev);
	if (rc)
		goto err_wq;
	rc = vb_net_attach(dev); /* owns the device reference from here, even on failure */
	if (rc) {
		pr_err(VB_NAME ": cannot watch %s: %d\n", netdev, rc);
		goto err_eng_nodev;
	}

	vb_proc = proc_create_single("vmrdma_back", 0444, NULL, vb_proc_show);
	if (!vb_proc) {
		pr_err(VB_NAME ": cannot create /proc/vmrdma_back\n");
		rc = -ENOMEM;
		goto err_pack;
	}
	rc = vb_xenbus_init();
	if (rc) {
		pr_err(VB_NAME ": cannot register the xenbus backend: %d\n", rc);
		goto err_proc;
	}
	vb_active = true;
	return 0;

err_proc:
	proc_remove(vb_proc);
err_pack:
	vb_net_detach();
	unregister_netdevice_notifier(&vb.netdev_nb);
	vb_engine_stop();
	kvfree(vb.eng_mem);
	destroy_workqueue(vb.wq);
	return rc;
err_eng_nodev:
	/* vb_net_attach's failure path has dropped the device reference. */
	vb_engine_stop();
	kvfree(vb.eng_mem);
	destroy_workqueue(vb.wq);
	return rc;
err_wq:
	destroy_workqueue(vb.wq);
err_dev:
	dev_put(dev);
	return rc;
}

static void __exit vb_exit(void)
{
	if (!vb_active)
		return;
	proc_remove(vb_proc);
	vb_xenbus_exit();              /* every frontend torn down */
	vb_net_detach();               /* no receive handler runs after this */
	unregister_netdevice_notifier(&vb.netdev_nb);
	vb_engine_stop();
	vb_drain_zerocopy();
	destroy_workqueue(vb.wq);
	kvfree(vb.eng_mem);
	pr_info(VB_NAME ": unloaded\n");
}

module_init(vb_init);
module_exit(vb_exit);
MODULE_LICENSE("Dual MIT/GPL");
MODULE_DESCRIPTION("vmrdma Xen backend: RDMA semantics over Ethernet for guests");
MODULE_ALIAS("xen-backend:vmrdma");
