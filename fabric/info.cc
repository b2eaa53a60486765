#include "fabric/info.hpp"

#include <arpa/inet.h>

#include <net/if.h>
#include <net/if_arp.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "fabric/ipv4.hpp"

namespace vmrdma::fabric {

namespace {

std::string read_line(const std::filesystem::path& p) {
    std::ifstream in(p);
    std::string s;
    std::getline(in, s);
    return s;
}

bool known_scheme(const std::string& uri) {
    return uri.rfind("eth:", 0) == 0 || uri.rfind("unix:", 0) == 0 || uri.rfind("xen:", 0) == 0;
}

// Whether a hints value asks for more than `ours` (0 in hints: no wish).
bool more_than(std::size_t wanted, std::size_t ours) { return wanted != 0 && wanted > ours; }

char* dup(const std::string& s) { return strdup(s.c_str()); }

void set_address(void*& field, std::size_t& len, const fabric_address& a) {
    std::free(field);
    field = std::malloc(address_size);
    encode_address(a, field);
    len = address_size;
}

// Where `node` names this device: "localhost", its MAC, or an address of it.
std::optional<fabric_address> resolve_node(const char* node, const char* service, const mac_address& mac) {
    fabric_address a{mac, std::nullopt};
    std::string_view n(node ? node : "");
    if (!n.empty() && n != "localhost") {
        if (auto parsed = parse_address(n)) {
            a = *parsed;
        } else {
            try {
                a.mac = mac_address::parse(n);
            } catch (const error&) {
                return std::nullopt;  // a host name or an IP address: not a vmrdma address
            }
        }
    }
    if (service && *service) {
        auto ep = parse_service(service);
        if (!ep || (a.endpoint && *a.endpoint != *ep)) return std::nullopt;
        a.endpoint = ep;
    }
    return a;
}

void set_socket_address(void*& field, std::size_t& len, const sockaddr_in& in) {
    std::free(field);
    field = std::malloc(sizeof in);
    std::memcpy(field, &in, sizeof in);
    len = sizeof in;
}

sockaddr_in socket_address(in_addr ip, std::uint16_t port) {
    sockaddr_in in{};
    in.sin_family = AF_INET;
    in.sin_addr = ip;
    in.sin_port = htons(port);
    return in;
}

// FI_SOCKADDR_IN (ipv4.hpp): this side is the eth: interface's IPv4 address,
// a peer an IPv4 host (node) and its endpoint id (service, the port).
bool ipv4_addresses(const std::string& uri, const char* node, const char* service, std::uint64_t flags,
                    const fi_info* hints, std::optional<sockaddr_in>& src, std::optional<sockaddr_in>& dest,
                    std::string& why) {
    std::optional<in_addr> own = uri.rfind("eth:", 0) == 0 ? interface_ipv4(uri.substr(4)) : std::nullopt;
    if (!own) {
        why = "IPv4 addressing needs an eth: device whose interface has an IPv4 address";
        return false;
    }
    std::optional<std::uint16_t> port = service && *service ? parse_service(service) : std::uint16_t{0};
    if (!port) {
        why = "the service is not an endpoint id (0..65535)";
        return false;
    }
    src = socket_address(*own, 0);
    if ((flags & FI_SOURCE) || !node) {
        if (node && std::strcmp(node, "localhost") != 0) {
            auto ip = parse_ipv4_host(node);
            if (!ip || ip->s_addr != own->s_addr) {
                why = "FI_SOURCE names an address that is not this interface's";
                return false;
            }
        }
        src = socket_address(*own, *port);
    } else {
        auto ip = parse_ipv4_host(node);
        if (!ip) {
            why = "node is not an IPv4 host";
            return false;
        }
        dest = socket_address(*ip, *port);
    }
    if (hints && hints->src_addr && hints->src_addrlen >= sizeof(sockaddr_in)) {
        std::memcpy(&*src, hints->src_addr, sizeof(sockaddr_in));
        if (src->sin_family != AF_INET || src->sin_addr.s_addr != own->s_addr) {
            why = "the hints' source address is not this interface's";
            return false;
        }
    }
    if (hints && hints->dest_addr && hints->dest_addrlen >= sizeof(sockaddr_in)) {
        dest.emplace();
        std::memcpy(&*dest, hints->dest_addr, sizeof(sockaddr_in));
    }
    return true;
}

}  // namespace

std::vector<std::string> candidate_devices(const fi_info* hints, std::string& why) {
    if (hints && hints->domain_attr && hints->domain_attr->name) {
        std::string name = hints->domain_attr->name;
        if (known_scheme(name)) return {name};
        why = "domain '" + name + "' is not a vmrdma device URI (eth:IF, unix:PATH, xen:DEVICE)";
        return {};
    }
    if (const char* env = std::getenv("VMRDMA_DEVICE"); env && *env) {
        if (known_scheme(env)) return {env};
        why = std::string("VMRDMA_DEVICE='") + env + "' is not eth:IF, unix:PATH or xen:DEVICE";
        return {};
    }
    std::vector<std::string> up;
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator("/sys/class/net", ec)) {
        const auto dir = entry.path();
        if (read_line(dir / "type") != std::to_string(ARPHRD_ETHER)) continue;
        unsigned long flags = std::strtoul(read_line(dir / "flags").c_str(), nullptr, 16);
        if (!(flags & IFF_UP) || (flags & IFF_LOOPBACK)) continue;
        up.push_back(dir.filename().string());
    }
    if (up.size() == 1) return {"eth:" + up[0]};
    why = up.empty() ? "no Ethernet interface is up; set VMRDMA_DEVICE (eth:IF, unix:PATH, xen:DEVICE)"
                     : "several Ethernet interfaces are up; set VMRDMA_DEVICE=eth:IF to choose one";
    return {};
}

