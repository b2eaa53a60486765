// proto/frontend.h, driven directly: two frontends of one backend engine
// (node 0 of the simulator) and a peer (node 1). One table of scenarios:
// good requests and every refusal the service makes, with the status each
// must get; then the stateful rules (handles, ACCEPT order and backlog,
// limits, closing an endpoint, answering waiters early, teardown).
#include <doctest/doctest.h>

#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "harness.h"

extern "C" {
#include "frontend.h"
}

using namespace vrtest;

namespace {

struct answer {
	vr_svc_pending req;
	vr_ring_rsp rsp;
};

// One frontend's storage and what it was answered.
struct frontend {
	std::vector<vr_fe_ep> eps = std::vector<vr_fe_ep>(4);
	std::vector<vr_fe_conn> conns = std::vector<vr_fe_conn>(8);
	std::vector<vr_fe_region> regions = std::vector<vr_fe_region>(8);
	std::vector<vr_fe_slot> slots = std::vector<vr_fe_slot>(16);
	std::vector<uint16_t> free_slots = std::vector<uint16_t>(16);
	std::vector<answer> answers;
	std::vector<void *> released;
	vr_fe fe{};

	frontend(vr_engine *eng, uint32_t id)
	{
		fe.eng = eng;
		fe.id = id;
		fe.host.respond = [](void *ctx, const vr_svc_pending *req, const vr_ring_rsp *rsp) {
			static_cast<frontend *>(ctx)->answers.push_back({*req, *rsp});
		};
		fe.host.ctx = this;
		fe.lim = {.endpoints = 2, .regions = 3, .registered_bytes = 1 << 20, .max_weight = 8};
		fe.max_conns = 2;
		fe.max_ep_id = 4;
		fe.eps = eps.data();
		fe.eps_cap = eps.size();
		fe.conns = conns.data();
		fe.conns_cap = conns.size();
		fe.regions = regions.data();
		fe.regions_cap = regions.size();
		fe.slots = slots.data();
		fe.free_slots = free_slots.data();
		fe.size = slots.size();
		vr_fe_init(&fe);
	}
	static void release(void *ctx, void *host) { static_cast<frontend *>(ctx)->released.push_back(host); }
	const answer *answer_to(uint64_t cookie) const
	{
		for (auto &a : answers)
			if (a.rsp.cookie == cookie)
				return &a;
		return nullptr;
	}
};

struct backend {
	vrsim::Sim s{21};
	frontend *fes[2] = {};
	GuardedBuf peer_mem;

	backend()
	{
		REQUIRE(s.add_node(base_cfg()) == 0);
		REQUIRE(s.add_node(base_cfg()) == 1);
		REQUIRE(vr_ep_open(s.node(1).eng, 0, 1, true) == 0);
		peer_mem.init(65536, 9);
		REQUIRE(reg(s.node(1), 0, peer_mem,
			    VR_ACCESS_LOCAL_WRITE | VR_ACCESS_REMOTE_WRITE | VR_ACCESS_REMOTE_READ |
				    VR_ACCESS_REMOTE_ATOMIC) == 0);
		// The backend's host: completions by the id in the cookie, accepts
		// by the endpoint's owner.
		s.node(0).on_complete = [this](const vr_completion &wc) {
			if (wc.op == VR_WC_ACCEPT) {
				for (auto *f : fes)
					if (f && vr_fe_ep_of(&f->fe, wc.ep))
						vr_fe_accepted(&f->fe, wc.ep, wc.conn);
				return;
			}
			if (wc.op == VR_WC_DISCONNECT) { /* as vmrdmad and backend_kmod do */
				for (auto *f : fes)
					if (f && vr_fe_conn_failed(&f->fe, wc.conn, wc.status))
						return;
				return;
			}
			for (auto *f : fes)
				if (f && vr_fe_complete(&f->fe, &wc))
					return;
		};
		s.node(0).accept = [this](uint16_t ep, const uint8_t *, uint16_t) {
			for (auto *f : fes)
				if (f && vr_fe_ep_of(&f->fe, ep))
					return vr_fe_accept_policy(&f->fe, ep);
			return -ECONNREFUSED;
		};
	}
	vr_engine *eng() { return s.node(0).eng; }
	// Posts req for f; runs the simulation until it is answered; returns the status.
	int request(frontend &f, vr_ring_req req)
	{
		vr_ring_rsp now{};
		int rc = vr_fe_request(&f.fe, &req, &now);
		if (rc != 1)
			return rc;
		bool ok = s.run([&] { return f.answer_to(req.cookie) != nullptr; }, s.now + 2000000000);
		REQUIRE(ok);
		return f.answer_to(req.cookie)->rsp.status;
	}
};

vr_ring_req make(uint8_t opcode, uint64_t cookie)
{
	vr_ring_req r{};
	r.opcode = opcode;
	r.cookie = cookie;
	return r;
}

}  // namespace

