// SPDX-License-Identifier: GPL-2.0 OR MIT
/* bundle.c - the bundle encoder (layout in wire.h, decoder in wire.c). */
#include "bundle.h"

bool vr_bundle_joins(const struct vr_bundle_writer *w, const struct vr_frame *f)
{
	return w->buf && f->hdr_len >= VR_ETH_HLEN &&
	       w->len + VR_BUNDLE_ENTRY_HLEN + f->len <= w->cap &&
	       !memcmp(w->buf, f->hdr, VR_ETH_HLEN);
}

void vr_bundle_open(struct vr_bundle_writer *w, u8 *buf, u32 cap,
		    const struct vr_frame *f)
{
	w->buf = buf;
	w->cap = cap;
	w->len = vr_wire_bundle_init(buf, f->hdr);
	w->count = 0;
}

int vr_bundle_append(struct vr_bundle_writer *w, const struct vr_frame *f,
		     const struct vr_mem_ops *mem)
{
	u8 *at = w->buf + w->len;
	u32 i;
	int rc;

	vr_put_be16(at, (u16)f->len);
	at += VR_BUNDLE_ENTRY_HLEN;
	memcpy(at, f->hdr, f->hdr_len);
	at += f->hdr_len;
	for (i = 0; i < f->nfrags; i++) {
		const struct vr_frag *fr = &f->frag[i];

		if (!fr->len)
			continue;
		rc = mem->copy_out(fr->mem, fr->off, at, fr->len);
		if (rc)
			return rc < 0 ? rc : -EFAULT;
		at += fr->len;
	}
	/* Only a whole entry counts: a failed copy leaves len and count. */
	w->len += VR_BUNDLE_ENTRY_HLEN + f->len;
	w->count++;
	return 0;
}

bool vr_bundle_close(struct vr_bundle_writer *w, struct vr_bundle_span *out)
{
	const u32 first = VR_ETH_HLEN + VR_BUNDLE_HLEN + VR_BUNDLE_ENTRY_HLEN;
	bool any = w->buf && w->count;

	if (any) {
		out->count = w->count;
		if (w->count == 1) {
			out->off = first;
			out->len = w->len - first;
		} else {
			vr_wire_bundle_set_count(w->buf, w->count);
			out->off = 0;
			out->len = w->len;
		}
	}
	w->buf = NULL;
	w->count = 0;
	w->len = 0;
	return any;
}
