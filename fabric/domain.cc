// fi_domain: one vmrdma device (shared per URI), its MR table and the atomic
// query; fi_mr_reg and its MR objects.
#include <sys/random.h>

#include <cstring>

#include "fabric/atomics.hpp"
#include "fabric/glue.hpp"
#include "fabric/info.hpp"
#include "fabric/ipv4.hpp"

namespace vmrdma::fabric {

namespace {

domain_obj* domain_of(fid* f) { return owner_of(owner_of(f, &fid_domain::fid), &domain_obj::fid); }

int domain_close(fid* f) {
    auto* d = domain_of(f);
    {
        std::lock_guard lock(d->ctx->mutex());
        if (d->refs > 0 || !d->mrs.empty()) return -FI_EBUSY;
    }
    d->fabric->refs--;
    delete d;  // the device goes with its last domain
    return 0;
}

fi_ops domain_fi_ops = {
    .size = sizeof(fi_ops),
    .close = domain_close,
    .bind = no_bind,
    .control = no_control,
    .ops_open = no_ops_open,
    .tostr = nullptr,
    .ops_set = nullptr,
};

int query_atomic(fid_domain*, fi_datatype datatype, fi_op op, fi_atomic_attr* attr, std::uint64_t flags) {
    const auto kind = (flags & FI_COMPARE_ATOMIC) ? atomic_kind::compare
                      : (flags & FI_FETCH_ATOMIC) ? atomic_kind::fetch
                                                  : atomic_kind::base;
    if (!atomic_valid(kind, op, datatype)) return -FI_EOPNOTSUPP;
    attr->size = atomic_size(datatype);
    attr->count = inject_max / 2 / attr->size;  // operands and compare values travel inline
    return 0;
}

int no_scalable_ep(fid_domain*, fi_info*, fid_ep**, void*) { return -FI_ENOSYS; }
int no_poll_open(fid_domain*, fi_poll_attr*, fid_poll**) { return -FI_ENOSYS; }
int no_stx(fid_domain*, fi_tx_attr*, fid_stx**, void*) { return -FI_ENOSYS; }
int no_srx(fid_domain*, fi_rx_attr*, fid_ep**, void*) { return -FI_ENOSYS; }
int no_collective(fid_domain*, fi_collective_op, fi_collective_attr*, std::uint64_t) { return -FI_ENOSYS; }

fi_ops_domain domain_ops = {
    .size = sizeof(fi_ops_domain),
    .av_open = av_open,
    .cq_open = cq_open,
    .endpoint = endpoint_open,
    .scalable_ep = no_scalable_ep,
    .cntr_open = cntr_open,
    .poll_open = no_poll_open,
    .stx_ctx = no_stx,
    .srx_ctx = no_srx,
    .query_atomic = query_atomic,
    .query_collective = no_collective,
    .endpoint2 = nullptr,
};

// --- MRs ---

mr_obj* mr_of(fid* f) { return owner_of(owner_of(f, &fid_mr::fid), &mr_obj::fid); }

int mr_close(fid* f) {
    auto* m = mr_of(f);
    auto* d = m->dom;
    std::lock_guard lock(d->ctx->mutex());
    d->mrs.erase(m->fid.key);
    if (m->cntr) m->cntr->refs--;
    delete m;
    return 0;
}

int mr_bind(fid* f, fid* bfid, std::uint64_t flags) {
    auto* m = mr_of(f);
    if (bfid->fclass != FI_CLASS_CNTR) return -FI_EINVAL;
    if (!(flags & (FI_REMOTE_READ | FI_REMOTE_WRITE))) return -FI_EINVAL;
    std::lock_guard lock(m->dom->ctx->mutex());
    auto* c = owner_of(owner_of(bfid, &fid_cntr::fid), &cntr_obj::fid);
    if (m->cntr) m->cntr->refs--;
    m->cntr = c;
    c->refs++;
    return 0;
}

int mr_control(fid*, int command, void*) { return command == FI_ENABLE ? 0 : -FI_ENOSYS; }

fi_ops mr_fi_ops = {
    .size = sizeof(fi_ops),
    .close = mr_close,
    .bind = mr_bind,
    .control = mr_control,
    .ops_open = no_ops_open,
    .tostr = nullptr,
    .ops_set = nullptr,
};

int mr_regv(fid* f, const iovec* iov, std::size_t count, std::uint64_t access, std::uint64_t offset,
            std::uint64_t requested_key, std::uint64_t flags, fid_mr** out, void* context) {
    if (count != 1) return -FI_EINVAL;  // mr_iov_limit is 1
    return mr_reg(f, iov[0].iov_base, iov[0].iov_len, access, offset, requested_key, flags, out, context);
}

int mr_regattr(fid* f, const fi_mr_attr* attr, std::uint64_t flags, fid_mr** out) {
    if (!attr || attr->iov_count != 1) return -FI_EINVAL;
    return mr_reg(f, attr->mr_iov[0].iov_base, attr->mr_iov[0].iov_len, attr->access, attr->offset,
                  attr->requested_key, flags, out, attr->context);
}

fi_ops_mr mr_ops = {
    .size = sizeof(fi_ops_mr),
    .reg = mr_reg,
    .regv = mr_regv,
    .regattr = mr_regattr,
};

}  // namespace

int domain_open(fid_fabric* fabric, fi_info* info, fid_domain** out, void* context) {
    return guarded([&]() -> int {
        if (!info || !info->domain_attr || !info->domain_attr->name) return -FI_EINVAL;
        auto d = std::make_unique<domain_obj>();
        try {
            d->ctx = device_context::acquire(info->domain_attr->name);
        } catch (const std::exception& e) {
            if (users_to_mend(e)) report_configuration_error(e.what());
            throw;
        }
        d->fabric = owner_of(fabric, &fabric_obj::fid);
        d->info = fi_dupinfo(info);
        if (!d->info) return -FI_ENOMEM;
        const auto mode = static_cast<std::uint64_t>(info->domain_attr->mr_mode);
        d->virt_addr = mode == FI_MR_BASIC || (mode & FI_MR_VIRT_ADDR);
        d->prov_key = mode == FI_MR_BASIC || (mode & FI_MR_PROV_KEY);
        d->ipv4 = info->addr_format == FI_SOCKADDR_IN || info->addr_format == FI_SOCKADDR;
        if (d->ipv4) {
            // Only eth: offers IPv4 addressing (info.cc): the interface's.
            auto ip = interface_ipv4(d->ctx->uri().substr(4));
            if (!ip) return -FI_ENODATA;
            d->own_ipv4 = *ip;
        }
        d->fid.fid.fclass = FI_CLASS_DOMAIN;
        d->fid.fid.context = context;
        d->fid.fid.ops = &domain_fi_ops;
        d->fid.ops = &domain_ops;
        d->fid.mr = &mr_ops;
        d->fabric->refs++;
        *out = &d.release()->fid;
        return 0;
    });
}

int mr_reg(fid* f, const void* buf, std::size_t len, std::uint64_t access, std::uint64_t offset,
           std::uint64_t requested_key, std::uint64_t flags, fid_mr** out, void* context) {
    return guarded([&]() -> int {
        if (f->fclass != FI_CLASS_DOMAIN) return -FI_EINVAL;  // FI_MR_ENDPOINT is not used
        if (flags) return -FI_EBADFLAGS;
        auto* d = domain_of(f);
        std::lock_guard lock(d->ctx->mutex());
        std::uint64_t key = requested_key;
        if (d->prov_key) {
            // 64 bits from the OS's CSPRNG: a peer that does not know a key
            // cannot guess one (as vmrdma's own rkeys).
            do {
                if (getrandom(&key, sizeof key, 0) != sizeof key) return -FI_EIO;
            } while (key == 0 || d->mrs.count(key));
        } else if (d->mrs.count(key)) {
            return -FI_ENOKEY;
        }
        auto m = std::make_unique<mr_obj>();
        m->dom = d;
        m->base = static_cast<std::byte*>(const_cast<void*>(buf));
        m->len = len;
        m->access = access;
        m->offset = offset;
        m->fid.fid.fclass = FI_CLASS_MR;
        m->fid.fid.context = context;
        m->fid.fid.ops = &mr_fi_ops;
        m->fid.key = key;
        m->fid.mem_desc = m.get();  // local buffers are copied: the descriptor is not needed
        d->mrs[key] = m.get();
        *out = &m.release()->fid;
        return 0;
    });
}

}  // namespace vmrdma::fabric
