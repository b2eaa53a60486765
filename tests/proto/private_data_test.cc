// SPDX-License-Identifier: GPL-2.0 OR MIT
// Private data: CONNECT_REQ carries the connecting side's bytes to the
// accepting one, CONNECT_ACK the listening endpoint's accept data back; both
// within VR_PRIVATE_DATA_MAX, both under the CRC, both kept per connection.
#include <doctest/doctest.h>

#include <cstring>
#include <string>

#include "harness.h"

using namespace vrtest;

namespace {

struct Pair {
	vrsim::Sim s{5};
	std::vector<std::vector<uint8_t>> from_a;
	uint64_t cookie = 9;
	explicit Pair(vr_config cfg = base_cfg())
	{
		REQUIRE(s.add_node(cfg) == 0);
		REQUIRE(s.add_node(cfg) == 1);
		REQUIRE(vr_ep_open(s.node(0).eng, 0, 1, false) == 0);
		REQUIRE(vr_ep_open(s.node(1).eng, 0, 1, true) == 0);
		s.tap = [this](int from, const std::vector<uint8_t> &b) {
			if (from == 0)
				from_a.push_back(b);
		};
	}
	vrsim::Node &A() { return s.node(0); }
	vrsim::Node &B() { return s.node(1); }
	// Connect with `data`; returns A's and B's connection ids.
	void connect(const std::string &data, uint32_t *ca, uint32_t *cb)
	{
		size_t base = B().comps.size();
		uint64_t k = ++cookie;
		REQUIRE(vr_connect_data(A().eng, 0, B().mac, 0, data.data(), (uint32_t)data.size(), k,
					ca) == 0);
		REQUIRE(s.run([&] { return find(A(), k, VR_WC_CONNECT) != nullptr; }, s.now + 10000000));
		REQUIRE(find(A(), k, VR_WC_CONNECT)->status == 0);
		*cb = 0;
		for (size_t i = base; i < B().comps.size(); i++)
			if (B().comps[i].op == VR_WC_ACCEPT)
				*cb = B().comps[i].conn;
		REQUIRE(*cb != 0);
	}
	static std::string peer(vrsim::Node &n, uint32_t conn)
	{
		char buf[VR_PRIVATE_DATA_MAX];
		int len = vr_conn_peer_data(n.eng, conn, buf, sizeof(buf));
		REQUIRE(len >= 0);
		return std::string(buf, (size_t)len);
	}
};

} // namespace

TEST_CASE("private data: the connector's bytes reach the acceptor, the accept data comes back")
{
	Pair p;
	const std::string offer = "descriptor: rkey 0x1234 len 65536";
	REQUIRE(vr_ep_set_accept_data(p.B().eng, 0, offer.data(), (uint32_t)offer.size()) == 0);
	uint32_t ca, cb;
	std::string hello(VR_PRIVATE_DATA_MAX, 'x'); // the largest allowed
	for (size_t i = 0; i < hello.size(); i++)
		hello[i] = (char)(i * 7 + 1);
	p.connect(hello, &ca, &cb);
	CHECK(Pair::peer(p.B(), cb) == hello);
	CHECK(Pair::peer(p.A(), ca) == offer);

	// A short copy: the whole length is still told.
	char two[2];
	CHECK(vr_conn_peer_data(p.A().eng, ca, two, 2) == (int)offer.size());
	CHECK(memcmp(two, offer.data(), 2) == 0);

	// A second connection without data sees the same accept data, and its
	// acceptor sees none.
	uint32_t ca2, cb2;
	p.connect("", &ca2, &cb2);
	CHECK(Pair::peer(p.B(), cb2).empty());
	CHECK(Pair::peer(p.A(), ca2) == offer);
	// ... and the first connection's data is its own.
	CHECK(Pair::peer(p.B(), cb) == hello);

	// Cleared: later connections get none.
	REQUIRE(vr_ep_set_accept_data(p.B().eng, 0, nullptr, 0) == 0);
	uint32_t ca3, cb3;
	p.connect("z", &ca3, &cb3);
	CHECK(Pair::peer(p.A(), ca3).empty());
	CHECK(Pair::peer(p.B(), cb3) == "z");
}

TEST_CASE("private data: the same with link integrity and with authentication (the handshake is always covered)")
{
	for (int mode = 0; mode < 2; mode++) {
		CAPTURE(mode);
		vr_config cfg = base_cfg();
		if (mode == 0) {
			cfg.integrity = VR_INTEGRITY_LINK;
		} else {
			cfg.auth = VR_AUTH_PSK;
			std::memset(cfg.auth_key, 0x5a, sizeof(cfg.auth_key));
		}
		Pair p(cfg);
		const std::string offer(VR_PRIVATE_DATA_MAX, 'o');
		REQUIRE(vr_ep_set_accept_data(p.B().eng, 0, offer.data(), (uint32_t)offer.size()) == 0);
		uint32_t ca, cb;
		p.connect("hello from A", &ca, &cb);
		CHECK(Pair::peer(p.B(), cb) == "hello from A");
		CHECK(Pair::peer(p.A(), ca) == offer);
	}
}