std::optional<mac_address> mac_without_opening(const std::string& uri) {
    if (uri.rfind("eth:", 0) != 0) return std::nullopt;
    const std::string ifname = uri.substr(4);
    if (ifname.empty() || ifname.find('/') != std::string::npos) return std::nullopt;
    try {
        return mac_address::parse(read_line("/sys/class/net/" + ifname + "/address"));
    } catch (const error&) {
        return std::nullopt;
    }
}

fi_info* describe(std::uint32_t version, const std::string& uri, const mac_address& mac, const char* node,
                  const char* service, std::uint64_t flags, const fi_info* hints, std::string& why) {
    auto refuse = [&](const char* reason) -> fi_info* {
        why = reason;
        return nullptr;
    };
    // --- what the hints ask for ---
    std::uint64_t caps = primary_caps | secondary_caps;
    if (hints) {
        if (hints->caps & ~caps) return refuse("capabilities the provider lacks");
        if (hints->caps & primary_caps) {
            // The primary capabilities asked for and every secondary one;
            // the modifiers (FI_SEND, FI_READ, ...) as asked, or all of them.
            constexpr std::uint64_t modifiers =
                FI_SEND | FI_RECV | FI_READ | FI_WRITE | FI_REMOTE_READ | FI_REMOTE_WRITE;
            caps = (hints->caps & primary_caps) | (secondary_caps & ~modifiers) |
                   ((hints->caps & modifiers) ? hints->caps & modifiers : modifiers);
        }
        if (hints->addr_format != FI_FORMAT_UNSPEC && hints->addr_format != FI_SOCKADDR &&
            hints->addr_format != FI_SOCKADDR_IN)
            return refuse("an address format other than the provider's own or FI_SOCKADDR_IN");
        if (const auto* e = hints->ep_attr) {
            if (e->type != FI_EP_UNSPEC && e->type != FI_EP_RDM) return refuse("an endpoint type other than FI_EP_RDM");
            if (e->protocol != FI_PROTO_UNSPEC) return refuse("a protocol");
            if (more_than(e->max_msg_size, max_message)) return refuse("messages larger than 1 GiB");
            if (e->tx_ctx_cnt > 1 || e->rx_ctx_cnt > 1) return refuse("several transmit or receive contexts");
            if (e->auth_key_size) return refuse("an authorization key");
            if (more_than(e->max_order_raw_size, max_order_size) || more_than(e->max_order_war_size, max_order_size) ||
                more_than(e->max_order_waw_size, max_order_size))
                return refuse("RMA ordering beyond 16 KiB");
        }
        if (const auto* d = hints->domain_attr) {
            if (d->cq_data_size > cq_data_size) return refuse("remote CQ data over 8 bytes");
            if (d->caps & ~(FI_LOCAL_COMM | FI_REMOTE_COMM)) return refuse("domain capabilities the provider lacks");
            if (d->max_ep_tx_ctx > 1 || d->max_ep_rx_ctx > 1) return refuse("several contexts per endpoint");
            if (d->max_ep_stx_ctx || d->max_ep_srx_ctx) return refuse("shared contexts");
            if (d->auth_key_size) return refuse("an authorization key");
        }
        if (const auto* t = hints->tx_attr) {
            if (t->caps & ~tx_caps) return refuse("transmit capabilities the provider lacks");
            if (t->msg_order & ~msg_order) return refuse("a message ordering the provider lacks");
            if (t->comp_order & ~FI_ORDER_NONE) return refuse("completion ordering");
            if (more_than(t->inject_size, inject_max) || more_than(t->size, queue_size) ||
                more_than(t->iov_limit, iov_limit) || more_than(t->rma_iov_limit, 1))
                return refuse("transmit limits beyond the provider's");
        }
        if (const auto* r = hints->rx_attr) {
            if (r->caps & ~rx_caps) return refuse("receive capabilities the provider lacks");
            if (r->msg_order & ~msg_order) return refuse("a message ordering the provider lacks");
            if (r->comp_order & ~FI_ORDER_NONE) return refuse("completion ordering");
            if (more_than(r->size, queue_size) || more_than(r->iov_limit, iov_limit) || r->total_buffered_recv)
                return refuse("receive limits beyond the provider's");
        }
        if (const auto* f = hints->fabric_attr) {
            if (f->name && std::strcmp(f->name, provider_name) != 0) return refuse("another fabric");
        }
    }

    // --- addresses ---
    const bool ipv4 = hints && (hints->addr_format == FI_SOCKADDR || hints->addr_format == FI_SOCKADDR_IN);
    std::optional<sockaddr_in> src_in, dest_in;
    if (ipv4 && !ipv4_addresses(uri, node, service, flags, hints, src_in, dest_in, why)) return nullptr;
    std::optional<fabric_address> src{fabric_address{mac, std::nullopt}}, dest;
    if (ipv4) {
        // the socket addresses above
    } else if (flags & FI_SOURCE) {
        auto a = resolve_node(node, service, mac);
        if (!a || !(a->mac == mac)) return refuse("FI_SOURCE names an address that is not this device's");
        src = a;
    } else if (node || service) {
        if (!node) {
            // A service alone: where this side listens (as with FI_SOURCE).
            auto a = resolve_node(nullptr, service, mac);
            if (!a) return refuse("the service is not an endpoint id (0..65535)");
            src = a;
        } else {
            dest = resolve_node(node, service, mac);
            if (!dest || !dest->endpoint) return refuse("node/service do not name a vmrdma endpoint");
        }
    }
    if (hints && hints->src_addr && !ipv4) {
        auto a = decode_address(hints->src_addr, hints->src_addrlen);
        if (!a || !(a->mac == mac)) return refuse("the hints' source address is not this device's");
        src = a;
    }
    if (hints && hints->dest_addr && !ipv4) {
        auto a = decode_address(hints->dest_addr, hints->dest_addrlen);
        if (!a || !a->endpoint) return refuse("the hints' destination address is not a vmrdma endpoint");
        dest = a;
    }

    // --- the answer ---
    fi_info* info = fi_allocinfo();
    if (!info) return refuse("out of memory");
    info->caps = caps;
    info->mode = 0;
    if (ipv4) {
        info->addr_format = FI_SOCKADDR_IN;
        set_socket_address(info->src_addr, info->src_addrlen, *src_in);
        if (dest_in) set_socket_address(info->dest_addr, info->dest_addrlen, *dest_in);
    } else {
        info->addr_format = FI_FORMAT_UNSPEC;  // the provider's own, 16 bytes (address.hpp)
        set_address(info->src_addr, info->src_addrlen, *src);
        if (dest) set_address(info->dest_addr, info->dest_addrlen, *dest);
    }

    auto* tx = info->tx_attr;
    tx->caps = caps & tx_caps;
    tx->mode = 0;
    tx->op_flags = hints && hints->tx_attr ? hints->tx_attr->op_flags & (FI_COMPLETION | FI_INJECT_COMPLETE |
                                                                           FI_TRANSMIT_COMPLETE |
                                                                           FI_DELIVERY_COMPLETE)
                                           : 0;
    tx->msg_order = hints && hints->tx_attr && hints->tx_attr->msg_order ? hints->tx_attr->msg_order : msg_order;
    tx->comp_order = FI_ORDER_NONE;
    tx->inject_size = inject_max;
    tx->size = queue_size;
    tx->iov_limit = iov_limit;
    tx->rma_iov_limit = 1;

    auto* rx = info->rx_attr;
    rx->caps = caps & rx_caps;
    rx->mode = 0;
    rx->op_flags = hints && hints->rx_attr ? hints->rx_attr->op_flags & (FI_COMPLETION | FI_MULTI_RECV) : 0;
    rx->msg_order = hints && hints->rx_attr && hints->rx_attr->msg_order ? hints->rx_attr->msg_order : msg_order;
    rx->comp_order = FI_ORDER_NONE;
    rx->total_buffered_recv = 0;
    rx->size = queue_size;
    rx->iov_limit = iov_limit;

    auto* ep = info->ep_attr;
    ep->type = FI_EP_RDM;
    ep->protocol = FI_PROTO_UNSPEC;
    ep->protocol_version = 1;
    ep->max_msg_size = max_message;
    ep->msg_prefix_size = 0;
    ep->max_order_raw_size = max_order_size;
    ep->max_order_war_size = max_order_size;
    ep->max_order_waw_size = max_order_size;
    ep->mem_tag_format = ~std::uint64_t{0};  // all 64 bits
    ep->tx_ctx_cnt = 1;
    ep->rx_ctx_cnt = 1;

    auto* dom = info->domain_attr;
    dom->name = dup(uri);
    dom->threading = hints && hints->domain_attr && hints->domain_attr->threading ? hints->domain_attr->threading
                                                                                  : FI_THREAD_SAFE;
    auto progress = [&](fi_progress wanted) { return wanted == FI_PROGRESS_AUTO ? FI_PROGRESS_AUTO : FI_PROGRESS_MANUAL; };
    dom->control_progress = progress(hints && hints->domain_attr ? hints->domain_attr->control_progress
                                                                 : FI_PROGRESS_UNSPEC);
    dom->data_progress = progress(hints && hints->domain_attr ? hints->domain_attr->data_progress
                                                              : FI_PROGRESS_UNSPEC);
    dom->resource_mgmt = hints && hints->domain_attr && hints->domain_attr->resource_mgmt
                             ? hints->domain_attr->resource_mgmt
                             : FI_RM_ENABLED;
    dom->av_type = hints && hints->domain_attr ? hints->domain_attr->av_type : FI_AV_UNSPEC;
    // The MR modes: what the application allows of the ones the provider
    // can use (it needs none); the v1.0 values are answered in kind.
    const std::uint64_t asked = hints && hints->domain_attr ? hints->domain_attr->mr_mode : mr_modes;
    if (asked == FI_MR_BASIC || asked == FI_MR_SCALABLE)
        dom->mr_mode = static_cast<int>(asked);
    else if (asked == FI_MR_UNSPEC && version < FI_VERSION(1, 5))
        dom->mr_mode = FI_MR_BASIC;
    else
        dom->mr_mode = static_cast<int>(asked & mr_modes);
    dom->mr_key_size = 8;
    dom->cq_data_size = cq_data_size;
    dom->cq_cnt = 1024;
    dom->ep_cnt = 16;
    dom->tx_ctx_cnt = 16;
    dom->rx_ctx_cnt = 16;
    dom->max_ep_tx_ctx = 1;
    dom->max_ep_rx_ctx = 1;
    dom->max_ep_stx_ctx = 0;
    dom->max_ep_srx_ctx = 0;
    dom->cntr_cnt = 1024;
    dom->mr_iov_limit = 1;
    dom->caps = FI_LOCAL_COMM | FI_REMOTE_COMM;
    dom->mode = 0;
    dom->mr_cnt = 1 << 20;

    auto* fab = info->fabric_attr;
    fab->name = dup(provider_name);
    fab->prov_version = provider_version;
    fab->api_version = version;
    return info;
}

}  // namespace vmrdma::fabric