TEST_CASE("the frontend service: good requests and every refusal, for two frontends")
{
	backend b;
	frontend fa(b.eng(), 1), fb(b.eng(), 2);
	b.fes[0] = &fa;
	b.fes[1] = &fb;
	const char *why = nullptr;
	REQUIRE(vr_fe_open_ep(&fa.fe, 0, 4, false, &why) == 0);
	REQUIRE(vr_fe_open_ep(&fb.fe, 1, 99, true, &why) == 0);
	CHECK(fb.eps[0].weight == 8); // asked 99, capped at max_weight

	// Regions: A's writable one on ep 0, a read-only one, and B's on ep 1.
	static uint8_t a_mem[4096], a_ro[4096], b_mem[4096];
	uint64_t a_key = 0, a_ro_key = 0, b_key = 0;
	REQUIRE(vr_fe_check_reg(&fa.fe, 0, sizeof a_mem, VR_ACCESS_LOCAL_WRITE, &why) == 0);
	REQUIRE(vr_fe_add_region(&fa.fe, 0, a_mem, a_mem, sizeof a_mem, VR_ACCESS_LOCAL_WRITE, true,
				 &a_key) == 0);
	REQUIRE(vr_fe_add_region(&fa.fe, 0, a_ro, a_ro, sizeof a_ro, 0, false, &a_ro_key) == 0);
	REQUIRE(vr_fe_add_region(&fb.fe, 1, b_mem, b_mem, sizeof b_mem, VR_ACCESS_LOCAL_WRITE, true,
				 &b_key) == 0);

	// A connects to the peer: its handle is A's own.
	auto connect = make(VR_RING_CONNECT, 100);
	connect.ep = 0;
	std::memcpy(connect.peer_mac, b.s.node(1).mac, 6);
	REQUIRE(b.request(fa, connect) == 0);
	const uint32_t a_conn = fa.answer_to(100)->rsp.conn;
	CHECK(a_conn == 1);

	auto on_a = [&](uint8_t op, uint64_t cookie, uint64_t lkey) {
		auto r = make(op, cookie);
		r.conn = a_conn;
		r.lkey = lkey;
		r.rkey = b.peer_mem.key;
		r.len = op == VR_RING_FADD || op == VR_RING_CSWAP ? 8 : 512;
		return r;
	};
	struct row {
		std::string what;
		frontend *f;
		vr_ring_req req;
		int status;
	};
	auto foreign = on_a(VR_RING_WRITE, 7, b_key);
	auto other_conn = on_a(VR_RING_WRITE, 8, a_key);
	other_conn.conn = a_conn + 1;
	auto flagged = on_a(VR_RING_WRITE, 9, a_key);
	flagged.flags = 1;
	auto recv_b_ep = make(VR_RING_RECV, 10);
	recv_b_ep.ep = 1;
	recv_b_ep.lkey = a_key;
	recv_b_ep.len = 64;
	auto recv_ro = make(VR_RING_RECV, 11);
	recv_ro.ep = 0;
	recv_ro.lkey = a_ro_key;
	recv_ro.len = 64;
	auto accept_not_listening = make(VR_RING_ACCEPT, 12);
	accept_not_listening.ep = 0;
	auto b_uses_a_conn = on_a(VR_RING_WRITE, 13, b_key);
	auto connect_foreign_ep = make(VR_RING_CONNECT, 14);
	connect_foreign_ep.ep = 0; // A's endpoint, asked by B
	std::memcpy(connect_foreign_ep.peer_mac, b.s.node(1).mac, 6);
	auto disconnect_foreign = make(VR_RING_DISCONNECT, 15);
	disconnect_foreign.conn = a_conn;

	const std::vector<row> table = {
		{"WRITE on its connection from its region", &fa, on_a(VR_RING_WRITE, 1, a_key), 0},
		{"READ into its writable region", &fa, on_a(VR_RING_READ, 2, a_key), 0},
		{"READ from the peer into a read-only grant", &fa, on_a(VR_RING_READ, 3, a_ro_key), -EPERM},
		{"WRITE from a read-only grant (it is only read)", &fa, on_a(VR_RING_WRITE, 4, a_ro_key), 0},
		{"FADD", &fa, on_a(VR_RING_FADD, 5, 0), 0},
		{"CSWAP", &fa, on_a(VR_RING_CSWAP, 6, 0), 0},
		{"a region of another frontend", &fa, foreign, -EACCES},
		{"a connection handle it was not given", &fa, other_conn, -EINVAL},
		{"flags set", &fa, flagged, -EINVAL},
		{"RECV on an endpoint of another frontend", &fa, recv_b_ep, -EINVAL},
		{"RECV into a read-only grant", &fa, recv_ro, -EPERM},
		{"ACCEPT on an endpoint that does not listen", &fa, accept_not_listening, -EINVAL},
		{"another frontend using A's handle", &fb, b_uses_a_conn, -EINVAL},
		{"CONNECT on an endpoint of another frontend", &fb, connect_foreign_ep, -EINVAL},
		{"DISCONNECT of another frontend's connection", &fb, disconnect_foreign, -EINVAL},
		{"an opcode the data path does not take", &fa, make(VR_RING_OPEN_EP, 16), -EINVAL},
		{"an unknown opcode", &fa, make(200, 17), -EINVAL},
	};
	for (const auto &r : table) {
		CAPTURE(r.what);
		CHECK(b.request(*r.f, r.req) == r.status);
	}
	CHECK(fa.fe.rejected == 9); // every refusal above but the good rows
	CHECK(fb.fe.rejected == 3);
	CHECK(std::memcmp(b.peer_mem.data(), a_mem, 512) == 0); // the WRITE landed

	// Control refusals.
	CHECK(vr_fe_open_ep(&fa.fe, 4, 1, false, &why) == -EINVAL); // beyond the engine's ids
	CHECK(vr_fe_open_ep(&fb.fe, 0, 1, false, &why) == -EINVAL); // A's id: in use
	CHECK(std::string(why) == "endpoint id in use");
	CHECK(vr_fe_open_ep(&fa.fe, 2, 1, false, &why) == 0);
	CHECK(vr_fe_open_ep(&fa.fe, 3, 1, false, &why) == -ENOSPC); // its limit is 2
	CHECK(vr_fe_check_reg(&fa.fe, 1, 64, 0, &why) == -ENOENT);  // B's endpoint
	CHECK(vr_fe_check_reg(&fa.fe, 0, 2 << 20, 0, &why) == -ENOSPC); // bytes
	void *host = nullptr;
	CHECK(vr_fe_dereg(&fa.fe, b_key, &host) == -ENOENT);
	CHECK(vr_fe_close_ep(&fa.fe, 1, frontend::release, &fa) == -ENOENT);
	CHECK(vr_fe_dereg(&fa.fe, a_ro_key, &host) == 0);
	CHECK(host == a_ro);
}

