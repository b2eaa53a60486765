// datamover serve: the receiving side.
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "examples/datamover/common.hpp"
#include "examples/datamover/datamover.hpp"
#include "examples/datamover/wire.hpp"
#include "examples/datamover/xxh64.hpp"
#include "vmrdma/rdma.hpp"
#include "vmrdma/runtime.hpp"

namespace datamover {
namespace {

using namespace std::chrono_literals;
using vmrdma::access;
using vmrdma::task;

// The per-file resume record, `.NAME.dmstate` beside `.NAME.dmpart`: this
// header, then one bit per chunk already written and verified.
struct state_header {
    char magic[8];
    std::uint64_t size;
    std::int64_t mtime_ns;
    std::uint64_t chunk_size;
    std::uint64_t nchunks;
    std::uint32_t mode;
    std::uint32_t reserved;
};
constexpr char state_magic[8] = {'D', 'M', 'S', 'T', 'A', 'T', 'E', '1'};

// Opens `rel`'s parent directory beneath `root`, refusing to follow any
// symlink on the way (a sender cannot make us write outside the destination).
// Returns the O_PATH fd and the last component, or -errno.
int open_parent(int root, const std::string& rel, std::string& base) {
    auto slash = rel.rfind('/');
    base = slash == std::string::npos ? rel : rel.substr(slash + 1);
    std::string dir = slash == std::string::npos ? "." : rel.substr(0, slash);
    open_how how{};
    how.flags = O_PATH | O_DIRECTORY | O_CLOEXEC;
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
    long fd = syscall(SYS_openat2, root, dir.c_str(), &how, sizeof how);
    return fd < 0 ? -errno : static_cast<int>(fd);
}

bool safe_relative(const std::string& rel) {
    if (rel.empty() || rel.front() == '/' || rel.find('\0') != std::string::npos) return false;
    std::size_t start = 0;
    while (start <= rel.size()) {
        auto end = rel.find('/', start);
        if (end == std::string::npos) end = rel.size();
        auto part = rel.substr(start, end - start);
        if (part.empty() || part == "." || part == "..") return false;
        start = end + 1;
    }
    return true;
}

struct open_file {
    std::string rel, base;
    int dirfd = -1, fd = -1, state_fd = -1;
    std::uint64_t size = 0, nchunks = 0;
    std::int64_t mtime_ns = 0;
    std::uint32_t mode = 0;
    bool in_place = false;  // the final file already matched size and mtime
    std::vector<std::uint8_t> bits;
    bool has(std::uint64_t c) const { return bits[c / 8] & (1u << (c % 8)); }
    void close_all() {
        for (int* f : {&fd, &state_fd, &dirfd})
            if (*f >= 0) ::close(std::exchange(*f, -1));
    }
};

struct dir_attrs {
    std::string rel;
    std::uint32_t mode;
    std::int64_t mtime_ns;
};

struct session_failure {
    int status = 0;
    std::string text;
};

class receiver {
public:
    receiver(const serve_options& o, vmrdma::event_loop& loop, vmrdma::device& dev, int root)
        : o_(o), loop_(loop), dev_(dev), root_(root),
          ep_(dev.open_endpoint(o.endpoint, {.weight = 1, .listen = true})) {}

    task<int> run() {
        std::optional<vmrdma::connection> next;
        for (;;) {
            // (No co_await inside ?: — GCC mishandles the temporaries there.)
            vmrdma::connection conn;
            if (next) {
                conn = std::move(*next);
                next.reset();
            } else {
                conn = co_await ep_.accept();
            }
            std::stop_source accept_stop;
            auto watch = [&]() -> task<void> {
                try {
                    auto c = co_await ep_.accept(accept_stop.get_token());
                    next.emplace(std::move(c));
                    note("a new sender connected; ending the previous session (its progress is kept)");
                    superseded_.request_stop();
                } catch (const vmrdma::error& e) {
                    if (e.code() != vmrdma::errc::cancelled) throw;
                }
            };
            auto body = [&]() -> task<int> {
                int rc = co_await session(std::move(conn));
                accept_stop.request_stop();
                co_return rc;
            };
            auto [rc, unused] = co_await vmrdma::when_all(body(), watch());
            (void)unused;
            superseded_ = std::stop_source{};
            if (o_.once && (rc == exit_code::ok || rc == exit_code::receiver_failed)) co_return rc;
        }
    }

private:
    void note(const std::string& s) { std::fprintf(stderr, "datamover serve: %s\n", s.c_str()); }

