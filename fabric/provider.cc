// The provider's entry point (fi_prov_ini, which libfabric finds in
// libvmrdma-fi.so on FI_PROVIDER_PATH), fi_getinfo and fi_fabric.
#include <rdma/providers/fi_log.h>
#include <rdma/providers/fi_prov.h>

#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>

#include "fabric/environment.hpp"
#include "fabric/glue.hpp"
#include "fabric/info.hpp"
#include "vmrdma/error.hpp"

#ifndef EXTERNALLY_VISIBLE
#define EXTERNALLY_VISIBLE
#endif

namespace vmrdma::fabric {

void log_warning(const char* fmt, ...) {
    // FI_LOG_LEVEL=warn (or info, debug, trace) shows why the provider
    // offers nothing or refuses a call; quiet by default, as libfabric is.
    static const bool on = [] {
        const char* level = std::getenv("FI_LOG_LEVEL");
        return level && std::strcmp(level, "none") != 0;
    }();
    if (!on) return;
    std::va_list args;
    va_start(args, fmt);
    std::vfprintf(stderr, fmt, args);
    va_end(args);
    std::fputc('\n', stderr);
}

void report_configuration_error(const std::string& what) {
    static std::mutex m;
    static std::string last;
    std::lock_guard lock(m);
    if (what == last) return;
    last = what;
    std::fprintf(stderr, "vmrdma provider: %s\n", what.c_str());
}

bool users_to_mend(const std::exception& e) noexcept {
    const auto* v = dynamic_cast<const vmrdma::error*>(&e);
    return v && (v->code() == vmrdma::errc::invalid_argument || v->code() == vmrdma::errc::permission_denied);
}

namespace {

int fabric_close(fid* f) {
    auto* fab = owner_of(owner_of(f, &fid_fabric::fid), &fabric_obj::fid);
    if (fab->refs > 0) return -FI_EBUSY;
    delete fab;
    return 0;
}

fi_ops fabric_fi_ops = {
    .size = sizeof(fi_ops),
    .close = fabric_close,
    .bind = no_bind,
    .control = no_control,
    .ops_open = no_ops_open,
    .tostr = nullptr,
    .ops_set = nullptr,
};

int no_pep(fid_fabric*, fi_info*, fid_pep**, void*) { return -FI_ENOSYS; }
int no_wait_open(fid_fabric*, fi_wait_attr*, fid_wait**) { return -FI_ENOSYS; }

fi_ops_fabric fabric_ops = {
    .size = sizeof(fi_ops_fabric),
    .domain = domain_open,
    .passive_ep = no_pep,
    .eq_open = eq_open,
    .wait_open = no_wait_open,
    .trywait = trywait,
    .domain2 = nullptr,
};

int open_fabric(fi_fabric_attr* attr, fid_fabric** out, void* context) {
    if (attr && attr->name && std::strcmp(attr->name, provider_name) != 0) return -FI_ENODATA;
    return guarded([&]() -> int {
        auto fab = std::make_unique<fabric_obj>();
        fab->fid.fid.fclass = FI_CLASS_FABRIC;
        fab->fid.fid.context = context;
        fab->fid.fid.ops = &fabric_fi_ops;
        fab->fid.ops = &fabric_ops;
        fab->fid.api_version = attr ? attr->api_version : FI_VERSION(1, 17);
        *out = &fab.release()->fid;
        return 0;
    });
}

// Whether the user chose vmrdma: by the provider's name, by a domain name or
// with VMRDMA_DEVICE. Only then is a device that cannot be opened for a
// reason the user must mend said on stderr whatever FI_LOG_LEVEL is; a
// program that merely lists providers hears nothing of us.
bool chosen_by_user(const fi_info* hints) {
    if (hints && hints->fabric_attr && hints->fabric_attr->prov_name &&
        std::strstr(hints->fabric_attr->prov_name, provider_name))
        return true;
    if (hints && hints->domain_attr && hints->domain_attr->name) return true;
    const char* device = std::getenv("VMRDMA_DEVICE");
    return device && *device;
}

// The MAC of a device: without opening it where possible (eth:), else from
// the shared device (opened, and closed again if nothing else uses it).
std::optional<mac_address> device_mac(const std::string& uri, bool chosen, std::string& why) {
    if (auto mac = mac_without_opening(uri)) return mac;
    try {
        return device_context::acquire(uri)->device().mac();
    } catch (const std::exception& e) {
        why = uri + ": " + e.what();
        if (chosen && users_to_mend(e)) report_configuration_error(why);
        return std::nullopt;
    }
}

int getinfo(std::uint32_t version, const char* node, const char* service, std::uint64_t flags,
            const fi_info* hints, fi_info** out) {
    return guarded([&]() -> int {
        *out = nullptr;
        try {
            read_provider_environment();
        } catch (const vmrdma::error& e) {
            report_configuration_error(e.what());
            return -FI_EINVAL;
        }
        std::string why;
        fi_info* tail = nullptr;
        const bool chosen = chosen_by_user(hints);
        for (const auto& uri : candidate_devices(hints, why)) {
            auto mac = device_mac(uri, chosen, why);
            if (!mac) continue;
            fi_info* info = describe(version, uri, *mac, node, service, flags, hints, why);
            if (!info) continue;
            if (tail)
                tail->next = info;
            else
                *out = info;
            tail = info;
        }
        if (!*out) {
            log_warning("vmrdma: fi_getinfo offers nothing: %s", why.c_str());
            return -FI_ENODATA;
        }
        return 0;
    });
}

void cleanup() {}

fi_provider provider = {
    .version = provider_version,
    .fi_version = FI_VERSION(1, 17),
    .context = {},
    .name = provider_name,
    .getinfo = getinfo,
    .fabric = open_fabric,
    .cleanup = cleanup,
};

}  // namespace

int trywait(fid_fabric*, fid** fids, int count) {
    for (int i = 0; i < count; ++i) {
        int rc = trywait_one(fids[i]);
        if (rc) return rc;
    }
    return 0;
}

}  // namespace vmrdma::fabric

extern "C" FI_EXT_INI { return &vmrdma::fabric::provider; }
