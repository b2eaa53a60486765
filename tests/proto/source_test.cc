// The source of a received message, and the peer of a connection: a RECV
// completion names the peer endpoint its message came from (recorded when
// it arrived, so a message buffered before its receive still knows it after
// the peer has gone), and ACCEPT and CONNECT name the other end, all in
// vr_completion.value as vr_peer_word. What MPI_ANY_SOURCE needs to learn
// who sent a message.
#include <doctest/doctest.h>

#include "harness.h"

using namespace vrtest;

namespace {

uint64_t word(const vrsim::Node &n, uint16_t ep) { return vr_peer_word(n.mac, ep); }

const vr_completion *last_of(const vrsim::Node &n, uint32_t op)
{
	for (auto it = n.comps.rbegin(); it != n.comps.rend(); ++it)
		if (it->op == op)
			return &*it;
	return nullptr;
}

}  // namespace

TEST_CASE("vr_peer_word packs the endpoint above the MAC and unpacks both")
{
	const uint8_t mac[6] = {0x02, 0x11, 0x22, 0x33, 0x44, 0xfe};
	uint64_t w = vr_peer_word(mac, 0xbeef);
	CHECK(w == 0xbeef0211223344feull);
	uint8_t back[6] = {};
	uint16_t ep = 0;
	vr_peer_of_word(w, back, &ep);
	CHECK(std::memcmp(back, mac, 6) == 0);
	CHECK(ep == 0xbeef);
}

TEST_CASE("receives name their sender among several; ACCEPT and CONNECT name the peer")
{
	vrsim::Sim s(5);
	REQUIRE(s.add_node(base_cfg()) == 0); // the receiver, endpoint 0
	REQUIRE(s.add_node(base_cfg()) == 1); // sender on endpoint 2
	REQUIRE(s.add_node(base_cfg()) == 2); // sender on endpoint 3
	REQUIRE(vr_ep_open(s.node(0).eng, 0, 1, true) == 0);
	REQUIRE(vr_ep_open(s.node(1).eng, 2, 1, false) == 0);
	REQUIRE(vr_ep_open(s.node(2).eng, 3, 1, false) == 0);
	uint32_t c1 = 0, a1 = 0, c2 = 0, a2 = 0;
	REQUIRE(connect(s, 1, 2, 0, 0, &c1, &a1));
	CHECK(last_of(s.node(1), VR_WC_CONNECT)->value == word(s.node(0), 0));
	CHECK(last_of(s.node(0), VR_WC_ACCEPT)->value == word(s.node(1), 2));
	REQUIRE(connect(s, 2, 3, 0, 0, &c2, &a2));
	CHECK(last_of(s.node(0), VR_WC_ACCEPT)->value == word(s.node(2), 3));
	uint8_t mac[6];
	uint16_t ep = 0;
	REQUIRE(vr_conn_peer(s.node(0).eng, a2, mac, &ep) == 0);
	CHECK(std::memcmp(mac, s.node(2).mac, 6) == 0);
	CHECK(ep == 3);
	CHECK(vr_conn_peer(s.node(0).eng, 0x7777, mac, &ep) == -ENOENT);

	GuardedBuf m1, m2, rb;
	m1.init(256, 1);
	m2.init(256, 2);
	rb.init(1024, 3);
	REQUIRE(reg(s.node(1), 2, m1, 0) == 0);
	REQUIRE(reg(s.node(2), 3, m2, 0) == 0);
	REQUIRE(reg(s.node(0), 0, rb, VR_ACCESS_LOCAL_WRITE) == 0);
	// Both send the same tag: only the completion tells them apart.
	for (int i = 0; i < 4; i++)
		REQUIRE(vr_post_recv(s.node(0).eng, 0, rb.key, 256 * i, 256, 9, ~0ull, 10 + i) == 0);
	REQUIRE(vr_post_send(s.node(1).eng, c1, m1.key, 0, 100, 9, 1) == 0);
	REQUIRE(vr_post_send(s.node(2).eng, c2, m2.key, 0, 200, 9, 2) == 0);
	REQUIRE(vr_post_send(s.node(1).eng, c1, m1.key, 0, 50, 9, 3) == 0);
	REQUIRE(s.run([&] { return count(s.node(0), 10) + count(s.node(0), 11) + count(s.node(0), 12) == 3; },
		      s.now + 1000000000));
	int from1 = 0, from2 = 0;
	for (uint64_t cookie = 10; cookie < 13; cookie++) {
		const vr_completion *c = find(s.node(0), cookie, VR_WC_RECV);
		REQUIRE(c);
		REQUIRE(c->status == 0);
		if (c->value == word(s.node(1), 2)) {
			from1++;
			CHECK(c->conn == a1);
			CHECK((c->bytes == 100 || c->bytes == 50));
		} else {
			CHECK(c->value == word(s.node(2), 3));
			CHECK(c->conn == a2);
			CHECK(c->bytes == 200);
			from2++;
		}
	}
	CHECK(from1 == 2);
	CHECK(from2 == 1);
}

TEST_CASE("a message buffered before its receive still names its sender after the sender has gone")
{
	vrsim::Sim s(6);
	REQUIRE(s.add_node(base_cfg()) == 0);
	REQUIRE(s.add_node(base_cfg()) == 1);
	REQUIRE(vr_ep_open(s.node(0).eng, 0, 1, true) == 0);
	REQUIRE(vr_ep_open(s.node(1).eng, 1, 1, false) == 0);
	uint32_t c = 0, a = 0;
	REQUIRE(connect(s, 1, 1, 0, 0, &c, &a));
	GuardedBuf m, rb;
	m.init(64, 1);
	rb.init(64, 2);
	REQUIRE(reg(s.node(1), 1, m, 0) == 0);
	REQUIRE(reg(s.node(0), 0, rb, VR_ACCESS_LOCAL_WRITE) == 0);
	REQUIRE(vr_post_send(s.node(1).eng, c, m.key, 0, 64, 4, 1) == 0);
	REQUIRE(s.run([&] { return find(s.node(1), 1) != nullptr; }, s.now + 1000000000));
	REQUIRE(find(s.node(1), 1)->status == 0); // buffered at the receiver, acknowledged
	REQUIRE(vr_disconnect(s.node(1).eng, c) == 0);
	REQUIRE(s.run([&] { return vr_conn_state(s.node(0).eng, a) != VR_CONN_CONNECTED; },
		      s.now + 1000000000));
	REQUIRE(vr_disconnect(s.node(0).eng, a) == 0); // the receiver lets it go too
	CHECK(vr_conn_peer(s.node(0).eng, a, rb.data(), nullptr) == -ENOENT);
	REQUIRE(vr_post_recv(s.node(0).eng, 0, rb.key, 0, 64, 4, ~0ull, 7) == 0);
	const vr_completion *r = find(s.node(0), 7, VR_WC_RECV);
	REQUIRE(r);
	CHECK(r->status == 0);
	CHECK(r->value == word(s.node(1), 1));
	CHECK(std::memcmp(rb.data(), m.data(), 64) == 0);
}
