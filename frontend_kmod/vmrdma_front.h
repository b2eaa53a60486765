/* SPDX-License-Identifier: GPL-2.0 OR MIT */
/*
 * vmrdma_front.h - frontend_kmod's shared definitions: the one device
 * (xenbus frontend + shared ring + op table) and the per-file context.
 *
 * Locking, outermost first:
 *   vrf.state_lock  xenbus transitions (probe/otherend_changed/remove)
 *   f->ctl_lock     one control request of a file at a time
 *   f->req_lock     consumption of a file's request ring
 *   f->lock         a file's objects (eps, conns, regions), its response
 *                   producer and `dead`
 *   vrf.lock        the shared ring, the op table, the waiting list
 * f->lock and vrf.lock are never held together.
 */
#ifndef VMRDMA_FRONT_H
#define VMRDMA_FRONT_H

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/types.h>
#include <linux/list.h>
#include <linux/mutex.h>
#include <linux/spinlock.h>
#include <linux/completion.h>
#include <linux/kref.h>
#include <linux/workqueue.h>
#include <linux/wait.h>
#include <linux/fs.h>
#include <xen/grant_table.h>
#include <xen/interface/event_channel.h>
#include "xen.h"
#include "region.h"

#define VRF_RING_SIZE        64u  /* entries of the shared ring */
#define VRF_NSLOTS           (VRF_RING_SIZE - 1) /* at most size-1 outstanding */
#define VRF_CTL_RESERVE      4u   /* slots only control requests may take */
#define VRF_FILE_MAX_INFLIGHT 32u /* data operations of one file on the shared ring */
#define VRF_TIMEOUT          (10 * HZ)

struct vrf_file;
struct vrf_conn;

/* A control call waiting for its response (on the caller's stack). */
struct vrf_wait {
	struct completion done;
	struct vr_ring_rsp rsp;
	u32 slot;
};

/* One outstanding request on the shared ring. */
struct vrf_slot {
	struct vrf_file *file;   /* data: the owner (holds a reference) */
	struct vrf_wait *wait;   /* control: the waiter; NULL once it gave up */
	struct vrf_conn *conn;   /* CONNECT/ACCEPT: the entry a success fills */
	u64 cookie;              /* data: the application's cookie */
	u32 gen;                 /* bumped on every use: the cookie's high half */
	u32 conn_handle;         /* the request's conn (echoed when failing it) */
	u16 ep;
	u8 opcode;
	u8 busy;
	u8 ctl;
};

struct vrf_dev {
	struct mutex state_lock;
	struct xenbus_device *xdev;   /* the one vmrdma device, or NULL */

	/* the ring as set up (state_lock) */
	void *ring;
	unsigned int ring_pages;
	grant_ref_t ring_refs[VR_XEN_MAX_RING_PAGES];
	evtchn_port_t evtchn;
	int irq;
	struct work_struct work;

	spinlock_t lock;              /* everything below */
	bool connected;               /* backend Connected: requests may be posted */
	bool broken;                  /* the backend broke the ring protocol */
	u32 epoch;                    /* bumped on every connection */
	domid_t otherend_id;
	struct vr_ring_shared *sh;
	struct vr_ring_req *reqs;
	struct vr_ring_rsp *rsps;
	u32 req_prod_pvt;
	u32 rsp_cons;
	struct vrf_slot slots[VRF_NSLOTS];
	u32 nr_busy;
	u32 nr_data;
	struct list_head waiting;     /* files waiting for a slot */
	wait_queue_head_t slot_wq;    /* control calls waiting for a slot */

	/* the backend's (read at Connected) */
	u8 mac[6];
	u32 mtu;
	u32 max_eps;
	u32 max_regs;
	u32 max_weight;
	u64 max_bytes;
};

extern struct vrf_dev vrf;
extern unsigned int vrf_max_ring_size;

struct vrf_ep {
	struct list_head node;
	u16 id;
};

struct vrf_conn {
	struct list_head node;
	u32 handle;
	u16 ep;
};

struct vrf_region {
	struct list_head node;
	u64 key;
	u16 ep;
	bool writable;
	u64 len;
	u32 npinned;          /* pages[0..npinned) are pinned */
	u32 naccounted;       /* pages counted in mm->pinned_vm */
	struct mm_struct *mm; /* whose pinned_vm (mmgrab'd), or NULL */
	u32 ngranted;         /* refs[0..ngranted) are granted */
	struct page **pages;
	grant_ref_t *refs;
};

/* An open /dev/vmrdma: the unit of isolation inside the guest. */
struct vrf_file {
	struct kref ref;
	struct mutex ctl_lock;
	struct mutex req_lock;
	spinlock_t lock;
	bool hello;           /* set (release) once the ring below exists */
	bool dead;            /* released: responses are dropped */
	bool broken;          /* broke its ring protocol: no more requests */
	u32 epoch;            /* vrf.epoch at HELLO */

	struct list_head eps;
	struct list_head conns;
	struct list_head regions;
	u32 nr_eps;
	u32 nr_regions;
	u64 reg_bytes;

	/* under vrf.lock */
	bool waiting;
	struct list_head wait_node;
	u32 inflight;

	/* the ring (fixed after HELLO) */
	void *ring;
	size_t ring_len;
	u32 size;
	struct vr_ring_shared *sh;
	struct vr_ring_req *reqs;
	struct vr_ring_rsp *rsps;
	struct eventfd_ctx *efd;
	u32 req_cons;         /* req_lock */
	u32 rsp_prod_pvt;     /* f->lock */
};

/* xenbus.c */
int vrf_xenbus_register(void);
void vrf_xenbus_unregister(void);

/* chan.c */
void vrf_chan_init(void);
void vrf_chan_reset(struct vr_ring_shared *sh);
void vrf_chan_work(struct work_struct *work);
void vrf_chan_fail_all(void);
int vrf_chan_call(u32 epoch, struct vr_ring_req *req, struct vr_ring_rsp *rsp);
int vrf_chan_post_data(struct vrf_file *f, struct vr_ring_req *req, struct vrf_conn *conn);
void vrf_chan_unwait(struct vrf_file *f);
bool vrf_chan_live(u32 epoch);

/* file.c */
extern const struct file_operations vrf_fops;
void vrf_file_free(struct kref *ref);
bool vrf_ep_owned(struct vrf_file *f, u16 ep);
void vrf_refuse(struct vr_ctl_msg *reply, int status, const char *why);
void vrf_refuse_call(struct vr_ctl_msg *reply, int err);

/* region.c */
void vrf_ctl_reg(struct vrf_file *f, const struct vr_ctl_msg *msg, struct vr_ctl_msg *reply);
void vrf_ctl_dereg(struct vrf_file *f, const struct vr_ctl_msg *msg, struct vr_ctl_msg *reply);
int vrf_region_drop(struct vrf_file *f, struct vrf_region *r, bool tell_backend);
struct vrf_region *vrf_region_find(struct vrf_file *f, u64 key);

/* data.c */
int vrf_file_consume(struct vrf_file *f);
void vrf_file_deliver(struct vrf_file *f, const struct vr_ring_rsp *rsp, struct vrf_conn *conn);

#endif /* VMRDMA_FRONT_H */