TEST_CASE("connections: limits, ACCEPT oldest first, the backlog, and closing an endpoint")
{
	backend b;
	frontend fa(b.eng(), 1);
	b.fes[0] = &fa;
	const char *why = nullptr;
	REQUIRE(vr_fe_open_ep(&fa.fe, 2, 1, true, &why) == 0);
	static uint8_t mem[4096];
	uint64_t key = 0;
	REQUIRE(vr_fe_add_region(&fa.fe, 2, mem, mem, sizeof mem, VR_ACCESS_LOCAL_WRITE, true, &key) == 0);

	// Two ACCEPTs wait; the peer connects twice; the older ACCEPT gets the first.
	vr_ring_rsp now{};
	auto acc1 = make(VR_RING_ACCEPT, 1), acc2 = make(VR_RING_ACCEPT, 2);
	acc1.ep = acc2.ep = 2;
	REQUIRE(vr_fe_request(&fa.fe, &acc1, &now) == 1);
	REQUIRE(vr_fe_request(&fa.fe, &acc2, &now) == 1);
	REQUIRE(vr_ep_open(b.s.node(1).eng, 1, 1, false) == 0);
	uint32_t c1 = 0, c2 = 0;
	REQUIRE(vr_connect(b.s.node(1).eng, 1, b.s.node(0).mac, 2, 11, &c1) == 0);
	REQUIRE(b.s.run([&] { return fa.answer_to(1) != nullptr; }, b.s.now + 1000000000));
	CHECK(fa.answer_to(2) == nullptr);
	REQUIRE(vr_connect(b.s.node(1).eng, 1, b.s.node(0).mac, 2, 12, &c2) == 0);
	REQUIRE(b.s.run([&] { return fa.answer_to(2) != nullptr; }, b.s.now + 1000000000));
	const uint32_t h1 = fa.answer_to(1)->rsp.conn, h2 = fa.answer_to(2)->rsp.conn;
	CHECK(h1 == 1);
	CHECK(h2 == 2);
	CHECK(fa.fe.nconns == 2);
	// Each answer names the peer that connected (vr_peer_word).
	CHECK(fa.answer_to(1)->rsp.value == vr_peer_word(b.s.node(1).mac, 1));
	CHECK(fa.conns[0].peer_ep == 1);
	CHECK(std::memcmp(fa.conns[0].peer_mac, b.s.node(1).mac, 6) == 0);

	// At its limit (2) a third CONNECT is refused, and the policy refuses arrivals.
	auto connect = make(VR_RING_CONNECT, 3);
	connect.ep = 2;
	std::memcpy(connect.peer_mac, b.s.node(1).mac, 6);
	CHECK(vr_fe_request(&fa.fe, &connect, &now) == -ENOSPC);
	CHECK(vr_fe_accept_policy(&fa.fe, 2) == -ENOBUFS);

	// DISCONNECT frees a place; an arrival with no ACCEPT waits in the backlog.
	auto disc = make(VR_RING_DISCONNECT, 4);
	disc.conn = h1;
	CHECK(vr_fe_request(&fa.fe, &disc, &now) == 0);
	CHECK(fa.fe.nconns == 1);
	uint32_t c3 = 0;
	REQUIRE(vr_connect(b.s.node(1).eng, 1, b.s.node(0).mac, 2, 13, &c3) == 0);
	REQUIRE(b.s.run([&] { return fa.eps[0].nbacklog == 1; }, b.s.now + 1000000000));
	auto acc3 = make(VR_RING_ACCEPT, 5);
	acc3.ep = 2;
	CHECK(vr_fe_request(&fa.fe, &acc3, &now) == 0); // answered at once, from the backlog
	CHECK(now.conn == 3);                           // handles are never reused soon
	CHECK(now.value == vr_peer_word(b.s.node(1).mac, 1));

	// A RECV waits; answering waiters early (a drain) answers it now and
	// swallows the engine's completion when the endpoint closes.
	auto recv = make(VR_RING_RECV, 6);
	recv.ep = 2;
	recv.lkey = key;
	recv.len = 64;
	REQUIRE(vr_fe_request(&fa.fe, &recv, &now) == 1);
	auto acc4 = make(VR_RING_ACCEPT, 7);
	acc4.ep = 2;
	REQUIRE(vr_fe_request(&fa.fe, &acc4, &now) == 1);
	vr_fe_answer_waiting(&fa.fe, 1u << VR_RING_RECV, -ESHUTDOWN);
	REQUIRE(fa.answer_to(6) != nullptr);
	CHECK(fa.answer_to(6)->rsp.status == -ESHUTDOWN);
	CHECK(vr_fe_in_engine(&fa.fe) == 1);
	size_t answered = fa.answers.size();

	// Closing the endpoint: the ACCEPT is answered -ECANCELED, the RECV's
	// completion swallowed, its connections forgotten, its region released.
	REQUIRE(vr_fe_close_ep(&fa.fe, 2, frontend::release, &fa) == 0);
	REQUIRE(fa.answer_to(7) != nullptr);
	CHECK(fa.answer_to(7)->rsp.status == -ECANCELED);
	CHECK(fa.answers.size() == answered + 1);
	CHECK(vr_fe_in_engine(&fa.fe) == 0);
	CHECK(fa.fe.nconns == 0);
	REQUIRE(fa.released.size() == 1);
	CHECK(fa.released[0] == mem);
	CHECK(fa.fe.use.endpoints == 0);
	CHECK(fa.fe.use.regions == 0);
}

