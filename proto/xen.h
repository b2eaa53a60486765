/* SPDX-License-Identifier: GPL-2.0 OR MIT */
/*
 * xen.h - the Xen split driver's ABI: one definition for frontend_kmod (domU),
 * backend_kmod (dom0), vmrdmad --xen (dom0, in place of backend_kmod), the
 * attach tool and coro's xen: transport.
 * docs/xen.md is the prose version.
 *
 * Three interfaces:
 *
 * 1. xenstore (device type "vmrdma").  The attach tool (dom0) creates
 *    /local/domain/0/backend/vmrdma/DOMID/0 and /local/domain/DOMID/device/vmrdma/0
 *    with the usual frontend/backend links, ids and state 1 (Initialising).
 *    The backend publishes its NIC (mac, mtu) and limits, then InitWait.
 *    The frontend grants the ring pages, allocates an event channel,
 *    writes ring-size, ring-pages, ring-ref0..N-1 and event-channel,
 *    then Initialised.  The backend maps the ring, binds the channel and
 *    goes Connected; the frontend follows.
 *
 * 2. The shared ring between the modules: proto/ring.h's layout exactly
 *    (header, requests, responses) in ring-pages granted pages, with the
 *    VR_RING_OPEN_EP/CLOSE_EP/REG/DEREG control requests added.  Here the
 *    frontend writes magic..rsp_off, and req_event = rsp_event = 1 (like
 *    Xen's SHARED_RING_INIT), before publishing ring-ref (it allocates the
 *    pages); the backend checks them once against ring-size, keeps its own
 *    copies and never reads them again.  Cookies on this ring are the
 *    frontend's own (it routes responses to the right file).
 *
 * 3. /dev/vmrdma (frontend_kmod's misc device) for applications: each open
 *    file is a context with its own proto/ring.h ring (mmap'd) and is the
 *    unit of isolation inside the guest.  Control is one ioctl carrying a
 *    struct vr_ctl_msg (the same message vmrdmad takes on its socket);
 *    requests are published in the mmap'd ring and announced with
 *    VR_IOC_KICK; responses are announced on an eventfd the application
 *    hands in at HELLO, so coro's io_uring loop wakes on them.
 */
#ifndef VR_XEN_H
#define VR_XEN_H
#include "control.h"
#include "ring.h"
#ifdef __KERNEL__
#include <linux/ioctl.h>
#else
#include <sys/ioctl.h>
#endif

#define VR_XEN_DEVICE_TYPE "vmrdma"

/* Frontend's xenstore directory. */
#define VR_XEN_KEY_RING_SIZE  "ring-size"      /* entries, vr_ring_size_ok() */
#define VR_XEN_KEY_RING_PAGES "ring-pages"     /* 1..VR_XEN_MAX_RING_PAGES */
#define VR_XEN_KEY_RING_REF   "ring-ref%u"     /* grant ref of ring page %u */
#define VR_XEN_KEY_EVTCHN     "event-channel"
/* Backend's xenstore directory (written before InitWait). */
#define VR_XEN_KEY_MAC        "mac"            /* "xx:xx:xx:xx:xx:xx" */
#define VR_XEN_KEY_MTU        "mtu"
#define VR_XEN_KEY_MAX_EPS    "max-endpoints"
#define VR_XEN_KEY_MAX_REGS   "max-regions"
#define VR_XEN_KEY_MAX_BYTES  "max-bytes"      /* registered bytes */
#define VR_XEN_KEY_MAX_WEIGHT "max-weight"
#define VR_XEN_KEY_WEIGHT     "weight"         /* set by the administrator, 0 = the frontend's */

#define VR_XEN_MAX_RING_PAGES 8u
#define VR_XEN_PAGE_SIZE      4096u

/*
 * Registration (VR_RING_REG).  The region is `operand` bytes starting
 * `loff` bytes into the first of `swap` granted data pages.  `tag` is the
 * grant ref of a directory page: an array of u32 grant refs of index
 * pages, each an array of VR_XEN_REFS_PER_PAGE u32 grant refs of data
 * pages, in order.  So one region spans at most 2^20 pages (4 GiB).  The
 * backend maps the directory and index pages read-only, copies the refs
 * out, unmaps them and answers; the frontend may then end their grants.
 * Data pages are granted writable when access has VR_ACCESS_REMOTE_WRITE,
 * LOCAL_WRITE (receive copies into them) or REMOTE_ATOMIC (FADD/CSWAP
 * write the result), else read-only.
 */
#define VR_XEN_REFS_PER_PAGE  (VR_XEN_PAGE_SIZE / 4u)
#define VR_XEN_MAX_REG_PAGES  (VR_XEN_REFS_PER_PAGE * VR_XEN_REFS_PER_PAGE)

static inline u32 vr_xen_reg_pages(u64 loff, u64 len)
{
	return (u32)((loff + len + VR_XEN_PAGE_SIZE - 1) / VR_XEN_PAGE_SIZE);
}

static inline u32 vr_xen_index_pages(u32 data_pages)
{
	return (data_pages + VR_XEN_REFS_PER_PAGE - 1) / VR_XEN_REFS_PER_PAGE;
}

/*
 * /dev/vmrdma.  VR_IOC_CTL takes a struct vr_ctl_msg (ring.h) and returns
 * the reply in place (status and text filled, like vmrdmad's socket).
 * ioctl() itself fails only for a bad pointer (-EFAULT), an unknown
 * command (-ENOTTY) or a fatal signal while waiting for the file's control
 * lock (-EINTR).  Types and arguments:
 *   HELLO    arg0 = ring size (entries), arg1 = eventfd for responses;
 *            reply: arg0 = ring size, arg1 = MAC (bytes 0..5 in the low
 *            48 bits), arg2 = MTU, arg3 = bytes to mmap at offset 0.
 *            Once per file.
 *   OPEN_EP, CLOSE_EP, DEREG, LIMITS: as on vmrdmad's socket.
 *   REG      arg0 = ep, arg1 = user virtual address, arg2 = length,
 *            arg3 = access; reply: arg0 = key.  The pages are pinned
 *            and granted until DEREG or close.
 * VR_IOC_KICK: "I published requests": the frontend consumes the file's
 * request ring (-EINVAL before HELLO, -EPROTO once the file broke its ring
 * protocol).  Closing the file releases everything it had.
 */
#define VR_IOC_MAGIC 'V'
#define VR_IOC_CTL   _IOWR(VR_IOC_MAGIC, 1, struct vr_ctl_msg)
#define VR_IOC_KICK  _IO(VR_IOC_MAGIC, 2)

#define VR_XEN_MISC_NAME "vmrdma"

#endif /* VR_XEN_H */
