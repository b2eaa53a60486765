// SPDX-License-Identifier: GPL-2.0 OR MIT
// Randomised deterministic simulation: per seed, 2-3 engines over lossy,
// reordering, duplicating, corrupting links run a random mix of writes,
// reads, tagged sends/recvs and atomics; afterwards every invariant is
// checked against a shadow model.
//   VMRDMA_SIM_SEED=<n>   replay one seed
//   VMRDMA_SIM_SEEDS=<n>  number of seeds (default 400)
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "harness.h"

using namespace vrtest;
using vrsim::Rng;

namespace {

enum Kind { W, R, S, FADD, CSWAP };

struct Op {
	Kind kind;
	int from, to;
	uint32_t conn;
	uint32_t len;
	uint64_t src_off;   // W/S: in from.src; R: in to.rsrc
	uint64_t dst_off;   // W: in to.wdst; R: in from.sink; S: in to.sink
	uint32_t rlen;      // S: recv buffer length
	uint64_t add, cmp, swp;
	unsigned word;
	uint64_t cookie;
	uint64_t t_post, t_recv;
	bool recv_first;
};

struct NodeMem {
	GuardedBuf src, wdst, rsrc, sink, atom;
	std::vector<uint8_t> wdst_shadow, sink_shadow;
	uint64_t wdst_used = 0, sink_used = 0;
	unsigned cswap_next = 8;
};

constexpr unsigned kWords = 16;

uint32_t pick_size(Rng &r)
{
	uint64_t p = r.below(100);
	if (p < 45) return (uint32_t)r.range(1, 256);
	if (p < 75) return (uint32_t)r.range(257, 16384);
	if (p < 93) return (uint32_t)r.range(16385, 65536);
	return (uint32_t)r.range(65537, 300 * 1024);
}

std::string run_seed(uint64_t seed)
{
	Rng r(seed * 0x9E3779B97F4A7C15ull + 1);
	vrsim::Sim s(seed);
	int nn = r.below(4) == 0 ? 3 : 2;
	vr_config cfg = base_cfg();
	static const uint32_t mtus[] = {1500, 4096, 9000, 65535};
	cfg.mtu = r.below(5) == 4 ? (uint32_t)r.range(1500, 65535) : mtus[r.below(4)];
	cfg.max_ops = (uint32_t)r.range(2, 32);
	cfg.window = (uint32_t)r.range(1, 64);
	cfg.ack_every = (uint32_t)r.range(1, 16);
	cfg.ack_delay_ns = r.range(1000, 30000);
	cfg.unexp_depth = (uint32_t)r.range(1, 8);
	cfg.unexp_buf_size = (uint32_t)r.range(0, 20000);
	cfg.max_regions = 16;
	// A third of the seeds authenticate every frame (drawn apart, so the
	// other draws of a seed stay what they were).
	Rng ra(seed ^ 0xA0A0A0A0A0A0A0A0ull);
	if (ra.below(3) == 0) {
		cfg.auth = VR_AUTH_PSK;
		for (auto &b : cfg.auth_key)
			b = (uint8_t)ra.next();
	}

	vrsim::LinkCfg lc;
	lc.loss_ppm = (uint32_t)(r.below(3) ? r.below(50000) : 0);
	lc.dup_ppm = (uint32_t)(r.below(2) ? r.below(20000) : 0);
	lc.corrupt_ppm = (uint32_t)(r.below(2) ? r.below(20000) : 0);
	lc.reorder_ppm = (uint32_t)(r.below(2) ? r.below(50000) : 0);
	lc.delay_ns = r.range(500, 20000);
	lc.jitter_ns = r.below(lc.delay_ns + 1);
	lc.gbps = r.range(10, 100);
	lc.queue_ns = r.range(2000, 50000);
	uint64_t ser = (uint64_t)cfg.mtu * 8 / lc.gbps;
	uint64_t rtt = 2 * (lc.delay_ns + lc.jitter_ns + 4 * lc.delay_ns + ser) + lc.queue_ns;
	cfg.rto_ns = 3 * rtt + cfg.ack_delay_ns;
	cfg.rto_max_ns = 16 * cfg.rto_ns;
	cfg.retry_limit = 20;
	cfg.rnr_delay_ns = r.range(5000, 50000);
	cfg.rnr_retry_limit = 100000; // recvs may be posted late; no failure expected

	for (int i = 0; i < nn; i++)
		if (s.add_node(cfg) != i)
			return "add_node failed";
	for (int i = 0; i < nn; i++)
		for (int j = 0; j < nn; j++)
			if (i != j)
				s.link(i, j) = lc;
	for (int i = 0; i < nn; i++)
		if (vr_ep_open(s.node(i).eng, 0, (uint32_t)r.range(1, 4), true))
			return "ep_open failed";

	// connections: ring i -> i+1 (a single one for two nodes)
	struct C { int a, b; uint32_t ca, cb; };
	std::vector<C> conns;
	for (int i = 0; i < (nn == 2 ? 1 : nn); i++) {
		C c{i, (i + 1) % nn, 0, 0};
		if (!connect(s, c.a, 0, c.b, 0, &c.ca, &c.cb, 2000000000))
			return "connect failed";
		conns.push_back(c);
	}

	// plan operations
	std::vector<Op> ops;
	int nops = (int)r.range(5, 40);
	uint64_t budget = 1500000;
	for (int i = 0; i < nops && budget; i++) {
		const C &c = conns[r.below(conns.size())];
		Op o{};
		bool fwd = r.below(2);
		o.from = fwd ? c.a : c.b;
		o.to = fwd ? c.b : c.a;
		o.conn = fwd ? c.ca : c.cb;
		o.kind = (Kind)r.below(5);
		o.len = (o.kind == FADD || o.kind == CSWAP) ? 8 : pick_size(r);
		if (o.len > budget)
			o.len = (uint32_t)budget;
		budget -= o.len;
		o.cookie = 1000 + i;
		o.t_post = s.now + r.below(2000000);
		o.t_recv = s.now + r.below(3000000);
		o.recv_first = r.below(2);
		ops.push_back(o);
	}
	std::vector<NodeMem> nm(nn);
	const uint64_t SRC = 320 * 1024;
	for (int i = 0; i < nn; i++) {
		nm[i].src.init(SRC, (uint8_t)(10 + i));
		nm[i].rsrc.init(SRC, (uint8_t)(20 + i));
		for (size_t k = 0; k < SRC; k++) {
			nm[i].src.data()[k] = (uint8_t)r.next();
			nm[i].rsrc.data()[k] = (uint8_t)r.next();
		}
	}
	for (auto &o : ops) {
		NodeMem &f = nm[o.from], &t = nm[o.to];
		switch (o.kind) {
		case W:
			o.src_off = r.below(SRC - o.len + 1);
			o.dst_off = t.wdst_used;
			t.wdst_used += o.len + r.below(16);
			break;
		case R:
			o.src_off = r.below(SRC - o.len + 1);
			o.dst_off = f.sink_used;
			f.sink_used += o.len + r.below(16);
			break;
		case S:
			o.src_off = r.below(SRC - o.len + 1);
			o.rlen = o.len + (uint32_t)(r.below(3) ? 0 : r.below(100));
			o.dst_off = t.sink_used;
			t.sink_used += o.rlen + r.below(16);
			break;
		case FADD:
			o.word = (unsigned)r.below(8);
			o.add = r.range(1, 1u << 20);
			break;
		case CSWAP:
			if (t.cswap_next >= kWords) {
				o.kind = FADD;
				o.word = 0;
				o.add = 1;
				break;
			}
			o.word = t.cswap_next++;
			o.swp = r.next();
			o.cmp = r.below(2) ? 0 : 1; // words start at their index (see below)
			break;
		}
	}
	std::vector<uint64_t> word0(nn * kWords);
	for (int i = 0; i < nn; i++) {
		NodeMem &m = nm[i];
		m.wdst.init(m.wdst_used + 1, (uint8_t)(30 + i));
		m.sink.init(m.sink_used + 1, (uint8_t)(40 + i));
		m.atom.init(kWords * 8, (uint8_t)(50 + i));
		m.wdst_shadow.assign(m.wdst.data(), m.wdst.data() + m.wdst.len);
		m.sink_shadow.assign(m.sink.data(), m.sink.data() + m.sink.len);
		for (unsigned w = 0; w < kWords; w++) {
			uint64_t v = w < 8 ? r.next() : (w % 2);
			word0[i * kWords + w] = v;
			memcpy(m.atom.data() + 8 * w, &v, 8);
		}
		vrsim::Node &n = s.node(i);
		if (reg(n, 0, m.src, 0) || reg(n, 0, m.rsrc, VR_ACCESS_REMOTE_READ) ||
		    reg(n, 0, m.wdst, VR_ACCESS_REMOTE_WRITE) ||
		    reg(n, 0, m.sink, VR_ACCESS_LOCAL_WRITE) ||
		    reg(n, 0, m.atom, VR_ACCESS_REMOTE_ATOMIC))
			return "reg failed";
	}
	for (auto &o : ops)
		if (o.kind == CSWAP)
			o.cmp = o.cmp ? word0[o.to * kWords + o.word] : ~word0[o.to * kWords + o.word];

	// schedule
	size_t expect[3] = {0, 0, 0};
	std::string err;
	std::function<void(const Op *)> post;
	post = [&](const Op *o) {
		vr_engine *e = s.node(o->from).eng;
		NodeMem &f = nm[o->from], &t = nm[o->to];
		int rc = 0;
		switch (o->kind) {
		case W:
			rc = vr_post_write(e, o->conn, f.src.key, o->src_off, t.wdst.key, o->dst_off,
					   o->len, o->cookie);
			break;
		case R:
			rc = vr_post_read(e, o->conn, f.sink.key, o->dst_off, t.rsrc.key, o->src_off,
					  o->len, o->cookie);
			break;
		case S:
			rc = vr_post_send(e, o->conn, f.src.key, o->src_off, o->len, o->cookie,
					  o->cookie);
			break;
		case FADD:
			rc = vr_post_fadd(e, o->conn, t.atom.key, 8 * o->word, o->add, o->cookie);
			break;
		case CSWAP:
			rc = vr_post_cswap(e, o->conn, t.atom.key, 8 * o->word, o->cmp, o->swp,
					   o->cookie);
			break;
		}
		if (rc == -EAGAIN)
			s.at(s.now + 5000, [&, o] { post(o); });
		else if (rc && err.empty())
			err = "post failed rc=" + std::to_string(rc);
	};
	for (auto &o : ops) {
		const Op *op = &o;
		expect[o.from]++;
		s.at(o.t_post, [&, op] { post(op); });
		if (o.kind == S) {
			expect[o.to]++;
			uint64_t tr = o.recv_first ? s.now : o.t_recv;
			s.at(tr, [&, op] {
				int rc = vr_post_recv(s.node(op->to).eng, 0, nm[op->to].sink.key,
						      op->dst_off, op->rlen, op->cookie, ~0ull,
						      op->cookie);
				if (rc && err.empty())
					err = "post_recv rc=" + std::to_string(rc);
			});
		}
	}
	std::vector<size_t> base(nn);
	for (int i = 0; i < nn; i++)
		base[i] = s.node(i).comps.size();
	auto done = [&] {
		for (int i = 0; i < nn; i++)
			if (s.node(i).comps.size() - base[i] < expect[i])
				return false;
		return true;
	};
	if (!s.run(done, s.now + 20000000000ull))
		return "timeout: not all ops completed" + (err.empty() ? "" : " (" + err + ")");
	// let stragglers (duplicates, late ACKs) drain; must not add completions
	s.run(nullptr, s.now + 50000000);
	if (!err.empty())
		return err;

	// 1. every op completed exactly once, successfully
	for (auto &o : ops) {
		uint32_t wc = o.kind == W ? VR_WC_WRITE : o.kind == R ? VR_WC_READ :
			      o.kind == S ? VR_WC_SEND : o.kind == FADD ? VR_WC_FADD : VR_WC_CSWAP;
		if (count(s.node(o.from), o.cookie, wc) != 1)
			return "op " + std::to_string(o.cookie) + " completed " +
			       std::to_string(count(s.node(o.from), o.cookie, wc)) + " times";
		const vr_completion *c = find(s.node(o.from), o.cookie, wc);
		if (c->status)
			return "op " + std::to_string(o.cookie) + " status " + std::to_string(c->status);
		if (o.kind == S) {
			if (count(s.node(o.to), o.cookie, VR_WC_RECV) != 1)
				return "recv count";
			const vr_completion *rc = find(s.node(o.to), o.cookie, VR_WC_RECV);
			if (rc->status || rc->bytes != o.len || rc->tag != o.cookie)
				return "recv completion wrong";
		}
	}
	for (int i = 0; i < nn; i++)
		if (s.node(i).comps.size() - base[i] != expect[i])
			return "extra completions on node " + std::to_string(i);
	// 2. shadow model
	std::vector<std::vector<uint64_t>> fadd_vals(nn * 8);
	for (auto &o : ops) {
		NodeMem &f = nm[o.from], &t = nm[o.to];
		if (o.kind == W)
			memcpy(&t.wdst_shadow[o.dst_off], f.src.data() + o.src_off, o.len);
		if (o.kind == R)
			memcpy(&f.sink_shadow[o.dst_off], t.rsrc.data() + o.src_off, o.len);
		if (o.kind == S)
			memcpy(&t.sink_shadow[o.dst_off], f.src.data() + o.src_off, o.len);
	}
	for (int i = 0; i < nn; i++) {
		NodeMem &m = nm[i];
		if (memcmp(m.wdst.data(), m.wdst_shadow.data(), m.wdst.len))
			return "wdst mismatch on node " + std::to_string(i);
		if (memcmp(m.sink.data(), m.sink_shadow.data(), m.sink.len))
			return "sink mismatch on node " + std::to_string(i);
		if (!m.src.guards_ok((uint8_t)(10 + i)) || !m.rsrc.guards_ok((uint8_t)(20 + i)) ||
		    !m.wdst.guards_ok((uint8_t)(30 + i)) || !m.sink.guards_ok((uint8_t)(40 + i)) ||
		    !m.atom.guards_ok((uint8_t)(50 + i)))
			return "guard bytes damaged on node " + std::to_string(i);
	}
	// 3. atomics: FADDs on a word form one chain (each executed exactly once)
	std::vector<std::vector<std::pair<uint64_t, uint64_t>>> chains(nn * kWords);
	for (auto &o : ops) {
		const vr_completion *c = find(s.node(o.from), o.cookie);
		if (o.kind == FADD)
			chains[o.to * kWords + o.word].push_back({c->value, o.add});
		if (o.kind == CSWAP) {
			uint64_t w0 = word0[o.to * kWords + o.word], now;
			memcpy(&now, nm[o.to].atom.data() + 8 * o.word, 8);
			if (c->value != w0 || now != (o.cmp == w0 ? o.swp : w0))
				return "cswap wrong";
		}
	}
	for (int i = 0; i < nn; i++)
		for (unsigned w = 0; w < 8; w++) {
			auto &ch = chains[i * kWords + w];
			uint64_t v = word0[i * kWords + w], fin;
			// order by position in the chain: start from the initial value
			for (size_t k = 0; k < ch.size(); k++) {
				auto it = std::find_if(ch.begin(), ch.end(),
						       [&](auto &p) { return p.first == v; });
				if (it == ch.end())
					return "fadd chain broken";
				v += it->second;
				it->first = ~it->first ^ 0x5555; // consume
			}
			memcpy(&fin, nm[i].atom.data() + 8 * w, 8);
			if (fin != v)
				return "fadd final value wrong";
		}
	if (getenv("VMRDMA_SIM_VERBOSE")) {
		const vr_counters *k = vr_engine_counters(s.node(0).eng);
		fprintf(stderr,
			"seed %llu nodes %d ops %zu mtu %u win %u auth %u t=%lluus tx %llu retx %llu "
			"to %llu rnr %llu dups %llu ooo %llu csum %llu eagain %llu naks_seq %llu\n",
			(unsigned long long)seed, nn, ops.size(), cfg.mtu, cfg.window, cfg.auth,
			(unsigned long long)(s.now / 1000), (unsigned long long)k->tx_frames,
			(unsigned long long)k->retransmits, (unsigned long long)k->timeouts,
			(unsigned long long)k->rnr_waits, (unsigned long long)k->dups,
			(unsigned long long)k->out_of_order,
			(unsigned long long)k->drop_parse[VR_WERR_CHECKSUM],
			(unsigned long long)k->xmit_eagain,
			(unsigned long long)k->naks_rx[VR_NAK_SEQ]);
	}
	// 4. counters agree with what the simulated wire saw
	for (int i = 0; i < nn; i++) {
		const vr_counters *k = vr_engine_counters(s.node(i).eng);
		uint64_t drops = k->drop_not_for_us + k->drop_no_ep + k->drop_no_conn;
		// An authenticated frame's payload is under its tag, not the CRC: a
		// corrupted one fails the tag, or is a replay of a frame taken
		// already, or reaches a connection no longer open, or is a first
		// CONNECT_REQ, answered with a cookie before any tag is checked.
		if (cfg.auth)
			drops += k->auth_failed + k->auth_replays + k->drop_bad_state + k->cookies_sent;
		for (int c = 0; c < VR_WERR_MAX; c++)
			drops += k->drop_parse[c];
		if (k->rx_frames != s.node(i).rx_delivered)
			return "rx_frames counter mismatch";
		if (k->tx_frames != s.node(i).tx_accepted)
			return "tx_frames counter mismatch";
		if (drops < s.node(i).corrupted_rx)
			return "corrupted frames not all dropped";
		if (k->completions != s.node(i).comps.size())
			return "completion counter mismatch";
		if (k->drop_parse[VR_WERR_CHECKSUM] > s.node(i).corrupted_rx)
			return "checksum drops without corruption";
		// per-endpoint counters add up to the engine's (only ep 0 exists here)
		vr_counters e0{};
		if (vr_ep_counters(s.node(i).eng, 0, &e0))
			return "ep counters";
		if (e0.tx_data_frames != k->tx_data_frames || e0.completions != k->completions ||
		    e0.retransmits != k->retransmits || e0.dups != k->dups ||
		    e0.rx_data_frames != k->rx_data_frames)
			return "endpoint counters disagree with engine counters";
		if (k->tx_data_frames < k->retransmits)
			return "more retransmits than data frames";
	}
	return "";
}

}  // namespace

TEST_CASE("randomised simulation: invariants hold for every seed")
{
	uint64_t first = 1, n = 400;
	if (const char *e = getenv("VMRDMA_SIM_SEEDS"))
		n = strtoull(e, nullptr, 0);
	if (const char *e = getenv("VMRDMA_SIM_SEED")) {
		first = strtoull(e, nullptr, 0);
		n = 1;
	}
	int failures = 0;
	for (uint64_t seed = first; seed < first + n; seed++) {
		std::string why = run_seed(seed);
		if (!why.empty()) {
			failures++;
			fprintf(stderr, "FAILED seed %llu: %s (replay: VMRDMA_SIM_SEED=%llu)\n",
				(unsigned long long)seed, why.c_str(), (unsigned long long)seed);
			if (failures > 5)
				break;
		}
	}
	CHECK(failures == 0);
}
