/* SPDX-License-Identifier: GPL-2.0 OR MIT */
/*
 * vb.h - vmrdma_back's shared state and the seams between its files:
 *   vb_main.c    module parameters, init/exit, the engine, its lock, timer,
 *                transmit pump and /proc/vmrdma_back
 *   vb_net.c     receive (packet_type), transmit (xmit callback) with
 *                zero-copy fragments and their ubuf_info callback
 *   vb_grant.c   the IOTLB: mapping a registration's grants, the engine's
 *                memory ops over the mapped pages, unmapping
 *   vb_ring.c    one frontend's request ring: requests, completions,
 *                responses
 *   vb_xenbus.c  the xenbus backend driver: probe, connect, teardown
 *
 * Locking: one spinlock, vb.lock (bh-safe), serialises the engine and every
 * frontend's objects (endpoints, connections, regions, operation slots) and
 * its response ring.  Engine callbacks (xmit, complete, accept) run under
 * it.  Nothing calls into the network stack or sleeps under it: xmit
 * queues skbs on vb.txq, vb_unlock() moves them to vb.xmitq and, after
 * unlocking, one context at a time sends them, so they leave in the
 * engine's order.
 */
#ifndef VB_H
#define VB_H

#include <linux/types.h>
#include <linux/list.h>
#include <linux/mutex.h>
#include <linux/netdevice.h>
#include <linux/refcount.h>
#include <linux/skbuff.h>
#include <linux/spinlock.h>
#include <linux/wait.h>
#include <linux/workqueue.h>
#include <linux/hrtimer.h>
#include <xen/grant_table.h>
#include <xen/xenbus.h>

#include "bundle.h"
#include "engine.h"
#include "frontend.h"
#include "ring.h"
#include "service.h"
#include "xen.h"

#define VB_NAME "vmrdma_back"

/* Engine capacities (the engine allocates nothing after creation). */
#define VB_ENG_ENDPOINTS 64u   /* endpoint ids 0..63, shared by all frontends */
#define VB_ENG_CONNS     128u
#define VB_ENG_REGIONS   4096u
#define VB_ENG_OPS       256u  /* per connection */
#define VB_ENG_RECVS     128u  /* per endpoint */
#define VB_ENG_UNEXP     8u
#define VB_ENG_UNEXP_BUF 16384u

#define VB_TX_BUDGET     64u   /* frames per vr_engine_tx_poll */
#define VB_TX_ROUNDS     8u    /* tx_poll calls per lock hold, then the tx work goes on */
#define VB_RELEASE_MS    10000u /* how long unmapping waits for the stack to let go */

#define VB_INVALID_HANDLE ((grant_handle_t)~0u)

/* A registered region: grant-mapped data pages (never vmapped). */
struct vb_region {
	struct list_head node;   /* vb_fe.regions or vb.zombies, under vb.lock */
	struct page **pages;     /* npages, from gnttab_alloc_pages */
	grant_handle_t *handles; /* VB_INVALID_HANDLE: not mapped */
	u32 npages;
	u32 nmapped;
	u32 first_off;           /* offset of byte 0 in pages[0] */
	u64 len;
	u64 key;
	u16 ep;
	bool writable;
	domid_t domid;
	/* 1 for the registration + 1 per skb fragment set still in the stack */
	refcount_t refs;
};

struct vb_fe {
	struct list_head node;   /* vb.frontends, under vb.lock */
	u32 id;                  /* names it in engine cookies; never reused */
	struct xenbus_device *dev;
	domid_t domid;

	/*
	 * What it owns and its requests waiting for the engine, with its
	 * limits (copied at probe): proto/frontend.h's tables, under vb.lock.
	 */
	struct vr_fe svc;

	/* ring (mapped while ring_va != NULL) */
	void *ring_va;
	u32 size;
	struct vr_ring_shared *shared;
	struct vr_ring_req *reqs;
	struct vr_ring_rsp *rsps;
	u32 req_cons;            /* the work's */
	u32 rsp_prod_pvt;        /* vb.lock */
	bool notify;             /* vb.lock: irq bound, responses may notify */
	bool stopping;           /* vb.lock to set; read locklessly by the irq handler */
	bool broken;             /* protocol violation: no more requests taken */
	bool admission_wait;     /* vb.lock: its next request waits for admission */
	bool tearing;            /* counting failed responses for the teardown line */

