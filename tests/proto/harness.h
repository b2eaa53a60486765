// SPDX-License-Identifier: GPL-2.0 OR MIT
// harness.h - helpers shared by the proto tests.
#pragma once
#include <cstring>
#include <map>
#include <vector>

#include "sim/sim.h"

namespace vrtest {

inline vr_config base_cfg()
{
	vr_config c{};
	c.mtu = 1500;
	c.max_endpoints = 4;
	c.max_conns = 8;
	c.max_regions = 32;
	c.max_ops = 32;
	c.max_recvs = 64;
	c.unexp_depth = 8;
	c.unexp_buf_size = 8192;
	c.window = 32;
	c.ack_every = 4;
	c.ack_delay_ns = 5000;
	c.rto_ns = 50000;
	c.rto_max_ns = 800000;
	c.retry_limit = 12;
	c.peer_timeout_ns = 1000; /* the retry count decides in tests of timing */
	c.keepalive_ns = VR_KEEPALIVE_OFF; /* tests of liveness turn it on */
	c.rnr_delay_ns = 20000;
	c.rnr_retry_limit = 200;
	c.rnr_timeout_ns = 1000; /* the count decides in tests of timing */
	return c;
}

// A registered buffer with guard bytes on both sides.
struct GuardedBuf {
	static constexpr size_t G = 64;
	std::vector<uint8_t> raw;
	size_t len = 0;
	uint64_t key = 0;
	uint8_t *data() { return raw.data() + G; }
	void init(size_t n, uint8_t fill_seed)
	{
		len = n;
		raw.assign(n + 2 * G + 8, 0);
		for (size_t i = 0; i < raw.size(); i++)
			raw[i] = static_cast<uint8_t>(i * 131 + fill_seed);
	}
	bool guards_ok(uint8_t fill_seed) const
	{
		for (size_t i = 0; i < G; i++)
			if (raw[i] != static_cast<uint8_t>(i * 131 + fill_seed))
				return false;
		for (size_t i = G + len; i < raw.size(); i++)
			if (raw[i] != static_cast<uint8_t>(i * 131 + fill_seed))
				return false;
		return true;
	}
};

inline int reg(vrsim::Node &n, uint16_t ep, GuardedBuf &b, uint32_t access)
{
	return vr_reg_mr(n.eng, ep, b.data(), b.len, access, &b.key);
}

// Connect node a ep ea -> node b ep eb (b must be listening); returns conn
// ids on both sides via out params.  Runs the sim until established.
inline bool connect(vrsim::Sim &s, int a, uint16_t ea, int b, uint16_t eb, uint32_t *ca,
		    uint32_t *cb, uint64_t limit = 100000000)
{
	size_t base_b = s.node(b).comps.size();
	size_t base_a = s.node(a).comps.size();
	if (vr_connect(s.node(a).eng, ea, s.node(b).mac, eb, 777, ca))
		return false;
	bool ok = s.run([&] {
		for (size_t i = base_a; i < s.node(a).comps.size(); i++)
			if (s.node(a).comps[i].op == VR_WC_CONNECT)
				return true;
		return false;
	}, s.now + limit);
	if (!ok)
		return false;
	for (size_t i = base_a; i < s.node(a).comps.size(); i++)
		if (s.node(a).comps[i].op == VR_WC_CONNECT && s.node(a).comps[i].status)
			return false;
	for (size_t i = base_b; i < s.node(b).comps.size(); i++)
		if (s.node(b).comps[i].op == VR_WC_ACCEPT) {
			*cb = s.node(b).comps[i].conn;
			return true;
		}
	return false;
}

// Every frame the nodes of a simulation put on the wire, parsed.  The
// parsed pointers are cleared (they pointed into the tapped frame); bytes
// keeps the frame.
struct seen_frame {
	int from;
	vr_parsed p;
	bool tagged; // carried an auth block
	std::vector<uint8_t> bytes;
};

struct frame_log {
	std::vector<seen_frame> seen;
	void attach(vrsim::Sim &s)
	{
		s.tap = [this](int from, const std::vector<uint8_t> &f) {
			seen_frame x{from, {}, false, f};
			if (vr_wire_parse(f.data(), (uint32_t)f.size(), VR_ETHERTYPE_DEFAULT, &x.p))
				return;
			x.tagged = x.p.auth != nullptr;
			x.p.frame = x.p.payload = x.p.auth = nullptr;
			seen.push_back(x);
		};
	}
	// The last frame with this opcode from node `from` (nullptr if none).
	const seen_frame *last(int from, uint8_t op) const
	{
		for (size_t i = seen.size(); i-- > 0;)
			if (seen[i].from == from && seen[i].p.h.opcode == op)
				return &seen[i];
		return nullptr;
	}
	size_t count_op(int from, uint8_t op) const
	{
		size_t k = 0;
		for (auto &x : seen)
			k += x.from == from && x.p.h.opcode == op;
		return k;
	}
};

inline const vr_completion *find(const vrsim::Node &n, uint64_t cookie, uint32_t op = 0)
{
	for (auto &c : n.comps)
		if (c.cookie == cookie && (!op || c.op == op))
			return &c;
	return nullptr;
}

inline size_t count(const vrsim::Node &n, uint64_t cookie, uint32_t op = 0)
{
	size_t k = 0;
	for (auto &c : n.comps)
		if (c.cookie == cookie && (!op || c.op == op))
			k++;
	return k;
}

}  // namespace vrtest