    struct session_state {
        vmrdma::connection conn;
        std::stop_source stop;
        std::vector<std::byte> staging, ctrl, reply, acks, notices, verify;
        vmrdma::region staging_mr, ctrl_mr, reply_mr, acks_mr, notices_mr;
        std::map<std::uint32_t, open_file> files;
        std::vector<dir_attrs> dirs;
        std::optional<session_failure> failure;
        bool completed = false, idle = false;
        std::chrono::steady_clock::time_point last_activity = std::chrono::steady_clock::now();
        std::uint64_t bytes_written = 0, chunks_written = 0, files_done = 0;
        void touch() { last_activity = std::chrono::steady_clock::now(); }
        void fail(int status, std::string text) {
            if (!failure) failure = session_failure{status, std::move(text)};
            stop.request_stop();
        }
        ~session_state() {
            for (auto& [id, f] : files) f.close_all();
        }
    };

    task<int> session(vmrdma::connection conn) {
        session_state s;
        s.conn = std::move(conn);
        std::stop_callback forward(superseded_.get_token(), [&] { s.stop.request_stop(); });
        const std::size_t chunk = o_.chunk_size;
        s.staging.resize(chunk * o_.slots);
        s.ctrl.resize(wire::ctrl_buffer);
        s.reply.resize(wire::entry_reply_buffer);
        s.acks.resize(sizeof(wire::status_msg) * o_.slots);
        s.notices.resize(sizeof(wire::notice_msg) * o_.slots);
        s.verify.resize(chunk);
        s.staging_mr = ep_.register_memory(s.staging, access::remote_write);
        s.ctrl_mr = ep_.register_memory(s.ctrl, access::local_write);
        s.reply_mr = ep_.register_memory(s.reply, access::none);
        s.acks_mr = ep_.register_memory(s.acks, access::none);
        s.notices_mr = ep_.register_memory(s.notices, access::local_write);
        note("sender connected");
        auto t0 = std::chrono::steady_clock::now();

        vmrdma::async_scope scope;
        scope.spawn(guard(s, control(s)));
        for (std::uint32_t slot = 0; slot < o_.slots; ++slot) scope.spawn(guard(s, slot_worker(s, slot)));
        scope.spawn(watchdog(s));
        co_await scope.join();

        double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        if (s.completed) {
            std::fprintf(stderr,
                         "datamover serve: transfer complete: %llu files verified, %llu bytes written "
                         "in %llu chunks, %.2f s\n",
                         static_cast<unsigned long long>(s.files_done),
                         static_cast<unsigned long long>(s.bytes_written),
                         static_cast<unsigned long long>(s.chunks_written), secs);
            co_return exit_code::ok;
        }
        if (s.failure) {
            note(s.failure->text + "; stopped this transfer");
            co_return s.failure->status == 0 ? exit_code::peer_lost : exit_code::receiver_failed;
        }
        if (s.idle)
            note("the sender went silent for " + std::to_string(o_.idle_timeout_s) +
                 " s; dropped its session (progress is kept: rerun the sender to resume)");
        co_return exit_code::peer_lost;
    }

    // Runs a session task; turns its failure into the session's failure.
    task<void> guard(session_state& s, task<void> t) {
        try {
            co_await std::move(t);
        } catch (const vmrdma::error& e) {
            if (e.code() == vmrdma::errc::cancelled && s.stop.stop_requested()) co_return;
            if (!s.failure && !s.stop.stop_requested())
                s.fail(0, std::string("lost the sender (") + e.what() + ")");
            s.stop.request_stop();
        } catch (const std::exception& e) {
            s.fail(EIO, e.what());
        }
    }

    task<void> watchdog(session_state& s) {
        while (!s.stop.stop_requested()) {
            try {
                co_await loop_.sleep_for(500ms, s.stop.get_token());
            } catch (const vmrdma::error&) {
                co_return;
            }
            if (std::chrono::steady_clock::now() - s.last_activity > std::chrono::seconds(o_.idle_timeout_s)) {
                s.idle = true;
                s.stop.request_stop();
            }
        }
    }

    task<void> send_status(session_state& s, const vmrdma::region& mr, std::size_t off, std::uint64_t tag,
                           int status, const std::string& text, std::uint64_t value = 0) {
        wire::status_msg m{};
        m.status = status;
        m.value = value;
        m.text_len = static_cast<std::uint32_t>(std::min<std::size_t>(text.size(), wire::max_text));
        std::memcpy(m.text, text.data(), m.text_len);
        std::memcpy(mr.memory().data() + off, &m, sizeof m);
        co_await s.conn.send(mr, off, sizeof m, tag, s.stop.get_token());
    }

