/* SPDX-License-Identifier: GPL-2.0 OR MIT */
/*
 * control.h - the split driver's control and admin protocol: the messages
 * a frontend sends to set up its ring, endpoints and regions (HELLO,
 * OPEN_EP, REG, ...), and the administrator's lists and settings.  The same
 * struct vr_ctl_msg travels on vmrdmad's UNIX socket and through
 * frontend_kmod's VR_IOC_CTL (xen.h); the data path is ring.h's.
 */
#ifndef VR_CONTROL_H
#define VR_CONTROL_H
#include "os.h"

/*
 * Control protocol on the UNIX socket (SOCK_SEQPACKET): fixed-size
 * messages, one reply per request, in order.  File descriptors travel as
 * SCM_RIGHTS: HELLO's reply carries [ring memfd, request doorbell eventfd,
 * response doorbell eventfd]; REG's request carries the region's memfd.
 */
#define VR_CTL_MAGIC   0x4d445256u /* "VRDM" */
#define VR_CTL_VERSION 2u /* 2: the device record's counters of refused attacks, ADMIN_UIDS */

enum vr_ctl_type {
	VR_CTL_HELLO = 1,   /* arg0 = ring size; reply: arg0 = ring size, arg1 = MAC
			     * (bytes 0..5 in the low 48 bits), arg2 = MTU, + fds */
	VR_CTL_OPEN_EP,     /* arg0 = ep id, arg1 = weight, arg2 = listen */
	VR_CTL_CLOSE_EP,    /* arg0 = ep id */
	VR_CTL_REG,         /* arg0 = ep, arg1 = offset, arg2 = length, arg3 = access
			     * (region.h VR_ACCESS_*), + memfd; reply: arg0 = key */
	VR_CTL_DEREG,       /* arg0 = key */
	VR_CTL_LIMITS,      /* reply: arg0 = endpoints, arg1 = regions, arg2 = bytes,
			     * arg3 = max ring size, arg4 = max weight */
	/* Administration (vmrdmactl).  Allowed without HELLO, on any connection. */
	VR_CTL_ADMIN_LIST,  /* arg0 = enum vr_admin_list; reply: arg0 = count,
			     * arg1 = record size, then (count > 0) one more
			     * message: count records of that size */
	VR_CTL_ADMIN_SET,   /* arg0 = frontend id, arg1 = enum vr_admin_set,
			     * arg2 = value.  Only root or the daemon's own uid
			     * (SO_PEERCRED) may: others get -EPERM. */
	VR_CTL_TYPE_MAX,
};

enum vr_admin_list {
	VR_ADMIN_FRONTENDS = 1, /* struct vr_admin_frontend each */
	VR_ADMIN_ENDPOINTS,     /* struct vr_admin_endpoint each */
	VR_ADMIN_CONNS,         /* struct vr_admin_conn each */
	VR_ADMIN_DEVICE,        /* one struct vr_admin_device */
	VR_ADMIN_UIDS,          /* struct vr_admin_uid each: what each user holds */
};

enum vr_admin_set {
	VR_ADMIN_SET_WEIGHT = 1,    /* every endpoint of the frontend, now and later
				     * (1..1024; 0 gives back the frontend's own choice,
				     * clamped to its max weight) */
	VR_ADMIN_SET_MAX_ENDPOINTS, /* limits: apply to later requests */
	VR_ADMIN_SET_MAX_REGIONS,
	VR_ADMIN_SET_MAX_BYTES,
	VR_ADMIN_SET_MAX_WEIGHT,
};

#define VR_ADMIN_MAX_RECORDS 1024u

/* One frontend (a connection to the control socket): 120 bytes. */
struct vr_admin_frontend {
	u32 id;          /* the daemon's handle, 1, 2, ... (ADMIN_SET's arg0) */
	s32 pid;         /* SO_PEERCRED at connect */
	u32 uid, gid;
	u32 ring_size;   /* 0: no HELLO yet (e.g. vmrdmactl itself) */
	u32 in_flight;   /* requests taken, response not yet written */
	u32 endpoints, regions, conns;
	u32 weight;      /* set by the administrator, or 0 */
	u32 max_endpoints, max_regions, max_weight;
	u32 draining;
	u64 mapped_bytes, max_bytes;
	u64 requests, responses, rejected, violations, failed;
	u64 reserved;
};

/* One endpoint of a frontend, with the engine's per-endpoint counters. */
struct vr_admin_endpoint {
	u32 frontend;
	u16 ep;
	u8 listen;
	u8 pad;
	u32 weight;      /* in force */
	u32 conns, regions;
	u32 pad1;
	u64 tx_frames, tx_bytes, rx_frames, rx_bytes;
	u64 retransmits, naks_tx, naks_rx;
	u64 reserved;
};

/* One connection of a frontend. */
struct vr_admin_conn {
	u32 frontend;
	u32 handle;      /* the frontend's name for it */
	u16 ep;
	u16 peer_ep;     /* CONNECT: as asked; ACCEPT: 0 (not known) */
	u8 peer_mac[6];  /* CONNECT: as asked; ACCEPT: zero */
	u8 accepted;
	u8 open;
	u32 pad;
};

/* The driver domain's NIC and its own counters. */
struct vr_admin_device {
	u64 mac;         /* bytes 0..5 in the low 48 bits */
	u32 mtu;
	u32 draining;
	u64 tx_frames, tx_bytes, rx_frames, rx_bytes;
	u64 retransmits, timeouts, duplicates, rx_dropped, naks_tx, naks_rx;
	u64 frontends_accepted, frontends_active, frontends_cleaned_up;
	u64 requests, responses, rejected, violations, control_errors;
	/* refused as hostile (vmrdma::counters has what each means) */
	u64 cookies_refused, challenges, connections_refused;
	u64 out_of_window, auth_failed, replays, offences;
	u32 auth;        /* 1: frames authenticated with a pre-shared key */
	u32 pad;
};

/* One user (uid) of the daemon: what its frontends hold of each pool, its
 * limits (0: not limited: root, the daemon's uid) and what is kept free for
 * the others; requests refused for its share. */
struct vr_admin_uid {
	u32 uid;
	u32 frontends, endpoints, conns;
	u32 max_frontends, max_endpoints, max_conns;
	u32 reserve_frontends, reserve_endpoints, reserve_conns;
	u64 refused;
};

/* A control message, request or reply: 128 bytes. */
struct vr_ctl_msg {
	u32 magic;
	u16 version;
	u16 type;       /* enum vr_ctl_type; the reply repeats it */
	u32 seq;        /* the reply repeats it */
	s32 status;     /* reply: 0 or a negative errno */
	u64 arg[6];
	char text[64];  /* reply: why, NUL-terminated, when status != 0 */
};

VR_STATIC_ASSERT(sizeof(struct vr_ctl_msg) == 128, "control message ABI");
VR_STATIC_ASSERT(sizeof(struct vr_admin_frontend) == 120, "admin ABI");
VR_STATIC_ASSERT(sizeof(struct vr_admin_endpoint) == 88, "admin ABI");
VR_STATIC_ASSERT(sizeof(struct vr_admin_conn) == 24, "admin ABI");
VR_STATIC_ASSERT(sizeof(struct vr_admin_device) == 224, "admin ABI");
VR_STATIC_ASSERT(sizeof(struct vr_admin_uid) == 48, "admin ABI");

#endif /* VR_CONTROL_H */
