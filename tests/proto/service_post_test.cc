// proto/service.h's data path, on two simulated engines: every ring request
// reaches the engine through vr_svc_post, and every completion comes back
// through vr_svc_rsp_of_wc (and to the frontend's form through
// vr_svc_wc_of_rsp) with what the request needs: bytes, tag, old value, the
// new connection; a refusal keeps the engine's status.
#include <doctest/doctest.h>

#include <cstring>

#include "harness.h"

extern "C" {
#include "ring.h"
#include "service.h"
}

using namespace vrtest;

namespace {

vr_ring_req request(uint8_t opcode, uint32_t conn = 0)
{
	vr_ring_req r{};
	r.opcode = opcode;
	r.conn = conn;
	return r;
}

// Posts `req` on node 0 as a backend would, runs the simulation until its
// completion and answers it as a ring response.
vr_ring_rsp post_and_answer(vrsim::Sim &s, const vr_ring_req &req, uint32_t conn, uint64_t cookie)
{
	uint32_t new_conn = 0;
	REQUIRE(vr_svc_post(s.node(0).eng, &req, conn, cookie, &new_conn) == 0);
	REQUIRE(s.run([&] { return find(s.node(0), cookie) != nullptr; }, s.now + 2000000000));
	const vr_completion *wc = find(s.node(0), cookie);
	vr_svc_pending pending{req.cookie, req.opcode, req.ep, req.conn, req.len};
	vr_ring_rsp rsp{};
	vr_svc_rsp_of_wc(&pending, wc, wc->conn, &rsp);
	return rsp;
}

}  // namespace

TEST_CASE("every data-path request reaches the engine through vr_svc_post and is answered")
{
	vrsim::Sim s(11);
	REQUIRE(s.add_node(base_cfg()) == 0);
	REQUIRE(s.add_node(base_cfg()) == 1);
	REQUIRE(vr_ep_open(s.node(0).eng, 0, 1, false) == 0);
	REQUIRE(vr_ep_open(s.node(1).eng, 0, 1, true) == 0);

	auto connect = request(VR_RING_CONNECT);
	connect.cookie = 0xc0;
	connect.peer_ep = 0;
	std::memcpy(connect.peer_mac, s.node(1).mac, 6);
	auto rsp = post_and_answer(s, connect, 0, 1);
	REQUIRE(rsp.status == 0);
	CHECK(rsp.cookie == 0xc0); // the frontend's cookie, not the engine's
	CHECK(rsp.opcode == VR_RING_CONNECT);
	const uint32_t conn = rsp.conn;
	CHECK(conn != 0);

	GuardedBuf local, remote, word;
	local.init(4096, 1);
	remote.init(4096, 2);
	word.init(8, 3);
	std::memset(word.data(), 0, 8);
	REQUIRE(reg(s.node(0), 0, local, VR_ACCESS_LOCAL_WRITE) == 0);
	REQUIRE(reg(s.node(1), 0, remote, VR_ACCESS_LOCAL_WRITE | VR_ACCESS_REMOTE_WRITE | VR_ACCESS_REMOTE_READ) == 0);
	REQUIRE(reg(s.node(1), 0, word, VR_ACCESS_REMOTE_ATOMIC) == 0);

	auto write = request(VR_RING_WRITE, 77); // 77: the frontend's handle
	write.lkey = local.key;
	write.rkey = remote.key;
	write.len = 1000;
	write.roff = 16;
	rsp = post_and_answer(s, write, conn, 2);
	CHECK(rsp.status == 0);
	CHECK(rsp.bytes == 1000);
	CHECK(rsp.conn == 77); // answered with the handle the frontend used
	CHECK(std::memcmp(remote.data() + 16, local.data(), 1000) == 0);

	auto fadd = request(VR_RING_FADD, 77);
	fadd.rkey = word.key;
	fadd.operand = 5;
	rsp = post_and_answer(s, fadd, conn, 3);
	CHECK(rsp.status == 0);
	CHECK(rsp.value == 0);
	fadd.cookie = 4;
	rsp = post_and_answer(s, fadd, conn, 4);
	CHECK(rsp.value == 5);

	auto cswap = request(VR_RING_CSWAP, 77);
	cswap.rkey = word.key;
	cswap.operand = 10;
	cswap.swap = 99;
	rsp = post_and_answer(s, cswap, conn, 5);
	CHECK(rsp.value == 10);

	// A refused write (a key the peer does not have) keeps the engine's
	// status and its NAK reason, and moves no bytes.
	write.rkey = remote.key + 1000;
	rsp = post_and_answer(s, write, conn, 6);
	CHECK(rsp.status == -EACCES);
	CHECK(rsp.nak_reason == VR_NAK_BAD_KEY);
	CHECK(rsp.bytes == 0);

	// The frontend's view of that answer.
	vr_completion wc{};
	vr_svc_wc_of_rsp(&rsp, &wc);
	CHECK(wc.op == VR_WC_WRITE);
	CHECK(wc.status == -EACCES);
	CHECK(wc.nak_reason == VR_NAK_BAD_KEY);

	uint32_t unused = 0;
	auto disconnect = request(VR_RING_DISCONNECT);
	CHECK(vr_svc_post(s.node(0).eng, &disconnect, conn, 0, &unused) == 0);
	CHECK(vr_svc_post(s.node(0).eng, &disconnect, conn, 0, &unused) < 0); // gone already
}

TEST_CASE("requests the engine does not take are refused by vr_svc_post")
{
	vrsim::Sim s(12);
	REQUIRE(s.add_node(base_cfg()) == 0);
	uint32_t unused = 0;
	for (uint8_t op : {uint8_t(0), uint8_t(VR_RING_ACCEPT), uint8_t(VR_RING_OPEN_EP), uint8_t(VR_RING_REG),
			   uint8_t(200)}) {
		auto r = request(op);
		CHECK(vr_svc_post(s.node(0).eng, &r, 0, 1, &unused) == -EINVAL);
	}
	auto w = request(VR_RING_WRITE, 0);
	CHECK(vr_svc_post(s.node(0).eng, &w, 12345, 1, &unused) < 0); // no such connection
}

TEST_CASE("a RECV's answer carries the message's length and tag")
{
	vr_svc_pending pending{9, VR_RING_RECV, 3, 0, 4096};
	vr_completion wc{};
	wc.op = VR_WC_RECV;
	wc.bytes = 100;
	wc.tag = 0xabc;
	wc.conn = 4;
	vr_ring_rsp rsp{};
	vr_svc_rsp_of_wc(&pending, &wc, 0, &rsp);
	CHECK(rsp.bytes == 100);
	CHECK(rsp.tag == 0xabc);
	CHECK(rsp.ep == 3);
	vr_completion back{};
	vr_svc_wc_of_rsp(&rsp, &back);
	CHECK(back.op == VR_WC_RECV);
	CHECK(back.bytes == 100);
	CHECK(back.tag == 0xabc);
	CHECK(back.cookie == 9);
}
