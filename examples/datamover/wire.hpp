// The data mover's protocol over vmrdma. Control travels in tagged sends; file
// data in RDMA writes into the receiver's staging ring. Messages are plain
// little-endian structs (both ends are the same binary).
//
//   receiver -> sender  HELLO            staging region, chunk size, slots
//   sender -> receiver  CTRL/entry       one manifest entry (dir, file, symlink)
//   receiver -> sender  ENTRY_REPLY|id   status + bitmap of chunks it already has
//   sender: RDMA write chunk into slot s, then NOTICE|s (file, chunk, length, hash)
//   receiver -> sender  ACK|s            chunk verified and written (or errno): slot free
//   sender -> receiver  CTRL/done        whole-file hash once every chunk is acked
//   receiver -> sender  DONE_REPLY|id    re-read from disk and verified (or not)
//   sender -> receiver  CTRL/end         receiver applies directory modes/mtimes
//   receiver -> sender  END_REPLY
#pragma once

#include <cstdint>

namespace datamover::wire {

constexpr std::uint32_t magic = 0x444d5631;  // "DMV1"

enum kind : std::uint64_t {
    hello = 1,
    ctrl = 2,
    entry_reply = 3,
    done_reply = 4,
    end_reply = 5,
    notice = 6,
    ack = 7,
};
constexpr std::uint64_t tag(kind k, std::uint64_t value = 0) { return (std::uint64_t{k} << 56) | value; }

struct hello_msg {
    std::uint32_t magic;
    std::uint32_t chunk_size;
    std::uint32_t slots;
    std::uint32_t reserved;
    std::uint8_t staging[16];  // remote_region::to_bytes()
};

enum ctrl_type : std::uint32_t { ctrl_entry = 1, ctrl_done = 2, ctrl_end = 3 };
enum entry_kind : std::uint32_t { entry_dir = 1, entry_file = 2, entry_symlink = 3 };

struct ctrl_msg {
    std::uint32_t type;
    std::uint32_t file_id;
    std::uint32_t kind;
    std::uint32_t mode;
    std::uint64_t size;
    std::int64_t mtime_ns;
    std::uint64_t hash;      // ctrl_done: whole-file hash
    std::uint32_t path_len;  // followed by the relative path
    std::uint32_t link_len;  // then a symlink's target
};
constexpr std::uint32_t max_path = 4096;
constexpr std::uint32_t ctrl_buffer = sizeof(ctrl_msg) + 2 * max_path;

// ENTRY_REPLY: may come in several pieces (more != 0) for very large files.
struct entry_reply_msg {
    std::int32_t status;  // 0 or an errno
    std::uint32_t more;
    std::uint64_t first_chunk;
    std::uint64_t count;  // bits that follow the message text
    std::uint32_t text_len;
    std::uint32_t reserved;
};
constexpr std::uint32_t bitmap_piece_bytes = 32 * 1024;
constexpr std::uint32_t max_text = 512;
constexpr std::uint32_t entry_reply_buffer = sizeof(entry_reply_msg) + max_text + bitmap_piece_bytes;

struct notice_msg {
    std::uint32_t file_id;
    std::uint32_t length;
    std::uint64_t chunk;
    std::uint64_t hash;
};

// ACK, DONE_REPLY and END_REPLY.
struct status_msg {
    std::int32_t status;  // 0 or an errno (EBADMSG: checksum mismatch)
    std::uint32_t text_len;
    std::uint64_t value;  // DONE_REPLY: the receiver's hash of what it has on disk
    char text[max_text];
};

}  // namespace datamover::wire