TEST_CASE("teardown answers everything once and hands every region back")
{
	backend b;
	frontend fa(b.eng(), 3);
	b.fes[0] = &fa;
	const char *why = nullptr;
	REQUIRE(vr_fe_open_ep(&fa.fe, 1, 1, true, &why) == 0);
	static uint8_t mem[2][4096];
	uint64_t k0 = 0, k1 = 0;
	REQUIRE(vr_fe_add_region(&fa.fe, 1, mem[0], mem[0], 4096, VR_ACCESS_LOCAL_WRITE, true, &k0) == 0);
	REQUIRE(vr_fe_add_region(&fa.fe, 1, mem[1], mem[1], 4096, VR_ACCESS_LOCAL_WRITE, true, &k1) == 0);
	vr_ring_rsp now{};
	for (uint64_t cookie = 1; cookie <= 3; ++cookie) {
		auto recv = make(VR_RING_RECV, cookie);
		recv.ep = 1;
		recv.lkey = k0;
		recv.len = 64;
		REQUIRE(vr_fe_request(&fa.fe, &recv, &now) == 1);
	}
	auto acc = make(VR_RING_ACCEPT, 4);
	acc.ep = 1;
	REQUIRE(vr_fe_request(&fa.fe, &acc, &now) == 1);
	vr_fe_close_all(&fa.fe, frontend::release, &fa);
	CHECK(fa.answers.size() == 4);
	for (uint64_t cookie = 1; cookie <= 4; ++cookie) {
		CAPTURE(cookie);
		REQUIRE(fa.answer_to(cookie) != nullptr);
		CHECK(fa.answer_to(cookie)->rsp.status != 0);
	}
	CHECK(fa.released.size() == 2);
	CHECK(fa.fe.nfree == fa.fe.size);
	CHECK(vr_fe_in_engine(&fa.fe) == 0);
}