    task<void> control(session_state& s) {
        {
            wire::hello_msg h{};
            h.magic = wire::magic;
            h.chunk_size = o_.chunk_size;
            h.slots = o_.slots;
            auto d = s.staging_mr.remote().to_bytes();
            std::memcpy(h.staging, d.data(), d.size());
            std::memcpy(s.reply.data(), &h, sizeof h);
            co_await s.conn.send(s.reply_mr, 0, sizeof h, wire::tag(wire::hello), s.stop.get_token());
        }
        for (;;) {
            auto r = co_await ep_.recv(s.ctrl_mr, 0, wire::ctrl_buffer, wire::tag(wire::ctrl), ~0ull,
                                       s.stop.get_token());
            s.touch();
            wire::ctrl_msg m{};
            if (r.length < sizeof m) throw std::runtime_error("short control message from the sender");
            std::memcpy(&m, s.ctrl.data(), sizeof m);
            if (sizeof m + std::uint64_t{m.path_len} + m.link_len > r.length || m.path_len > wire::max_path ||
                m.link_len > wire::max_path)
                throw std::runtime_error("malformed control message from the sender");
            const char* text = reinterpret_cast<const char*>(s.ctrl.data() + sizeof m);
            std::string path(text, m.path_len), link(text + m.path_len, m.link_len);
            if (m.type == wire::ctrl_entry) {
                co_await entry(s, m, path, link);
            } else if (m.type == wire::ctrl_done) {
                co_await done(s, m.file_id, m.hash);
            } else if (m.type == wire::ctrl_end) {
                std::string err = apply_dirs(s);
                co_await send_status(s, s.reply_mr, 0, wire::tag(wire::end_reply), err.empty() ? 0 : EIO, err);
                s.completed = true;
                s.stop.request_stop();
                co_return;
            } else {
                throw std::runtime_error("unknown control message from the sender");
            }
        }
    }

    std::string apply_dirs(session_state& s) {
        std::string err;
        // Deepest first, so setting a parent's mtime is the last change inside it.
        std::sort(s.dirs.begin(), s.dirs.end(), [](const dir_attrs& a, const dir_attrs& b) { return a.rel > b.rel; });
        for (const auto& d : s.dirs) {
            std::string base;
            int dfd = open_parent(root_, d.rel, base);
            if (dfd < 0) continue;
            timespec ts[2] = {{0, UTIME_OMIT}, {d.mtime_ns / 1'000'000'000, d.mtime_ns % 1'000'000'000}};
            if (fchmodat(dfd, base.c_str(), d.mode & 07777, 0) != 0 ||
                utimensat(dfd, base.c_str(), ts, AT_SYMLINK_NOFOLLOW) != 0)
                err = "cannot set attributes of '" + d.rel + "': " + std::strerror(errno);
            ::close(dfd);
        }
        return err;
    }

