// SPDX-License-Identifier: GPL-2.0 OR MIT
// bundle.h - builds a bundle (proto/wire.h) of whole frames, as a host sends it.
#pragma once
#include <cstdint>
#include <vector>

extern "C" {
#include "wire.h"
}

namespace vrtest {

inline std::vector<uint8_t> bundle_of(const std::vector<std::vector<uint8_t>> &frames)
{
	std::vector<uint8_t> b(VR_ETH_HLEN + VR_BUNDLE_HLEN);
	vr_wire_bundle_init(b.data(), frames.at(0).data());
	for (const auto &f : frames) {
		uint8_t len[VR_BUNDLE_ENTRY_HLEN];
		vr_put_be16(len, (uint16_t)f.size());
		b.insert(b.end(), len, len + VR_BUNDLE_ENTRY_HLEN);
		b.insert(b.end(), f.begin(), f.end());
	}
	vr_wire_bundle_set_count(b.data(), (uint16_t)frames.size());
	return b;
}

}  // namespace vrtest