TEST_CASE("CLOSED waits in the service until the connection ends, and says why; a local DISCONNECT cancels it")
{
	backend b;
	frontend fa(b.eng(), 4);
	b.fes[0] = &fa;
	const char *why = nullptr;
	REQUIRE(vr_fe_open_ep(&fa.fe, 2, 1, true, &why) == 0);
	REQUIRE(vr_ep_open(b.s.node(1).eng, 1, 1, false) == 0);
	vr_ring_rsp now{};
	uint32_t peer_conn[2] = {};
	uint32_t handle[2] = {};
	for (int i = 0; i < 2; i++) {
		auto acc = make(VR_RING_ACCEPT, 10 + i);
		acc.ep = 2;
		REQUIRE(vr_fe_request(&fa.fe, &acc, &now) == 1);
		REQUIRE(vr_connect(b.s.node(1).eng, 1, b.s.node(0).mac, 2, 20 + i, &peer_conn[i]) == 0);
		REQUIRE(b.s.run([&] { return fa.answer_to(10 + i) != nullptr; }, b.s.now + 1000000000));
		handle[i] = fa.answer_to(10 + i)->rsp.conn;
	}
	// Parked, not in the engine; a foreign handle is refused.
	auto closed = make(VR_RING_CLOSED, 30);
	closed.conn = handle[0];
	REQUIRE(vr_fe_request(&fa.fe, &closed, &now) == 1);
	CHECK(vr_fe_in_engine(&fa.fe) == 0);
	auto foreign = make(VR_RING_CLOSED, 31);
	foreign.conn = 99;
	CHECK(vr_fe_request(&fa.fe, &foreign, &now) == -EINVAL);
	// The peer hangs up: the waiter is answered with why.
	REQUIRE(vr_disconnect(b.s.node(1).eng, peer_conn[0]) == 0);
	REQUIRE(b.s.run([&] { return fa.answer_to(30) != nullptr; }, b.s.now + 1000000000));
	CHECK(fa.answer_to(30)->rsp.status == 0);
	CHECK(fa.answer_to(30)->rsp.value == ECONNRESET);
	// Asked again afterwards: answered at once, the same way.
	auto again = make(VR_RING_CLOSED, 32);
	again.conn = handle[0];
	CHECK(vr_fe_request(&fa.fe, &again, &now) == 0);
	CHECK(now.value == ECONNRESET);
	// This side disconnects the other one first: its waiter is cancelled.
	auto closed2 = make(VR_RING_CLOSED, 33);
	closed2.conn = handle[1];
	REQUIRE(vr_fe_request(&fa.fe, &closed2, &now) == 1);
	auto disc = make(VR_RING_DISCONNECT, 34);
	disc.conn = handle[1];
	CHECK(vr_fe_request(&fa.fe, &disc, &now) == 0);
	REQUIRE(fa.answer_to(33) != nullptr);
	CHECK(fa.answer_to(33)->rsp.status == -ECANCELED);
	CHECK(fa.fe.nfree == fa.fe.size);
}

