// SPDX-License-Identifier: GPL-2.0 OR MIT
/* service.c - the frontend service's rules (service.h). */
#include "service.h"
#include "crypto.h"
#include "ring.h"
#include "xen.h"

u32 vr_svc_ep_weight(u64 asked, u32 max_weight, u32 admin_weight)
{
	u64 w = asked ? asked : 1;

	if (w > max_weight)
		w = max_weight;
	if (admin_weight)
		w = admin_weight;
	return vr_svc_clamp_weight(w);
}

int vr_svc_check_open_ep(const struct vr_svc_limits *lim, const struct vr_svc_usage *use,
			 u64 id, u32 max_ep_id, const char **why)
{
	if (id >= max_ep_id) {
		*why = "endpoint id out of range";
		return -EINVAL;
	}
	if (use->endpoints >= lim->endpoints) {
		*why = "limit: endpoints per frontend";
		return -ENOSPC;
	}
	return 0;
}

int vr_svc_check_reg(const struct vr_svc_limits *lim, const struct vr_svc_usage *use,
		     bool ep_owned, u64 len, u64 access, const char **why)
{
	u64 room;

	if (!ep_owned) {
		*why = "not your endpoint";
		return -ENOENT;
	}
	if (!len) {
		*why = "empty region";
		return -EINVAL;
	}
	if (access & ~(u64)VR_ACCESS_ALL) {
		*why = "unknown access bits";
		return -EINVAL;
	}
	if (use->regions >= lim->regions) {
		*why = "limit: regions per frontend";
		return -ENOSPC;
	}
	room = use->registered_bytes >= lim->registered_bytes ?
		       0 : lim->registered_bytes - use->registered_bytes;
	if (len > room) {
		*why = "limit: registered bytes per frontend";
		return -ENOSPC;
	}
	return 0;
}

int vr_svc_check_grant_reg(u64 first_page_off, u64 len, u64 pages, const char **why)
{
	if (first_page_off >= VR_XEN_PAGE_SIZE ||
	    len > (u64)VR_XEN_MAX_REG_PAGES * VR_XEN_PAGE_SIZE ||
	    pages != vr_xen_reg_pages(first_page_off, len)) {
		*why = "granted pages do not match the region";
		return -EINVAL;
	}
	return 0;
}

u32 vr_svc_wc_of_ring_op(u32 ring_op)
{
	switch (ring_op) {
	case VR_RING_WRITE:
		return VR_WC_WRITE;
	case VR_RING_READ:
		return VR_WC_READ;
	case VR_RING_SEND:
		return VR_WC_SEND;
	case VR_RING_RECV:
		return VR_WC_RECV;
	case VR_RING_FADD:
		return VR_WC_FADD;
	case VR_RING_CSWAP:
		return VR_WC_CSWAP;
	case VR_RING_CONNECT:
	case VR_RING_ACCEPT:
		return VR_WC_CONNECT;
	case VR_RING_CLOSED:
		return VR_WC_DISCONNECT;
	case VR_RING_RESOLVE:
		return VR_WC_RESOLVE;
	default:
		return 0;
	}
}

/* The bytes a request names in its own region (private data, a name),
 * read into buf; at most max of them. */
static int read_small(struct vr_engine *eng, const struct vr_ring_req *req, u8 *buf, u32 max)
{
	if (req->len > max)
		return -EINVAL;
	return req->len ? vr_mem_read(eng, req->ep, req->lkey, req->loff, buf, req->len) : 0;
}

