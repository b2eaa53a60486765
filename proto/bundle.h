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

struct vr_bundle_writer {
	u8 *buf;   /* the open bundle's first byte; NULL when none is open */
	u32 cap;   /* the most bytes this bundle may take */
	u32 len;   /* bytes written so far */
	u16 count; /* frames in it */
};

/* What to send once a bundle is closed: buf[off .. off + len). */
struct vr_bundle_span {
	u32 off;
	u32 len;
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

/*
 * Appends f whole (header and fragments, read through mem) to the open
 * bundle, which f must join.  Returns 0, or the copy's negative errno with
 * the bundle as it was.
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