TEST_CASE("admission: the bytes of WRITE, READ and SEND at the engine, the frontend's weight and when it shares the budget")
{
	backend b;
	frontend fa(b.eng(), 5);
	b.fes[0] = &fa;
	const char *why = nullptr;
	CHECK(vr_fe_weight(&fa.fe) == 1); // no endpoint yet
	REQUIRE(vr_fe_open_ep(&fa.fe, 0, 3, false, &why) == 0);
	REQUIRE(vr_fe_open_ep(&fa.fe, 1, 2, false, &why) == 0);
	CHECK(vr_fe_weight(&fa.fe) == 5); // the sum of its endpoints' weights
	REQUIRE(vr_fe_set_admin_weight(&fa.fe, 4) == 0);
	CHECK(vr_fe_weight(&fa.fe) == 8); // the weights in force
	static uint8_t mem[8192];
	uint64_t key = 0;
	REQUIRE(vr_fe_add_region(&fa.fe, 0, mem, mem, sizeof mem, VR_ACCESS_LOCAL_WRITE, true, &key) == 0);
	auto connect = make(VR_RING_CONNECT, 100);
	connect.ep = 0;
	std::memcpy(connect.peer_mac, b.s.node(1).mac, 6);
	REQUIRE(b.request(fa, connect) == 0);
	const uint32_t conn = fa.answer_to(100)->rsp.conn;
	auto op = [&](uint8_t opcode, uint64_t cookie, uint32_t len) {
		auto r = make(opcode, cookie);
		r.conn = conn;
		r.lkey = key;
		r.rkey = b.peer_mem.key;
		r.len = len;
		return r;
	};

	// Posted together: the bulk ones count until the engine completes them;
	// atomics do not count, nor does a request the service refuses.
	vr_ring_rsp now{};
	const vr_ring_req write = op(VR_RING_WRITE, 1, 4096), read = op(VR_RING_READ, 2, 1000),
			  fadd = op(VR_RING_FADD, 3, 8);
	REQUIRE(vr_fe_request(&fa.fe, &write, &now) == 1);
	REQUIRE(vr_fe_request(&fa.fe, &read, &now) == 1);
	REQUIRE(vr_fe_request(&fa.fe, &fadd, &now) == 1);
	auto foreign = op(VR_RING_WRITE, 4, 512);
	foreign.lkey = key + 1;
	CHECK(vr_fe_request(&fa.fe, &foreign, &now) == -EACCES);
	CHECK(fa.fe.bulk_inflight == 5096);
	// With bytes at the engine it shares the budget by its weight.
	CHECK(vr_fe_contending_weight(&fa.fe, false, false) == 8);
	REQUIRE(b.s.run([&] { return fa.answer_to(1) && fa.answer_to(2) && fa.answer_to(3); }, b.s.now + 2000000000));
	CHECK(fa.answer_to(1)->rsp.status == 0);
	CHECK(fa.fe.bulk_inflight == 0);
	// Idle it takes no part, unless it is the one asking or it waits.
	CHECK(vr_fe_contending_weight(&fa.fe, false, false) == 0);
	CHECK(vr_fe_contending_weight(&fa.fe, true, false) == 8);
	CHECK(vr_fe_contending_weight(&fa.fe, false, true) == 8);

	// A failed one lets go too (a key the peer never gave), and so does
	// teardown with some still at the engine.
	auto bad = op(VR_RING_WRITE, 5, 2048);
	bad.rkey = b.peer_mem.key ^ 0x10000;
	REQUIRE(vr_fe_request(&fa.fe, &bad, &now) == 1);
	CHECK(fa.fe.bulk_inflight == 2048);
	REQUIRE(b.s.run([&] { return fa.answer_to(5) != nullptr; }, b.s.now + 2000000000));
	CHECK(fa.answer_to(5)->rsp.status != 0);
	CHECK(fa.fe.bulk_inflight == 0);
	auto conn2 = make(VR_RING_CONNECT, 101);
	conn2.ep = 1;
	std::memcpy(conn2.peer_mac, b.s.node(1).mac, 6);
	REQUIRE(b.request(fa, conn2) == 0);
	auto w = op(VR_RING_WRITE, 6, 8192);
	w.conn = fa.answer_to(101)->rsp.conn;
	uint64_t key1 = 0;
	static uint8_t mem1[8192];
	REQUIRE(vr_fe_add_region(&fa.fe, 1, mem1, mem1, sizeof mem1, 0, false, &key1) == 0);
	w.lkey = key1;
	REQUIRE(vr_fe_request(&fa.fe, &w, &now) == 1);
	CHECK(fa.fe.bulk_inflight == 8192);
	vr_fe_close_all(&fa.fe, frontend::release, &fa);
	CHECK(fa.fe.bulk_inflight == 0);
}

