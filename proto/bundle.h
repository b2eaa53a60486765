/* SPDX-License-Identifier: GPL-2.0 OR MIT */
/*
 * bundle.h - the bundle encoder every sending host uses (the eth: port and
 * backend_kmod).  Sans-I/O: the host owns the buffer (a heap slot, an skb's
 * data) and sends the span vr_bundle_close names; this file owns which
 * frames may join, the layout (wire.h) and the bundle-of-one rule.  The
 * engine unpacks bundles in vr_engine_input.
 */
#ifndef VR_BUNDLE_H
#define VR_BUNDLE_H
#include "engine.h"

/*
 * Gathering (optional, for a host that sends with an iovec): a payload
 * fragment of at least gather_min bytes is not copied into the buffer but
 * recorded as a reference; the bundle on the wire is the buffer's bytes with
 * each referenced fragment inserted where `at` says.  Copying a whole 4 KiB
 * payload to have the kernel copy it again cost its sender a pass over it.
 */
struct vr_bundle_ref {
	void *mem;  /* the fragment, as in struct vr_frag */
	u64 off;
	u32 len;
	u32 at;     /* how many of the buffer's bytes come before it */
};

struct vr_bundle_writer {
	u8 *buf;   /* the open bundle's first byte; NULL when none is open */
	u32 cap;   /* the most bytes this bundle may take on the wire */
	u32 len;   /* its bytes on the wire so far */
	u32 used;  /* of those, the ones written into buf (len less the refs) */
	u16 count; /* frames in it */
	/* gathering: refs[0..ref_cap) for references, or NULL to copy all */
	struct vr_bundle_ref *refs;
	u32 ref_cap, nrefs, gather_min;
};

/* What to send once a bundle is closed: buf[off .. off + used) with
 * refs[0..nrefs) inserted (every ref's `at` lies in that range), len bytes in
 * all; without gathering used == len and nrefs == 0. */
struct vr_bundle_span {
	u32 off;
	u32 len;
	u32 used;
	u32 nrefs;
	u16 count; /* frames it carries: 1 means a plain frame, not a bundle */
};

/* Whether a frame of frame_len bytes is small enough to bundle in
 * bundles of cap bytes (two such frames fit in one). */
static inline bool vr_bundle_wanted(u32 cap, u32 frame_len)
{
	return cap > VR_ETH_HLEN + VR_BUNDLE_HLEN &&
	       frame_len <= vr_wire_bundle_limit(cap);
}

static inline bool vr_bundle_is_open(const struct vr_bundle_writer *w)
{
	return w->buf != NULL;
}

/* Whether f may join the open bundle: same peer and EtherType, room left. */
bool vr_bundle_joins(const struct vr_bundle_writer *w, const struct vr_frame *f);

/* Opens an empty bundle in buf (cap bytes) addressed like f's header. */
void vr_bundle_open(struct vr_bundle_writer *w, u8 *buf, u32 cap,
		    const struct vr_frame *f);

/* Turns gathering on for the bundles opened from now on (refs NULL: off):
 * fragments of at least min bytes become references, up to n of them a
 * bundle (then they are copied). */
void vr_bundle_gather(struct vr_bundle_writer *w, struct vr_bundle_ref *refs, u32 n,
		      u32 min);

/*
 * Appends f whole (header and fragments, read through mem, or referenced
 * when gathering) to the open bundle, which f must join.  Returns 0, or the
 * copy's negative errno with the bundle as it was.
 */
int vr_bundle_append(struct vr_bundle_writer *w, const struct vr_frame *f,
		     const struct vr_mem_ops *mem);

/*
 * Ends the open bundle and says what to send: the whole bundle, or for a
 * bundle of one the plain frame inside it (no bundle header on the wire).
 * Returns false, with nothing to send, if no bundle was open or it is
 * empty.  The writer is closed afterwards.
 */
bool vr_bundle_close(struct vr_bundle_writer *w, struct vr_bundle_span *out);

#endif
