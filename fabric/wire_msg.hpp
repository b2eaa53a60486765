// The provider's own protocol, carried in the payload of vmrdma sends between
// two provider endpoints (docs/mpi.md, "Messages"). Every message starts with
// one fixed header; some kinds carry up to two piece descriptors after it
// (the data of a large message, offered for the receiver to read), then
// inline data. Little-endian on the wire, like the split driver's rings; the
// hosts are little-endian (static_assert below), so encoding is a memcpy.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>

namespace vmrdma::fabric {

static_assert(std::endian::native == std::endian::little, "the provider's wire format is little-endian");

enum class msg_kind : std::uint8_t {
    eager = 1,        // a message, its data inline
    rts = 2,          // a large message: the header, then its pieces as offers
    offer = 3,        // one more piece of a large message, write or read response
    fin = 4,          // the receiver has read a piece: the sender may reuse it
    write = 5,        // RMA write: inline data, or pieces
    write_ack = 6,    // the target placed it (or says why not)
    read_req = 7,     // RMA read
    read_resp = 8,    // inline data, or pieces
    atomic = 9,       // operands inline: operand, then compare
    atomic_resp = 10, // the previous values inline, when fetched
};

// header.flags
inline constexpr std::uint8_t msg_tagged = 0x01;     // eager, rts: a tagged message
inline constexpr std::uint8_t msg_has_data = 0x02;   // eager, rts, write: header.data is remote CQ data
inline constexpr std::uint8_t msg_fetch = 0x04;      // atomic: answer with the previous values
inline constexpr std::uint8_t msg_offered = 0x08;    // write, read_resp: the data comes as offers, not inline

struct header {
    msg_kind kind;
    std::uint8_t flags;
    std::uint8_t atomic_op;   // atomic: enum fi_op
    std::uint8_t datatype;    // atomic: enum fi_datatype
    std::uint32_t status;     // write_ack, read_resp, atomic_resp, fin: 0 or a positive FI_ errno
    std::uint64_t tag;        // eager, rts: the tag
    std::uint64_t data;       // remote CQ data (msg_has_data)
    std::uint64_t length;     // eager, rts, write, read_req, read_resp: the whole length; atomic: element count
    std::uint64_t id;         // the operation's id at its initiator, echoed in answers; rts/offer/fin: the bulk's
    std::uint64_t key;        // write, read_req, atomic: the target MR's key
    std::uint64_t addr;       // write, read_req, atomic: the target address (virtual, or offset in the MR)
    std::uint8_t pieces;      // piece descriptors that follow (0..2)
    std::uint8_t reserved[7];
};
static_assert(sizeof(header) == 64);

// A piece of a large transfer, staged in the sender's registered memory:
// read it with vmrdma's read at (rkey, region_offset), `length` bytes that
// belong at `message_offset`; answer fin with header.id = the bulk and
// header.addr = `index`.
struct piece {
    std::uint64_t rkey;
    std::uint64_t region_offset;
    std::uint64_t message_offset;
    std::uint32_t length;
    std::uint32_t index;
};
static_assert(sizeof(piece) == 32);

inline constexpr std::size_t max_pieces_per_message = 2;

// Writes header, pieces and inline data into `out`; returns the bytes used.
inline std::size_t encode(std::span<std::byte> out, const header& h, std::span<const piece> pieces,
                          std::span<const std::byte> inline_data) {
    header copy = h;
    copy.pieces = static_cast<std::uint8_t>(pieces.size());
    std::size_t n = sizeof copy + pieces.size_bytes() + inline_data.size();
    if (pieces.size() > max_pieces_per_message || n > out.size()) return 0;
    std::memcpy(out.data(), &copy, sizeof copy);
    if (!pieces.empty()) std::memcpy(out.data() + sizeof copy, pieces.data(), pieces.size_bytes());
    if (!inline_data.empty())
        std::memcpy(out.data() + sizeof copy + pieces.size_bytes(), inline_data.data(), inline_data.size());
    return n;
}

struct decoded {
    header h;
    piece pieces[max_pieces_per_message];
    std::span<const std::byte> inline_data;  // into the received bytes
};

// Parses what a peer sent; nullopt for anything malformed (too short, an
// unknown kind, too many pieces, a piece whose range overflows).
inline std::optional<decoded> decode(std::span<const std::byte> in) {
    decoded d{};
    if (in.size() < sizeof(header)) return std::nullopt;
    std::memcpy(&d.h, in.data(), sizeof d.h);
    const auto k = static_cast<std::uint8_t>(d.h.kind);
    if (k < static_cast<std::uint8_t>(msg_kind::eager) || k > static_cast<std::uint8_t>(msg_kind::atomic_resp))
        return std::nullopt;
    if (d.h.pieces > max_pieces_per_message) return std::nullopt;
    const std::size_t pieces_bytes = d.h.pieces * sizeof(piece);
    if (in.size() < sizeof(header) + pieces_bytes) return std::nullopt;
    if (pieces_bytes) std::memcpy(d.pieces, in.data() + sizeof(header), pieces_bytes);
    for (unsigned i = 0; i < d.h.pieces; ++i) {
        const auto& p = d.pieces[i];
        if (p.length == 0 || p.message_offset + p.length < p.message_offset ||
            p.region_offset + p.length < p.region_offset)
            return std::nullopt;
    }
    d.inline_data = in.subspan(sizeof(header) + pieces_bytes);
    return d;
}

}  // namespace vmrdma::fabric
