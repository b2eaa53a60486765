// SPDX-License-Identifier: GPL-2.0 OR MIT
// sim.h - deterministic discrete-event simulator for vmrdma engines.
//
// N engines exchange frames over directed links with configurable loss,
// duplication, corruption, reordering, delay and bandwidth.  Everything is
// driven by one seeded PRNG and a virtual clock, so a seed replays exactly.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <queue>
#include <vector>

extern "C" {
#include "engine.h"
}

namespace vrsim {

// splitmix64: tiny, fast, good enough for test randomness.
struct Rng {
	uint64_t s;
	explicit Rng(uint64_t seed) : s(seed) {}
	uint64_t next() {
		uint64_t z = (s += 0x9E3779B97F4A7C15ull);
		z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
		z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
		return z ^ (z >> 31);
	}
	uint64_t below(uint64_t n) { return n ? next() % n : 0; }
	uint64_t range(uint64_t lo, uint64_t hi) { return lo + below(hi - lo + 1); }
	bool ppm(uint32_t p) { return below(1000000) < p; }
};

struct LinkCfg {
	uint32_t loss_ppm = 0, dup_ppm = 0, corrupt_ppm = 0, reorder_ppm = 0;
	uint64_t delay_ns = 1000, jitter_ns = 0;
	uint64_t gbps = 10;              // serialisation rate
	uint64_t queue_ns = 1000000;     // host queue depth in time; beyond -> -EAGAIN
	bool drop_tail = false;          // beyond queue_ns the frame is lost instead (a
	                                 // switch port or a receive ring that overflows)
	bool down = false;               // drop everything (peer vanished)
};

struct LinkStats {
	uint64_t accepted = 0, lost = 0, dup = 0, corrupted = 0, delivered = 0, eagain = 0;
	uint64_t corrupted_delivered = 0;
	uint64_t overflow = 0;           // lost to a full drop-tail queue
};

class Sim;

struct Node {
	Sim *sim = nullptr;
	int idx = 0;
	uint8_t mac[6] = {};
	std::vector<uint64_t> mem;  // engine memory, 8-byte aligned
	vr_engine *eng = nullptr;
	vr_host_ops ops{};
	std::vector<vr_completion> comps;
	std::function<void(const vr_completion &)> on_complete;
	std::function<int(uint16_t, const uint8_t *, uint16_t)> accept;
	// Maps a transmit fragment to bytes; default treats mem as a pointer.
	// Tests with custom vr_mem_ops set this to match their handles.
	std::function<const uint8_t *(void *mem, uint64_t off, uint32_t len)> resolve;
	// Replaces the engine's random source (e.g. to force ISNs near 2^32).
	std::function<uint32_t()> random_override;
	uint64_t rx_delivered = 0, tx_accepted = 0, corrupted_rx = 0;
	bool blocked = false;        // xmit returned -EAGAIN; retry when link frees
	Rng rng{0};
};

class Sim {
public:
	explicit Sim(uint64_t seed) : rng(seed) {}
	~Sim();
	// Adds an engine; host callbacks and mac are filled in. Returns index.
	int add_node(vr_config cfg);
	Node &node(int i) { return *nodes[i]; }
	size_t size() const { return nodes.size(); }
	LinkCfg &link(int from, int to) { return links[{from, to}].cfg; }
	LinkStats &stats(int from, int to) { return links[{from, to}].st; }

	// Schedule host work (posting ops etc.) at an absolute virtual time.
	void at(uint64_t t, std::function<void()> fn);
	// Deliver raw bytes to node `to` at time t (bypasses links; injection).
	void inject(int to, std::vector<uint8_t> bytes, uint64_t t);
	// Observe every frame a node hands to the wire (before link effects).
	std::function<void(int from, const std::vector<uint8_t> &)> tap;
	// Lose a chosen frame on the wire (after tap, counted as lost).
	std::function<bool(int from, int to, const std::vector<uint8_t> &)> drop;

	// Run until pred() is true, nothing is left to do, or now > limit.
	// Returns true if pred() became true.
	bool run(const std::function<bool()> &pred, uint64_t limit_ns);

	uint64_t now = 0;
	Rng rng;

private:
	struct Link {
		LinkCfg cfg;
		LinkStats st;
		uint64_t busy_until = 0;
	};
	struct Ev {
		uint64_t t, seq;
		int to;          // >= 0 packet delivery, -1 action
		bool corrupted;
		std::vector<uint8_t> bytes;
		std::function<void()> fn;
	};
	struct EvCmp {
		bool operator()(const Ev *a, const Ev *b) const {
			return a->t != b->t ? a->t > b->t : a->seq > b->seq;
		}
	};
	friend int sim_xmit(void *, const vr_frame *);
	int xmit(Node &n, const vr_frame *f);
	// One frame over the link n -> to; a unicast may be refused (-EAGAIN).
	int carry(Node &n, int to, const std::vector<uint8_t> &b, bool may_refuse);
	void push(Ev *e);
	bool poll_all();
	int route(const uint8_t *mac) const;

	std::vector<std::unique_ptr<Node>> nodes;
	std::map<std::pair<int, int>, Link> links;
	std::priority_queue<Ev *, std::vector<Ev *>, EvCmp> evq;
	uint64_t seq = 0;
};

int sim_xmit(void *ctx, const vr_frame *f);

}  // namespace vrsim
