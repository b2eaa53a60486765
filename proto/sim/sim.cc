// SPDX-License-Identifier: GPL-2.0 OR MIT
// sim.cc - see sim.h.
#include "sim.h"

#include <cstring>

namespace vrsim {

static void sim_complete(void *ctx, const vr_completion *c)
{
	Node *n = static_cast<Node *>(ctx);
	n->comps.push_back(*c);
	if (n->on_complete)
		n->on_complete(*c);
}

static uint32_t sim_random(void *ctx)
{
	Node *n = static_cast<Node *>(ctx);
	if (n->random_override)
		return n->random_override();
	return static_cast<uint32_t>(n->rng.next());
}

static int sim_accept(void *ctx, uint16_t ep, const uint8_t *mac, uint16_t pep)
{
	Node *n = static_cast<Node *>(ctx);
	return n->accept ? n->accept(ep, mac, pep) : 0;
}

int sim_xmit(void *ctx, const vr_frame *f)
{
	Node *n = static_cast<Node *>(ctx);
	return n->sim->xmit(*n, f);
}

Sim::~Sim()
{
	while (!evq.empty()) {
		delete evq.top();
		evq.pop();
	}
}

int Sim::add_node(vr_config cfg)
{
	auto n = std::make_unique<Node>();
	n->sim = this;
	n->idx = static_cast<int>(nodes.size());
	uint8_t mac[6] = {0x02, 0, 0, 0, 0, static_cast<uint8_t>(n->idx + 1)};
	memcpy(n->mac, mac, 6);
	memcpy(cfg.mac, mac, 6);
	n->rng = Rng(rng.next());
	n->ops.xmit = sim_xmit;
	n->ops.complete = sim_complete;
	n->ops.random = sim_random;
	n->ops.accept = sim_accept;
	cfg.host = &n->ops;
	cfg.ctx = n.get();
	size_t sz = vr_engine_mem_size(&cfg);
	if (!sz)
		return -EINVAL;
	n->mem.assign(sz / 8 + 1, 0);
	int rc = vr_engine_create(&cfg, n->mem.data(), n->mem.size() * 8, &n->eng);
	if (rc)
		return rc;
	nodes.push_back(std::move(n));
	return static_cast<int>(nodes.size()) - 1;
}

int Sim::route(const uint8_t *mac) const
{
	for (auto &n : nodes)
		if (!memcmp(n->mac, mac, 6))
			return n->idx;
	return -1;
}

void Sim::push(Ev *e)
{
	e->seq = seq++;
	evq.push(e);
}

void Sim::at(uint64_t t, std::function<void()> fn)
{
	Ev *e = new Ev{t, 0, -1, false, {}, std::move(fn)};
	push(e);
}

void Sim::inject(int to, std::vector<uint8_t> bytes, uint64_t t)
{
	Ev *e = new Ev{t, 0, to, false, std::move(bytes), {}};
	push(e);
}

int Sim::xmit(Node &n, const vr_frame *f)
{
	std::vector<uint8_t> b(f->hdr, f->hdr + f->hdr_len);
	for (uint32_t i = 0; i < f->nfrags; i++) {
		const uint8_t *p = n.resolve ? n.resolve(f->frag[i].mem, f->frag[i].off, f->frag[i].len)
					     : static_cast<const uint8_t *>(f->frag[i].mem) + f->frag[i].off;
		b.insert(b.end(), p, p + f->frag[i].len);
	}
	if (b.size() != f->len)
		abort();
	static const uint8_t broadcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
	if (!memcmp(b.data(), broadcast, 6)) {
		// Every other node hears it, each over its own link.
		n.tx_accepted++;
		for (auto &other : nodes)
			if (other->idx != n.idx)
				carry(n, other->idx, b, false);
		return 0;
	}
	int to = route(b.data());
	if (to < 0) {
		n.tx_accepted++; // on the wire, nobody listens
		if (tap)
			tap(n.idx, b);
		return 0;
	}
	return carry(n, to, b, true);
}

int Sim::carry(Node &n, int to, const std::vector<uint8_t> &b, bool may_refuse)
{
	Link &l = links[{n.idx, to}];
	if (!may_refuse && l.busy_until > now + l.cfg.queue_ns) {
		l.st.lost++; // a broadcast is not retried by the host: a full queue drops it
		return 0;
	}
	if (l.busy_until > now + l.cfg.queue_ns) {
		l.st.eagain++;
		n.blocked = true;
		return -EAGAIN;
	}
	if (tap)
		tap(n.idx, b);
	if (may_refuse)
		n.tx_accepted++;
	l.st.accepted++;
	uint64_t ser = b.size() * 8 / (l.cfg.gbps ? l.cfg.gbps : 1);
	l.busy_until = (l.busy_until > now ? l.busy_until : now) + ser;
	if (l.cfg.down || rng.ppm(l.cfg.loss_ppm)) {
		l.st.lost++;
		return 0;
	}
	int copies = rng.ppm(l.cfg.dup_ppm) ? 2 : 1;
	if (copies == 2)
		l.st.dup++;
	for (int c = 0; c < copies; c++) {
		uint64_t t = l.busy_until + l.cfg.delay_ns + rng.below(l.cfg.jitter_ns + 1);
		if (c || rng.ppm(l.cfg.reorder_ppm))
			t += rng.below(4 * l.cfg.delay_ns + 1);
		Ev *e = new Ev{t, 0, to, false, b, {}};
		if (rng.ppm(l.cfg.corrupt_ppm)) {
			size_t at = rng.below(e->bytes.size());
			e->bytes[at] ^= static_cast<uint8_t>(1u << rng.below(8));
			e->corrupted = true;
			l.st.corrupted++;
		}
		push(e);
	}
	return 0;
}

bool Sim::poll_all()
{
	bool any = false;
	for (auto &n : nodes) {
		n->blocked = false;
		for (;;) {
			int k = vr_engine_tx_poll(n->eng, now, 64);
			if (k > 0)
				any = true;
			if (k < 64 || n->blocked)
				break;
		}
	}
	return any;
}

bool Sim::run(const std::function<bool()> &pred, uint64_t limit_ns)
{
	for (;;) {
		if (pred && pred())
			return true;
		poll_all();
		if (pred && pred())
			return true;
		uint64_t t = UINT64_MAX;
		if (!evq.empty())
			t = evq.top()->t;
		for (auto &n : nodes) {
			uint64_t x = vr_engine_next_timeout(n->eng);
			if (x < t)
				t = x;
			if (n->blocked) {
				for (auto &kv : links) {
					uint64_t w = kv.second.busy_until - kv.second.cfg.queue_ns;
					if (kv.first.first == n->idx &&
					    kv.second.busy_until > kv.second.cfg.queue_ns &&
					    w > now && w < t)
						t = w;
				}
			}
		}
		if (t == UINT64_MAX)
			return pred ? pred() : true;
		if (t > limit_ns)
			return false;
		if (t > now)
			now = t;
		while (!evq.empty() && evq.top()->t <= now) {
			Ev *e = evq.top();
			evq.pop();
			if (e->to >= 0) {
				Node &n = *nodes[e->to];
				n.rx_delivered++;
				if (e->corrupted)
					n.corrupted_rx++;
				vr_engine_input(n.eng, e->bytes.data(),
						static_cast<uint32_t>(e->bytes.size()), now);
			} else {
				e->fn();
			}
			delete e;
		}
		for (auto &n : nodes)
			if (vr_engine_next_timeout(n->eng) <= now)
				vr_engine_on_timer(n->eng, now);
	}
}

}  // namespace vrsim