TEST_CASE("private data: too long is refused, a connecting connection has none yet")
{
	Pair p;
	std::string big(VR_PRIVATE_DATA_MAX + 1, 'b');
	uint32_t c;
	CHECK(vr_connect_data(p.A().eng, 0, p.B().mac, 0, big.data(), (uint32_t)big.size(), 1, &c) ==
	      -EINVAL);
	CHECK(vr_ep_set_accept_data(p.B().eng, 0, big.data(), (uint32_t)big.size()) == -EINVAL);
	CHECK(vr_ep_set_accept_data(p.B().eng, 3, "x", 1) == -ENOENT);
	REQUIRE(vr_connect_data(p.A().eng, 0, p.B().mac, 0, "abc", 3, 2, &c) == 0);
	char buf[8];
	CHECK(vr_conn_peer_data(p.A().eng, c, buf, sizeof(buf)) == -ENOENT); // not connected yet
	CHECK(vr_conn_peer_data(p.A().eng, 0x12345, buf, sizeof(buf)) == -ENOENT);
}

TEST_CASE("private data: on the wire under the CRC; a frame with too much is dropped")
{
	Pair p;
	uint32_t ca, cb;
	p.connect("secret-ish", &ca, &cb);
	std::vector<uint8_t> req;
	for (auto &f : p.from_a)
		if (f[VR_ETH_HLEN + VR_OFF_OPCODE] == VR_OP_CONNECT_REQ)
			req = f;
	REQUIRE(req.size() == VR_ETH_HLEN + VR_HDR_LEN + 10);
	CHECK(memcmp(req.data() + VR_ETH_HLEN + VR_HDR_LEN, "secret-ish", 10) == 0);

	vr_parsed parsed;
	REQUIRE(vr_wire_parse(req.data(), (uint32_t)req.size(), VR_ETHERTYPE_DEFAULT, &parsed) == 0);
	// A flipped payload bit fails the CRC: private data is never left to the link.
	auto bad = req;
	bad[VR_ETH_HLEN + VR_HDR_LEN + 9] ^= 1; // its last byte (back() made GCC 12 -O3 warn)
	CHECK(vr_wire_parse(bad.data(), (uint32_t)bad.size(), VR_ETHERTYPE_DEFAULT, &parsed) == -EBADMSG);
	// LINK_FCS on a handshake frame is refused even with a good CRC.
	vr_hdr h = parsed.h;
	h.flags |= VR_F_LINK_FCS;
	auto flagged = req;
	vr_wire_encode_full(flagged.data(), &h, req.data() + VR_ETH_HLEN + VR_HDR_LEN);
	CHECK(vr_wire_parse(flagged.data(), (uint32_t)flagged.size(), VR_ETHERTYPE_DEFAULT, &parsed) ==
	      -EPROTO);
	// One byte more than the limit, correctly sealed: a length error.
	h = parsed.h;
	h.flags = 0;
	h.payload_len = VR_PRIVATE_DATA_MAX + 1;
	std::vector<uint8_t> big(VR_ETH_HLEN + VR_HDR_LEN + VR_PRIVATE_DATA_MAX + 1, 0x5a);
	memcpy(big.data(), req.data(), VR_ETH_HLEN);
	vr_wire_encode_full(big.data(), &h, big.data() + VR_ETH_HLEN + VR_HDR_LEN);
	CHECK(vr_wire_parse(big.data(), (uint32_t)big.size(), VR_ETHERTYPE_DEFAULT, &parsed) == -EMSGSIZE);
}

TEST_CASE("private data: an endpoint that listens only once its accept data is set never accepts without it")
{
	Pair p;
	REQUIRE(vr_ep_close(p.B().eng, 0) == 0);
	REQUIRE(vr_ep_open(p.B().eng, 0, 1, false) == 0); // open, not listening yet
	// A connect before listen() is told there is no listener; nothing is accepted.
	uint64_t early = 77;
	uint32_t c;
	size_t base = p.B().comps.size();
	REQUIRE(vr_connect_data(p.A().eng, 0, p.B().mac, 0, "early", 5, early, &c) == 0);
	REQUIRE(p.s.run([&] { return find(p.A(), early, VR_WC_CONNECT) != nullptr; }, p.s.now + 10000000));
	CHECK(find(p.A(), early, VR_WC_CONNECT)->status == -ECONNREFUSED);
	for (size_t i = base; i < p.B().comps.size(); i++)
		CHECK(p.B().comps[i].op != VR_WC_ACCEPT);

	const std::string offer = "the region to write";
	REQUIRE(vr_ep_set_accept_data(p.B().eng, 0, offer.data(), (uint32_t)offer.size()) == 0);
	REQUIRE(vr_ep_listen(p.B().eng, 0) == 0);
	REQUIRE(vr_ep_listen(p.B().eng, 0) == 0); // again: nothing changes
	CHECK(vr_ep_listen(p.B().eng, 9) == -ENOENT);
	uint32_t ca, cb;
	p.connect("late", &ca, &cb);
	CHECK(Pair::peer(p.A(), ca) == offer);
	CHECK(Pair::peer(p.B(), cb) == "late");
}