	/* event channel */
	unsigned int irq;
	bool irq_bound;          /* irq_mutex */
	struct mutex irq_mutex;
	atomic_t eoi_pending;
	struct work_struct work;

	struct vr_fe_conn conns[VB_ENG_CONNS]; /* svc.conns */
	struct list_head regions; /* its vb_regions (svc's region records name them) */

	/* counters, under vb.lock */
	u64 requests, responses, violations, failed; /* rejected: svc.rejected */
	u32 teardown_failed;
};

struct vb_state {
	spinlock_t lock;
	struct vr_engine *eng;
	void *eng_mem;
	struct net_device *dev;  /* held while attached */
	bool attached;           /* vb.lock: false once the device unregisters */
	u8 mac[6];
	u32 mtu;
	u16 ethertype;
	struct packet_type ptype;
	struct notifier_block netdev_nb;
	struct hrtimer timer;
	u64 armed_at;            /* VR_U64_MAX: not armed */
	bool stopping;
	struct sk_buff_head txq; /* built under the lock, sent after it */
	struct sk_buff_head xmitq; /* txq's frames in order, for vb_xmit_drain (its own lock) */
	bool xmitting;           /* xmitq.lock: a context is handing xmitq to the stack */
	struct sk_buff *bundle;  /* the last skb on txq, while small frames may join it */
	struct vr_bundle_writer bundle_writer; /* encodes into bundle's data */
	struct work_struct tx_work;
	struct workqueue_struct *wq;
	struct list_head frontends;
	u32 next_fe_id;
	struct vb_fe *ep_owner[VB_ENG_ENDPOINTS];
	struct list_head zombies; /* regions the stack would not let go of in time */

	/* zero-copy skbs in flight and their waiters */
	atomic_t zc_inflight;
	wait_queue_head_t zc_wq;
	atomic_long_t mapped_pages;

	u32 admission_waiters;   /* frontends with admission_wait set */

	/* counters, under lock */
	u32 nfrontends, mapped_rings, nregions, nendpoints;
	u64 admission_waits;     /* times a frontend's request waited for admission */
	u64 stray_completions, xmit_copies, xmit_drops, leaked_regions, tx_bundles;
};

extern struct vb_state vb;
extern unsigned int vb_max_endpoints, vb_max_regions, vb_max_conns, vb_max_weight;
extern unsigned long long vb_max_bytes, vb_inflight_bytes;

/* vb_main.c */
void vb_lock(void);
void vb_unlock(void);
void vb_unlock_unpumped(void);
u64 vb_now(void);

/* vb_net.c */
int vb_xmit(void *ctx, const struct vr_frame *f);
void vb_bundle_close(void);
int vb_rcv(struct sk_buff *skb, struct net_device *dev, struct packet_type *pt,
	   struct net_device *orig_dev);
int vb_net_attach(struct net_device *dev);
void vb_net_detach(void);

/* vb_grant.c */
extern const struct vr_mem_ops vb_mem_ops;
int vb_region_map(domid_t domid, u32 dir_ref, u32 npages, u32 first_off, u64 len,
		  bool writable, struct vb_region **out);
int vb_region_release(struct vb_region *r, unsigned long deadline);
void vb_regions_release(struct list_head *list, u32 *nregions, u32 *npages);

/* vb_ring.c */
void vb_complete(void *ctx, const struct vr_completion *c);
void vb_svc_respond(void *ctx, const struct vr_svc_pending *req, const struct vr_ring_rsp *rsp);
int vb_accept(void *ctx, u16 ep, const u8 peer_mac[6], u16 peer_ep);
void vb_ring_work(struct work_struct *work);
int vb_fe_ring_init(struct vb_fe *fe, u32 size);
void vb_fe_close_all(struct vb_fe *fe, struct list_head *regions, u32 *neps);
void vb_fe_ring_free(struct vb_fe *fe);

/* vb_xenbus.c */
int vb_xenbus_init(void);
void vb_xenbus_exit(void);

#endif /* VB_H */