TEST_CASE("a RECV's answer names the peer the message came from")
{
	backend b;
	frontend fa(b.eng(), 1);
	b.fes[0] = &fa;
	const char *why = nullptr;
	REQUIRE(vr_fe_open_ep(&fa.fe, 2, 1, true, &why) == 0);
	static uint8_t mem[4096];
	uint64_t key = 0;
	REQUIRE(vr_fe_add_region(&fa.fe, 2, mem, mem, sizeof mem, VR_ACCESS_LOCAL_WRITE, true, &key) == 0);
	auto recv = make(VR_RING_RECV, 1);
	recv.ep = 2;
	recv.lkey = key;
	recv.len = 64;
	vr_ring_rsp now{};
	REQUIRE(vr_fe_request(&fa.fe, &recv, &now) == 1);
	REQUIRE(vr_ep_open(b.s.node(1).eng, 3, 1, false) == 0);
	uint32_t c = 0;
	REQUIRE(vr_connect(b.s.node(1).eng, 3, b.s.node(0).mac, 2, 11, &c) == 0);
	REQUIRE(b.s.run([&] { return vr_conn_state(b.s.node(1).eng, c) == VR_CONN_CONNECTED; },
			b.s.now + 1000000000));
	GuardedBuf msg;
	msg.init(32, 4);
	REQUIRE(reg(b.s.node(1), 3, msg, 0) == 0);
	REQUIRE(vr_post_send(b.s.node(1).eng, c, msg.key, 0, 32, 0, 12) == 0);
	REQUIRE(b.s.run([&] { return fa.answer_to(1) != nullptr; }, b.s.now + 1000000000));
	const auto &rsp = fa.answer_to(1)->rsp;
	CHECK(rsp.status == 0);
	CHECK(rsp.bytes == 32);
	CHECK(rsp.value == vr_peer_word(b.s.node(1).mac, 3));
	CHECK(rsp.conn == 0); // the engine's connection ids stay the backend's
}