    // Answers a manifest entry: status, then the bitmap of chunks present.
    task<void> entry(session_state& s, const wire::ctrl_msg& m, const std::string& rel, const std::string& link) {
        open_file f;
        int status = 0;
        std::string text;
        auto fail_with = [&](int err, const std::string& what) {
            status = err;
            text = what + " '" + rel + "': " + std::strerror(err);
        };
        if (!safe_relative(rel)) {
            status = EINVAL;
            text = "refused unsafe path '" + rel + "'";
        } else if ((f.dirfd = open_parent(root_, rel, f.base)) < 0) {
            fail_with(-f.dirfd, "cannot open the directory of");
            f.dirfd = -1;
        } else if (m.kind == wire::entry_dir) {
            struct stat st {};
            if (mkdirat(f.dirfd, f.base.c_str(), 0700) != 0 &&
                !(errno == EEXIST && fstatat(f.dirfd, f.base.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 &&
                  S_ISDIR(st.st_mode)))
                fail_with(errno == EEXIST ? EEXIST : errno, "cannot create directory");
            else
                s.dirs.push_back({rel, m.mode, m.mtime_ns});
        } else if (m.kind == wire::entry_symlink) {
            unlinkat(f.dirfd, f.base.c_str(), 0);
            if (symlinkat(link.c_str(), f.dirfd, f.base.c_str()) != 0) {
                fail_with(errno, "cannot create symlink");
            } else {
                timespec ts[2] = {{0, UTIME_OMIT}, {m.mtime_ns / 1'000'000'000, m.mtime_ns % 1'000'000'000}};
                utimensat(f.dirfd, f.base.c_str(), ts, AT_SYMLINK_NOFOLLOW);
            }
        } else if (m.kind == wire::entry_file) {
            status = open_for_writing(f, m, rel, text);
        } else {
            status = EINVAL;
            text = "unknown entry kind for '" + rel + "'";
        }

        // Send the reply (in pieces for files of more than 256 Ki chunks).
        const std::uint64_t bits_per_piece = std::uint64_t{wire::bitmap_piece_bytes} * 8;
        std::uint64_t first = 0;
        do {
            wire::entry_reply_msg r{};
            r.status = status;
            r.first_chunk = first;
            r.count = status == 0 ? std::min(bits_per_piece, f.nchunks - first) : 0;
            r.more = first + r.count < f.nchunks && status == 0;
            r.text_len = static_cast<std::uint32_t>(std::min<std::size_t>(text.size(), wire::max_text));
            std::byte* out = s.reply.data();
            std::memcpy(out, &r, sizeof r);
            std::memcpy(out + sizeof r, text.data(), r.text_len);
            std::size_t nbytes = (r.count + 7) / 8;
            if (nbytes) std::memcpy(out + sizeof r + r.text_len, f.bits.data() + first / 8, nbytes);
            co_await s.conn.send(s.reply_mr, 0, static_cast<std::uint32_t>(sizeof r + r.text_len + nbytes),
                                 wire::tag(wire::entry_reply, m.file_id), s.stop.get_token());
            first += r.count;
        } while (status == 0 && first < f.nchunks);

        if (status != 0) {
            f.close_all();
            s.fail(status, text);
        } else if (m.kind == wire::entry_file) {
            s.files[m.file_id] = std::move(f);
        } else {
            f.close_all();
        }
    }

    int open_for_writing(open_file& f, const wire::ctrl_msg& m, const std::string& rel, std::string& text) {
        f.rel = rel;
        f.size = m.size;
        f.mtime_ns = m.mtime_ns;
        f.mode = m.mode;
        f.nchunks = (m.size + o_.chunk_size - 1) / o_.chunk_size;
        f.bits.assign((f.nchunks + 7) / 8, 0);
        auto err = [&](int e, const std::string& what) {
            text = what + " '" + rel + "': " + std::strerror(e);
            return e;
        };
        // Already complete from an earlier run? (Verified again at the end.)
        struct stat st {};
        if (fstatat(f.dirfd, f.base.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode) &&
            static_cast<std::uint64_t>(st.st_size) == m.size &&
            st.st_mtim.tv_sec * 1'000'000'000ll + st.st_mtim.tv_nsec == m.mtime_ns) {
            f.fd = openat(f.dirfd, f.base.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW);
            if (f.fd >= 0) {
                f.in_place = true;
                std::fill(f.bits.begin(), f.bits.end(), 0xff);
                return 0;
            }
        }
        std::string part = "." + f.base + ".dmpart", state = "." + f.base + ".dmstate";
        f.state_fd = openat(f.dirfd, state.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (f.state_fd < 0) return err(errno, "cannot create");
        state_header h{};
        bool resume = pread(f.state_fd, &h, sizeof h, 0) == sizeof h && std::memcmp(h.magic, state_magic, 8) == 0 &&
                      h.size == m.size && h.mtime_ns == m.mtime_ns && h.chunk_size == o_.chunk_size &&
                      h.nchunks == f.nchunks &&
                      pread(f.state_fd, f.bits.data(), f.bits.size(), sizeof h) == static_cast<ssize_t>(f.bits.size());
        f.fd = openat(f.dirfd, part.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | (resume ? 0 : O_TRUNC), 0600);
        if (f.fd < 0) return err(errno, "cannot create");
        if (!resume) {
            std::fill(f.bits.begin(), f.bits.end(), 0);
            std::memcpy(h.magic, state_magic, 8);
            h.size = m.size;
            h.mtime_ns = m.mtime_ns;
            h.chunk_size = o_.chunk_size;
            h.nchunks = f.nchunks;
            h.mode = m.mode;
            if (ftruncate(f.state_fd, 0) != 0 || pwrite(f.state_fd, &h, sizeof h, 0) != sizeof h ||
                (!f.bits.empty() &&
                 pwrite(f.state_fd, f.bits.data(), f.bits.size(), sizeof h) != static_cast<ssize_t>(f.bits.size())))
                return err(errno ? errno : EIO, "cannot write the resume state of");
        }
        if (m.size > 0) {
            int rc = posix_fallocate(f.fd, 0, static_cast<off_t>(m.size));
            if (rc == ENOSPC || rc == EDQUOT) {
                f.close_all();
                int d = open_parent(root_, rel, f.base);
                if (d >= 0) {
                    unlinkat(d, part.c_str(), 0);
                    unlinkat(d, state.c_str(), 0);
                    ::close(d);
                }
                return err(rc, "no room for " + std::to_string(m.size) + " bytes of");
            }
        }
        return 0;
    }

    task<void> slot_worker(session_state& s, std::uint32_t slot) {
        const std::size_t chunk = o_.chunk_size;
        std::byte* staged = s.staging.data() + slot * chunk;
        const std::size_t ack_off = slot * sizeof(wire::status_msg);
        for (;;) {
            const std::size_t noff = slot * sizeof(wire::notice_msg);
            auto r = co_await ep_.recv(s.notices_mr, noff, sizeof(wire::notice_msg), wire::tag(wire::notice, slot),
                                       ~0ull, s.stop.get_token());
            s.touch();
            wire::notice_msg n{};
            if (r.length != sizeof n) throw std::runtime_error("malformed chunk notice from the sender");
            std::memcpy(&n, s.notices.data() + noff, sizeof n);
            int status = 0;
            std::string text;
            auto it = s.files.find(n.file_id);
            std::uint64_t off = n.chunk * chunk;
            if (it == s.files.end() || n.chunk >= it->second.nchunks || n.length > chunk ||
                off + n.length != std::min<std::uint64_t>(it->second.size, off + chunk)) {
                status = EPROTO;
                text = "a chunk notice for an unknown file or range";
            } else if (chunk_hash({staged, n.length}, n.chunk) != n.hash) {
                status = EBADMSG;
                text = "chunk " + std::to_string(n.chunk) + " of '" + it->second.rel + "' arrived corrupted";
            } else {
                open_file& f = it->second;
                std::size_t done = 0;
                while (done < n.length) {
                    int rc = co_await loop_.submit_raw([&](io_uring_sqe* sqe) {
                        io_uring_prep_write(sqe, f.fd, staged + done, static_cast<unsigned>(n.length - done), off + done);
                    });
                    if (rc == -EINTR || rc == -EAGAIN) continue;
                    if (rc <= 0) {
                        status = rc == 0 ? EIO : -rc;
                        text = std::string(status == ENOSPC ? "disk full" : "write error") + " writing '" + f.rel +
                               "' at offset " + std::to_string(off + done) + ": " + std::strerror(status);
                        break;
                    }
                    done += static_cast<std::size_t>(rc);
                }
                if (status == 0) {
                    f.bits[n.chunk / 8] |= static_cast<std::uint8_t>(1u << (n.chunk % 8));
                    if (f.state_fd >= 0 &&
                        pwrite(f.state_fd, &f.bits[n.chunk / 8], 1, static_cast<off_t>(sizeof(state_header) + n.chunk / 8)) != 1) {
                        status = errno ? errno : EIO;
                        text = "cannot record progress of '" + f.rel + "': " + std::strerror(status);
                    }
                    s.bytes_written += n.length;
                    ++s.chunks_written;
                }
            }
            co_await send_status(s, s.acks_mr, ack_off, wire::tag(wire::ack, slot), status, text);
            if (status != 0 && status != EBADMSG) s.fail(status, text);
        }
    }

    // Every chunk of a file is in: read it back from disk, check the sender's
    // whole-file hash, and put it in place with its mode and mtime.
    task<void> done(session_state& s, std::uint32_t id, std::uint64_t expected) {
        auto it = s.files.find(id);
        if (it == s.files.end()) throw std::runtime_error("'done' for an unknown file");
        open_file& f = it->second;
        int status = 0;
        std::string text;
        std::vector<std::uint64_t> hashes;
        hashes.reserve(f.nchunks);
        for (std::uint64_t c = 0; c < f.nchunks && status == 0; ++c) {
            if (!f.has(c)) {
                status = EPROTO;
                text = "'" + f.rel + "' is missing chunk " + std::to_string(c);
                break;
            }
            std::uint64_t off = c * o_.chunk_size;
            std::size_t len = static_cast<std::size_t>(std::min<std::uint64_t>(o_.chunk_size, f.size - off));
            std::size_t got = 0;
            while (got < len) {
                int rc = co_await loop_.submit_raw([&](io_uring_sqe* sqe) {
                    io_uring_prep_read(sqe, f.fd, s.verify.data() + got, static_cast<unsigned>(len - got), off + got);
                });
                if (rc == -EINTR || rc == -EAGAIN) continue;
                if (rc <= 0) {
                    status = rc == 0 ? EIO : -rc;
                    text = "cannot read back '" + f.rel + "': " + std::strerror(status);
                    break;
                }
                got += static_cast<std::size_t>(rc);
            }
            if (status == 0) hashes.push_back(chunk_hash({s.verify.data(), len}, c));
        }
        std::uint64_t actual = status == 0 ? file_hash(hashes, f.size) : 0;
        std::string part = "." + f.base + ".dmpart", state = "." + f.base + ".dmstate";
        if (status == 0 && actual != expected) {
            status = EBADMSG;
            char buf[160];
            std::snprintf(buf, sizeof buf, "checksum mismatch: sender %016llx, receiver %016llx",
                          static_cast<unsigned long long>(expected), static_cast<unsigned long long>(actual));
            text = "'" + f.rel + "': " + buf + " (removed; rerun to send it again)";
            unlinkat(f.dirfd, f.in_place ? f.base.c_str() : part.c_str(), 0);
            unlinkat(f.dirfd, state.c_str(), 0);
        }
        if (status == 0) {
            timespec ts[2] = {{0, UTIME_OMIT}, {f.mtime_ns / 1'000'000'000, f.mtime_ns % 1'000'000'000}};
            if (fchmod(f.fd, f.mode & 07777) != 0 || futimens(f.fd, ts) != 0 || (o_.fsync && fsync(f.fd) != 0) ||
                (!f.in_place && renameat(f.dirfd, part.c_str(), f.dirfd, f.base.c_str()) != 0)) {
                status = errno;
                text = "cannot finish '" + f.rel + "': " + std::strerror(status);
            } else {
                if (!f.in_place) unlinkat(f.dirfd, state.c_str(), 0);
                ++s.files_done;
            }
        }
        f.close_all();
        s.files.erase(it);
        if (status != 0) note(text);
        co_await send_status(s, s.reply_mr, 0, wire::tag(wire::done_reply, id), status, text, actual);
        if (status != 0 && status != EBADMSG) s.fail(status, text);
    }

    const serve_options& o_;
    vmrdma::event_loop& loop_;
    vmrdma::device& dev_;
    int root_;
    vmrdma::endpoint ep_;
    std::stop_source superseded_;
};

}  // namespace

int serve(const serve_options& o) {
    if (o.chunk_size < 4096 || o.chunk_size > (64u << 20) || o.slots == 0 || o.slots > 128) {
        std::fprintf(stderr, "datamover serve: --chunk must be 4 KiB..64 MiB and --slots 1..128\n");
        return exit_code::usage_error;
    }
    // The destination: create it if missing, then prove we can write there.
    if (mkdir(o.dest.c_str(), 0755) != 0 && errno != EEXIST) {
        std::fprintf(stderr, "datamover serve: cannot create destination %s: %s\n", o.dest.c_str(), std::strerror(errno));
        return exit_code::receiver_failed;
    }
    int root = open(o.dest.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (root < 0) {
        std::fprintf(stderr, "datamover serve: cannot open destination %s: %s\n", o.dest.c_str(), std::strerror(errno));
        return exit_code::receiver_failed;
    }
    std::string probe = ".datamover-probe-" + std::to_string(getpid());
    int pfd = openat(root, probe.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (pfd < 0) {
        std::fprintf(stderr, "datamover serve: destination %s is not writable: %s\n", o.dest.c_str(), std::strerror(errno));
        close(root);
        return exit_code::receiver_failed;
    }
    close(pfd);
    unlinkat(root, probe.c_str(), 0);

    int rc = exit_code::some_failed;
    try {
        vmrdma::event_loop loop;
        auto dev = vmrdma::device::open(loop, o.device);
        receiver r(o, loop, *dev, root);
        std::fprintf(stderr, "datamover serve: listening on %s (MAC %s, endpoint %u), writing to %s\n",
                     o.device.c_str(), dev->mac().to_string().c_str(), o.endpoint, o.dest.c_str());
        if (o.ready_fd >= 0) {
            [[maybe_unused]] auto n = write(o.ready_fd, "r", 1);
        }
        rc = loop.run(r.run());
    } catch (const std::exception& e) {
        std::fprintf(stderr, "datamover serve: %s\n", e.what());
    }
    close(root);
    return rc;
}

}  // namespace datamover