int vr_svc_post(struct vr_engine *eng, const struct vr_ring_req *req, u32 conn, u64 cookie,
		u32 *new_conn)
{
	u8 buf[VR_PRIVATE_DATA_MAX > VR_NAME_MAX ? VR_PRIVATE_DATA_MAX : VR_NAME_MAX];
	int rc;

	switch (req->opcode) {
	case VR_RING_WRITE:
		return vr_post_write(eng, conn, req->lkey, req->loff, req->rkey, req->roff,
				     req->len, cookie);
	case VR_RING_READ:
		return vr_post_read(eng, conn, req->lkey, req->loff, req->rkey, req->roff,
				    req->len, cookie);
	case VR_RING_SEND:
		return vr_post_send(eng, conn, req->lkey, req->loff, req->len, req->tag, cookie);
	case VR_RING_FADD:
		return vr_post_fadd(eng, conn, req->rkey, req->roff, req->operand, cookie);
	case VR_RING_CSWAP:
		return vr_post_cswap(eng, conn, req->rkey, req->roff, req->operand, req->swap,
				     cookie);
	case VR_RING_RECV:
		return vr_post_recv(eng, req->ep, req->lkey, req->loff, req->len, req->tag,
				    req->mask, cookie);
	case VR_RING_CONNECT:
		rc = read_small(eng, req, buf, VR_PRIVATE_DATA_MAX);
		return rc ? rc : vr_connect_data(eng, req->ep, req->peer_mac, req->peer_ep, buf,
						 req->len, cookie, new_conn);
	case VR_RING_ACCEPT_DATA:
		rc = read_small(eng, req, buf, VR_PRIVATE_DATA_MAX);
		return rc ? rc : vr_ep_set_accept_data(eng, req->ep, buf, req->len);
	case VR_RING_NAME:
		rc = read_small(eng, req, buf, VR_NAME_MAX);
		return rc ? rc : vr_ep_set_name(eng, req->ep, buf, req->len);
	case VR_RING_RESOLVE:
		rc = read_small(eng, req, buf, VR_NAME_MAX);
		return rc ? rc : vr_resolve(eng, req->ep, buf, req->len, cookie);
	case VR_RING_DISCONNECT:
		return vr_disconnect(eng, conn);
	case VR_RING_AUTH_KEY:
		if (req->len && req->len != VR_AUTH_KEY_LEN)
			return -EINVAL;
		rc = read_small(eng, req, buf, VR_AUTH_KEY_LEN);
		if (!rc)
			rc = vr_ep_set_auth_key(eng, req->ep, req->len ? buf : NULL);
		vr_crypto_wipe(buf, VR_AUTH_KEY_LEN);
		return rc;
	case VR_RING_LISTEN:
		return vr_ep_listen(eng, req->ep);
	case VR_RING_PD_ALLOC:
		return vr_pd_alloc(eng, req->ep, new_conn); /* the domain, in rsp.value */
	case VR_RING_PD_FREE:
		return req->operand > 0xFFFF ? -ENOENT : vr_pd_free(eng, req->ep, (u32)req->operand);
	case VR_RING_PD_BIND:
		if (req->operand > 0xFFFF)
			return -ENOENT;
		rc = conn ? vr_conn_set_pd(eng, conn, (u32)req->operand) : 0;
		if (!rc && req->lkey)
			rc = vr_mr_set_pd(eng, req->ep, req->lkey, (u32)req->operand);
		return rc;
	default:
		return -EINVAL;
	}
}

void vr_svc_rsp_of_wc(const struct vr_svc_pending *req, const struct vr_completion *wc,
		      u32 new_conn, struct vr_ring_rsp *rsp)
{
	vr_svc_rsp_init(rsp, req->cookie, req->opcode, req->ep, req->conn);
	rsp->status = wc->status;
	rsp->nak_reason = wc->nak_reason;
	switch (req->opcode) {
	case VR_RING_WRITE:
	case VR_RING_READ:
	case VR_RING_SEND:
		rsp->bytes = wc->status ? 0 : req->len;
		break;
	case VR_RING_RECV:
		rsp->bytes = wc->bytes;
		rsp->tag = wc->tag;
		rsp->value = wc->value; /* the source */
		break;
	case VR_RING_FADD:
	case VR_RING_CSWAP:
		rsp->value = wc->value;
		break;
	case VR_RING_CONNECT:
	case VR_RING_ACCEPT:
		if (!wc->status)
			rsp->conn = new_conn;
		rsp->bytes = wc->bytes;
		rsp->value = wc->value; /* the peer */
		break;
	case VR_RING_RESOLVE:
		rsp->tag = wc->tag;
		rsp->value = wc->value;
		break;
	}
}

int vr_svc_peer_data(struct vr_engine *eng, const struct vr_svc_pending *req, u32 conn,
		     u64 *bytes)
{
	u8 buf[VR_PRIVATE_DATA_MAX];
	int n = vr_conn_peer_data(eng, conn, buf, sizeof(buf));
	u32 room;

	*bytes = 0;
	if (n < 0)
		return n;
	room = req->room < (u64)n ? (u32)req->room : (u32)n;
	*bytes = (u64)n;
	return room ? vr_mem_write(eng, req->ep, req->lkey, req->loff, buf, room) : 0;
}

void vr_svc_wc_of_rsp(const struct vr_ring_rsp *rsp, struct vr_completion *wc)
{
	memset(wc, 0, sizeof(*wc));
	wc->cookie = rsp->cookie;
	wc->status = rsp->status;
	wc->nak_reason = rsp->nak_reason;
	wc->conn = rsp->conn;
	wc->ep = rsp->ep;
	wc->bytes = rsp->bytes;
	wc->tag = rsp->tag;
	wc->value = rsp->value;
	wc->op = vr_svc_wc_of_ring_op(rsp->opcode);
}