TEST_CASE("LISTEN: an endpoint opened without listening takes ACCEPTs once it listens; only its own")
{
	backend b;
	frontend fa(b.eng(), 1), fb(b.eng(), 2);
	b.fes[0] = &fa;
	b.fes[1] = &fb;
	const char *why = nullptr;
	REQUIRE(vr_fe_open_ep(&fa.fe, 2, 1, false, &why) == 0);
	REQUIRE(vr_fe_open_ep(&fb.fe, 3, 1, false, &why) == 0);
	vr_ring_rsp now{};
	auto early = make(VR_RING_ACCEPT, 1);
	early.ep = 2;
	CHECK(vr_fe_request(&fa.fe, &early, &now) == -EINVAL); // not listening yet
	auto foreign = make(VR_RING_LISTEN, 2);
	foreign.ep = 3; // B's endpoint, asked by A
	CHECK(vr_fe_request(&fa.fe, &foreign, &now) == -EINVAL);
	auto listen = make(VR_RING_LISTEN, 3);
	listen.ep = 2;
	CHECK(vr_fe_request(&fa.fe, &listen, &now) == 0); // answered at once
	auto acc = make(VR_RING_ACCEPT, 4);
	acc.ep = 2;
	REQUIRE(vr_fe_request(&fa.fe, &acc, &now) == 1);
	REQUIRE(vr_ep_open(b.s.node(1).eng, 1, 1, false) == 0);
	uint32_t c = 0;
	REQUIRE(vr_connect(b.s.node(1).eng, 1, b.s.node(0).mac, 2, 11, &c) == 0);
	REQUIRE(b.s.run([&] { return fa.answer_to(4) != nullptr; }, b.s.now + 1000000000));
	CHECK(fa.answer_to(4)->rsp.status == 0);
	// B's endpoint still does not listen: a connect to it is refused.
	uint32_t c2 = 0;
	REQUIRE(vr_connect(b.s.node(1).eng, 1, b.s.node(0).mac, 3, 12, &c2) == 0);
	REQUIRE(b.s.run([&] { return find(b.s.node(1), 12, VR_WC_CONNECT) != nullptr; }, b.s.now + 1000000000));
	CHECK(find(b.s.node(1), 12, VR_WC_CONNECT)->status == -ECONNREFUSED);
}
