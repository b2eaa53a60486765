// datamover send: the sending side.
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <deque>
#include <list>
#include <map>
#include <memory>
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
using clock_type = std::chrono::steady_clock;

struct entry {
    std::uint32_t kind;
    std::string abs, rel, link;
    std::uint64_t size = 0;
    std::uint32_t mode = 0;
    std::int64_t mtime_ns = 0;
};

std::int64_t mtime_of(const struct stat& st) { return st.st_mtim.tv_sec * 1'000'000'000ll + st.st_mtim.tv_nsec; }

// Collects SOURCE (a file, symlink or directory tree) as `rel` and below.
void walk(const std::string& abs, const std::string& rel, std::vector<entry>& out, unsigned& failures) {
    struct stat st {};
    if (lstat(abs.c_str(), &st) != 0) {
        std::fprintf(stderr, "datamover send: cannot read %s: %s\n", abs.c_str(), std::strerror(errno));
        ++failures;
        return;
    }
    entry e{0, abs, rel, {}, 0, static_cast<std::uint32_t>(st.st_mode & 07777), mtime_of(st)};
    if (S_ISREG(st.st_mode)) {
        e.kind = wire::entry_file;
        e.size = static_cast<std::uint64_t>(st.st_size);
        out.push_back(std::move(e));
    } else if (S_ISLNK(st.st_mode)) {
        std::vector<char> buf(wire::max_path + 1);
        ssize_t n = readlink(abs.c_str(), buf.data(), buf.size());
        if (n < 0 || n > static_cast<ssize_t>(wire::max_path)) {
            std::fprintf(stderr, "datamover send: cannot read symlink %s\n", abs.c_str());
            ++failures;
            return;
        }
        e.kind = wire::entry_symlink;
        e.link.assign(buf.data(), static_cast<std::size_t>(n));
        out.push_back(std::move(e));
    } else if (S_ISDIR(st.st_mode)) {
        DIR* d = opendir(abs.c_str());
        if (!d) {
            std::fprintf(stderr, "datamover send: cannot read directory %s: %s\n", abs.c_str(), std::strerror(errno));
            ++failures;
            return;
        }
        e.kind = wire::entry_dir;
        out.push_back(std::move(e));
        std::vector<std::string> names;
        while (dirent* de = readdir(d)) {
            std::string n = de->d_name;
            if (n != "." && n != "..") names.push_back(n);
        }
        closedir(d);
        std::sort(names.begin(), names.end());
        for (const auto& n : names) walk(abs + "/" + n, rel + "/" + n, out, failures);
    } else {
        std::fprintf(stderr, "datamover send: skipping %s: not a regular file, directory or symlink\n", abs.c_str());
    }
}

// A failure reported by the receiver (it could not store something).
struct remote_failure : std::runtime_error {
    int status;
    remote_failure(int s, const std::string& text) : std::runtime_error(text), status(s) {}
};
// A local failure reading a source file.
struct source_failure : std::runtime_error {
    using std::runtime_error::runtime_error;
};

struct file_job {
    const entry* e = nullptr;
    std::uint32_t id = 0;
    int fd = -1;
    std::uint64_t size = 0, nchunks = 0, remaining = 0;
    std::vector<std::uint64_t> hashes;
};

struct chunk_job {
    file_job* f;
    std::uint64_t chunk;
    bool skip;
};

class sender {
public:
    sender(const send_options& o, vmrdma::event_loop& loop, vmrdma::device& dev, std::vector<entry> entries)
        : o_(o), loop_(loop), dev_(dev), entries_(std::move(entries)), work_(loop), file_closed_(loop), finisher_free_(loop) {
        for (const auto& e : entries_) total_ += e.size;
    }

    // run(), stopped cleanly by SIGINT or SIGTERM (read from sigfd, a
    // signalfd for both): a message, exit_code::interrupted, and what the
    // receiver has is kept for a rerun to resume from.
    task<int> run_until_signal(int sigfd) {
        std::stop_source watch_stop;
        vmrdma::async_scope watch;
        watch.spawn(watch_signal(sigfd, watch_stop.get_token()));
        int rc = co_await run();
        watch_stop.request_stop();
        co_await watch.join();
        co_return interrupted_ ? exit_code::interrupted : rc;
    }

    task<int> run() {
        // HELLO: the receiver's staging ring. Our local endpoint id is
        // random and a connection that brings no HELLO is retried from
        // another id: a restarted sender would otherwise reuse the dead one's
        // connection id, and the receiver (until its idle timeout drops the
        // dead session) would take our CONNECT for a retransmission of it.
        std::vector<std::byte> hello(sizeof(wire::hello_msg));
        auto peer = vmrdma::mac_address::parse(o_.peer);
        bool greeted = false;
        std::uint16_t used = 0;
        for (int attempt = 0; attempt < 4 && !greeted; ++attempt) {
            std::uint16_t id;
            do id = static_cast<std::uint16_t>(1 + std::rand() % (local_endpoints - 1)); while (id == used);
            used = id;
            conn_ = {};
            ep_ = dev_.open_endpoint(id);
            auto hello_mr = ep_.register_memory(hello, access::local_write);
            try {
                conn_ = co_await ep_.connect(
                    peer, o_.endpoint,
                    std::chrono::duration_cast<std::chrono::nanoseconds>(
                        std::chrono::duration<double>(o_.connect_timeout_s)),
                    stop_.get_token());
            } catch (const vmrdma::error& e) {
                if (interrupted_) co_return exit_code::interrupted;
                std::fprintf(stderr, "datamover send: cannot reach a datamover receiver at %s endpoint %u: %s\n",
                             o_.peer.c_str(), o_.endpoint, e.what());
                co_return exit_code::peer_lost;
            }
            try {
                co_await vmrdma::with_timeout(loop_, 3s, [&](std::stop_token st) -> task<vmrdma::recv_result> {
                    co_return co_await ep_.recv(hello_mr, 0, sizeof(wire::hello_msg), wire::tag(wire::hello), ~0ull, st);
                });
                greeted = true;
            } catch (const vmrdma::error& e) {
                std::fprintf(stderr, "datamover send: the receiver at %s did not greet us (%s)%s\n", o_.peer.c_str(),
                             e.what(), attempt < 3 ? "; reconnecting" : "");
            }
        }
        if (!greeted) co_return exit_code::peer_lost;
        wire::hello_msg h{};
        std::memcpy(&h, hello.data(), sizeof h);
        if (h.magic != wire::magic) {
            std::fprintf(stderr, "datamover send: the peer does not speak the datamover protocol\n");
            co_return exit_code::some_failed;
        }
        chunk_ = h.chunk_size;
        slots_ = h.slots;
        remote_ = vmrdma::remote_region::from_bytes(std::span<const std::byte>(
            reinterpret_cast<const std::byte*>(h.staging), sizeof h.staging));

        local_.resize(std::size_t{chunk_} * slots_);
        notices_.resize(sizeof(wire::notice_msg) * slots_);
        acks_.resize(sizeof(wire::status_msg) * slots_);
        ctrl_.resize(wire::ctrl_buffer);
        reply_.resize(wire::entry_reply_buffer);
        fin_ctrl_.resize(sizeof(wire::ctrl_msg) * finishers);
        fin_reply_.resize(sizeof(wire::status_msg) * finishers);
        local_mr_ = ep_.register_memory(local_, access::local_write);
        notices_mr_ = ep_.register_memory(notices_, access::none);
        acks_mr_ = ep_.register_memory(acks_, access::local_write);
        ctrl_mr_ = ep_.register_memory(ctrl_, access::none);
        reply_mr_ = ep_.register_memory(reply_, access::local_write);
        fin_ctrl_mr_ = ep_.register_memory(fin_ctrl_, access::none);
        fin_reply_mr_ = ep_.register_memory(fin_reply_, access::local_write);
        for (unsigned i = 0; i < finishers; ++i) free_finishers_.push_back(i);

        t0_ = clock_type::now();
        vmrdma::async_scope scope;
        scope_ = &scope;
        for (std::uint32_t s = 0; s < slots_; ++s) scope.spawn(guard(worker(s)));
        scope.spawn(guard(manifest()));
        std::stop_source ticker_stop;
        vmrdma::async_scope ticker;
        ticker.spawn(progress(ticker_stop.get_token()));
        co_await scope.join();
        ticker_stop.request_stop();
        co_await ticker.join();
        co_return report();
    }

private:
    static constexpr unsigned finishers = 8;
  public:
    static constexpr std::uint32_t local_endpoints = 32;
  private:
    static constexpr std::size_t max_open_files = 64;

    task<void> guard(task<void> t) {
        try {
            co_await std::move(t);
        } catch (...) {
            fail(std::current_exception());
        }
    }

    void fail(std::exception_ptr e) {
        if (!error_) {
            bool incidental = false;
            try {
                std::rethrow_exception(e);
            } catch (const vmrdma::error& x) {
                incidental = x.code() == vmrdma::errc::cancelled && stop_.stop_requested();
            } catch (...) {
            }
            if (!incidental) error_ = e;
        }
        stop_.request_stop();
        work_.notify_all();
        file_closed_.notify_all();
        finisher_free_.notify_all();
    }
    bool stopping() const { return stop_.stop_requested(); }

    task<void> watch_signal(int fd, std::stop_token stop) {
        signalfd_siginfo info{};
        try {
            co_await loop_.submit([&](io_uring_sqe* sqe) { io_uring_prep_read(sqe, fd, &info, sizeof info, 0); },
                                  stop);
        } catch (const vmrdma::error&) {
            co_return;  // the transfer ended first
        }
        interrupted_ = true;
        std::fprintf(stderr,
                     "datamover send: %s: stopping. What arrived at %s is kept: rerun the same command to send "
                     "only the rest\n",
                     strsignal(static_cast<int>(info.ssi_signo)), o_.peer.c_str());
        stop_.request_stop();
        work_.notify_all();
        file_closed_.notify_all();
        finisher_free_.notify_all();
    }

    // Sends the manifest entry by entry; queues the chunks of each file.
    task<void> manifest() {
        std::uint32_t next_id = 0;
        for (const auto& e : entries_) {
            while (open_files_ >= max_open_files && !stopping()) co_await file_closed_.wait();
            if (stopping()) co_return;
            auto job = std::make_unique<file_job>();
            job->e = &e;
            job->id = next_id++;
            job->size = e.size;
            if (e.kind == wire::entry_file) {
                job->fd = open(e.abs.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
                struct stat st {};
                if (job->fd < 0 || fstat(job->fd, &st) != 0) {
                    std::fprintf(stderr, "datamover send: cannot read %s: %s (skipped)\n", e.abs.c_str(),
                                 std::strerror(errno));
                    if (job->fd >= 0) close(job->fd);
                    total_ -= e.size;
                    ++source_failures_;
                    continue;
                }
                if (static_cast<std::uint64_t>(st.st_size) != e.size) {
                    total_ = total_ - e.size + static_cast<std::uint64_t>(st.st_size);
                    job->size = static_cast<std::uint64_t>(st.st_size);
                }
                job->nchunks = (job->size + chunk_ - 1) / chunk_;
                job->remaining = job->nchunks;
                job->hashes.assign(job->nchunks, 0);
            }
            std::vector<std::uint8_t> have((job->nchunks + 7) / 8, 0);
            co_await exchange_entry(*job, mtime_of_job(*job, e), have);
            if (e.kind != wire::entry_file) continue;
            file_job* f = job.get();
            jobs_.push_back(std::move(job));
            ++open_files_;
            if (f->nchunks == 0) {
                scope_->spawn(guard(finish(f)));
                continue;
            }
            for (std::uint64_t c = 0; c < f->nchunks; ++c) queue_.push_back({f, c, (have[c / 8] >> (c % 8)) & 1u ? true : false});
            work_.notify_all();
        }
        manifest_done_ = true;
        work_.notify_all();
        while (open_files_ > 0 && !stopping()) co_await file_closed_.wait();
        if (stopping()) co_return;
        // END: the receiver applies directory attributes.
        wire::ctrl_msg m{};
        m.type = wire::ctrl_end;
        std::memcpy(ctrl_.data(), &m, sizeof m);
        auto [r, sent] = co_await vmrdma::when_all(
            ep_.recv(reply_mr_, 0, sizeof(wire::status_msg), wire::tag(wire::end_reply), ~0ull, stop_.get_token()),
            conn_.send(ctrl_mr_, 0, sizeof m, wire::tag(wire::ctrl), stop_.get_token()));
        (void)sent;
        (void)r;
        wire::status_msg s{};
        std::memcpy(&s, reply_.data(), sizeof s);
        if (s.status != 0) throw remote_failure(s.status, std::string(s.text, std::min(s.text_len, wire::max_text)));
        finished_ = true;
    }

    static std::int64_t mtime_of_job(const file_job&, const entry& e) { return e.mtime_ns; }

    task<void> exchange_entry(file_job& f, std::int64_t mtime_ns, std::vector<std::uint8_t>& have) {
        const entry& e = *f.e;
        wire::ctrl_msg m{};
        m.type = wire::ctrl_entry;
        m.file_id = f.id;
        m.kind = e.kind;
        m.mode = e.mode;
        m.size = f.size;
        m.mtime_ns = mtime_ns;
        m.path_len = static_cast<std::uint32_t>(e.rel.size());
        m.link_len = static_cast<std::uint32_t>(e.link.size());
        if (e.rel.size() > wire::max_path) throw source_failure("path too long: " + e.abs);
        std::memcpy(ctrl_.data(), &m, sizeof m);
        std::memcpy(ctrl_.data() + sizeof m, e.rel.data(), e.rel.size());
        std::memcpy(ctrl_.data() + sizeof m + e.rel.size(), e.link.data(), e.link.size());
        const auto reply_tag = wire::tag(wire::entry_reply, f.id);
        auto [first, sent] = co_await vmrdma::when_all(
            ep_.recv(reply_mr_, 0, wire::entry_reply_buffer, reply_tag, ~0ull, stop_.get_token()),
            conn_.send(ctrl_mr_, 0, static_cast<std::uint32_t>(sizeof m + e.rel.size() + e.link.size()),
                       wire::tag(wire::ctrl), stop_.get_token()));
        (void)sent;
        (void)first;
        for (;;) {
            wire::entry_reply_msg r{};
            std::memcpy(&r, reply_.data(), sizeof r);
            if (r.status != 0)
                throw remote_failure(r.status, std::string(reinterpret_cast<const char*>(reply_.data() + sizeof r),
                                                           std::min(r.text_len, wire::max_text)));
            if (r.first_chunk + r.count > f.nchunks || r.first_chunk % 8 != 0)
                throw std::runtime_error("malformed reply from the receiver");
            if (r.count > 0)
                std::memcpy(have.data() + r.first_chunk / 8, reply_.data() + sizeof r + r.text_len, (r.count + 7) / 8);
            if (!r.more) break;
            co_await ep_.recv(reply_mr_, 0, wire::entry_reply_buffer, reply_tag, ~0ull, stop_.get_token());
        }
    }

    task<void> worker(std::uint32_t slot) {
        std::byte* buf = local_.data() + std::size_t{slot} * chunk_;
        const std::size_t noff = slot * sizeof(wire::notice_msg), aoff = slot * sizeof(wire::status_msg);
        for (;;) {
            while (queue_.empty() && !manifest_done_ && !stopping()) co_await work_.wait();
            if (stopping() || queue_.empty()) co_return;
            chunk_job j = queue_.front();
            queue_.pop_front();
            file_job& f = *j.f;
            std::uint64_t off = j.chunk * chunk_;
            auto len = static_cast<std::uint32_t>(std::min<std::uint64_t>(chunk_, f.size - off));
            std::uint32_t got = 0;
            while (got < len) {
                int rc = co_await loop_.submit_raw([&](io_uring_sqe* s) {
                    io_uring_prep_read(s, f.fd, buf + got, len - got, off + got);
                });
                if (rc == -EINTR || rc == -EAGAIN) continue;
                if (rc < 0) throw source_failure("cannot read " + f.e->abs + ": " + std::strerror(-rc));
                if (rc == 0) throw source_failure(f.e->abs + " shrank while it was being sent");
                got += static_cast<std::uint32_t>(rc);
            }
            std::uint64_t h = chunk_hash({buf, len}, j.chunk);
            f.hashes[j.chunk] = h;
            if (j.skip) {
                ++chunks_skipped_;
                bytes_skipped_ += len;
            } else {
                if (o_.limit_rate > 0) {
                    double due = static_cast<double>(bytes_sent_ + in_flight_) / o_.limit_rate;
                    double now = std::chrono::duration<double>(clock_type::now() - t0_).count();
                    in_flight_ += len;
                    if (due > now)
                        co_await loop_.sleep_for(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                                     std::chrono::duration<double>(due - now)),
                                                 stop_.get_token());
                    in_flight_ -= len;
                }
                co_await conn_.write(local_mr_, std::size_t{slot} * chunk_, remote_, std::size_t{slot} * chunk_, len,
                                     stop_.get_token());
                wire::notice_msg n{f.id, len, j.chunk, h};
                std::memcpy(notices_.data() + noff, &n, sizeof n);
                co_await vmrdma::when_all(
                    ep_.recv(acks_mr_, aoff, sizeof(wire::status_msg), wire::tag(wire::ack, slot), ~0ull,
                             stop_.get_token()),
                    conn_.send(notices_mr_, noff, sizeof n, wire::tag(wire::notice, slot), stop_.get_token()));
                wire::status_msg a{};
                std::memcpy(&a, acks_.data() + aoff, sizeof a);
                if (a.status != 0) throw remote_failure(a.status, std::string(a.text, std::min(a.text_len, wire::max_text)));
                ++chunks_sent_;
                bytes_sent_ += len;
            }
            if (--f.remaining == 0) scope_->spawn(guard(finish(&f)));
        }
    }

    // All chunks of a file are at the receiver: ask it to verify the whole file.
    task<void> finish(file_job* f) {
        while (free_finishers_.empty() && !stopping()) co_await finisher_free_.wait();
        if (stopping()) co_return;
        unsigned k = free_finishers_.back();
        free_finishers_.pop_back();
        struct release {
            sender& s;
            unsigned k;
            ~release() {
                s.free_finishers_.push_back(k);
                s.finisher_free_.notify_all();
            }
        } rel{*this, k};
        wire::ctrl_msg m{};
        m.type = wire::ctrl_done;
        m.file_id = f->id;
        m.hash = file_hash(f->hashes, f->size);
        const std::size_t coff = k * sizeof(wire::ctrl_msg), roff = k * sizeof(wire::status_msg);
        std::memcpy(fin_ctrl_.data() + coff, &m, sizeof m);
        co_await vmrdma::when_all(
            ep_.recv(fin_reply_mr_, roff, sizeof(wire::status_msg), wire::tag(wire::done_reply, f->id), ~0ull,
                     stop_.get_token()),
            conn_.send(fin_ctrl_mr_, coff, sizeof m, wire::tag(wire::ctrl), stop_.get_token()));
        wire::status_msg s{};
        std::memcpy(&s, fin_reply_.data() + roff, sizeof s);
        std::string text(s.text, std::min(s.text_len, wire::max_text));
        if (s.status == EBADMSG) {
            std::fprintf(stderr, "datamover send: %s: VERIFICATION FAILED at the receiver: %s\n", f->e->abs.c_str(),
                         text.c_str());
            ++verify_failures_;
        } else if (s.status != 0) {
            throw remote_failure(s.status, text);
        } else {
            ++files_verified_;
        }
        close(f->fd);
        f->fd = -1;
        --open_files_;
        std::erase_if(jobs_, [f](const std::unique_ptr<file_job>& j) { return j.get() == f; });
        file_closed_.notify_all();
    }

    void print_progress(bool final_line) {
        double secs = std::chrono::duration<double>(clock_type::now() - t0_).count();
        std::uint64_t done = bytes_sent_ + bytes_skipped_;
        double rate = secs > 0 ? static_cast<double>(bytes_sent_) / secs : 0;
        double pct = total_ ? 100.0 * static_cast<double>(done) / static_cast<double>(total_) : 100.0;
        double eta = rate > 0 ? static_cast<double>(total_ - std::min(done, total_)) / rate : -1;
        if (tty_) {
            const int width = 24;
            int fill = static_cast<int>(pct / 100.0 * width);
            std::string bar(static_cast<std::size_t>(std::clamp(fill, 0, width)), '#');
            bar.resize(width, '.');
            std::fprintf(stderr, "\r%10s / %-10s [%s] %5.1f%%  %10s/s  ETA %s   ", human_bytes(done).c_str(),
                         human_bytes(total_).c_str(), bar.c_str(), pct, human_bytes(rate).c_str(),
                         human_duration(eta).c_str());
            if (final_line) std::fputc('\n', stderr);
        } else if (!final_line) {
            std::fprintf(stderr, "progress: %s of %s (%.1f%%), %s/s, ETA %s\n", human_bytes(done).c_str(),
                         human_bytes(total_).c_str(), pct, human_bytes(rate).c_str(), human_duration(eta).c_str());
        }
        std::fflush(stderr);
    }

    task<void> progress(std::stop_token stop) {
        tty_ = isatty(STDERR_FILENO);
        double interval = o_.progress_interval > 0 ? o_.progress_interval : tty_ ? 0.25 : 1.0;
        for (;;) {
            try {
                co_await loop_.sleep_for(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                             std::chrono::duration<double>(interval)),
                                         stop);
            } catch (const vmrdma::error&) {
                break;
            }
            print_progress(false);
        }
        if (tty_) print_progress(true);
    }

    int report() {
        double secs = std::chrono::duration<double>(clock_type::now() - t0_).count();
        double mib_s = secs > 0 ? static_cast<double>(bytes_sent_) / secs / (1 << 20) : 0;
        int rc = interrupted_ ? exit_code::interrupted : exit_code::ok;
        if (error_ && !interrupted_) {
            try {
                std::rethrow_exception(error_);
            } catch (const remote_failure& e) {
                std::fprintf(stderr, "datamover send: the receiver failed: %s\n", e.what());
                rc = exit_code::receiver_failed;
            } catch (const vmrdma::error& e) {
                std::fprintf(stderr,
                             "datamover send: lost the receiver at %s (%s). What arrived is kept: rerun the same "
                             "command to send only the rest\n",
                             o_.peer.c_str(), e.what());
                rc = exit_code::peer_lost;
            } catch (const std::exception& e) {
                std::fprintf(stderr, "datamover send: %s\n", e.what());
                rc = exit_code::some_failed;
            }
        }
        if (rc == exit_code::ok && (source_failures_ || verify_failures_)) rc = exit_code::some_failed;
        std::printf(
            "summary: %s files_verified=%u files_failed=%u bytes_total=%llu bytes_sent=%llu chunks_sent=%llu "
            "bytes_skipped=%llu chunks_skipped=%llu seconds=%.3f mib_per_s=%.1f\n",
            rc == exit_code::ok ? "ok" : "FAILED", files_verified_, verify_failures_ + source_failures_,
            static_cast<unsigned long long>(total_), static_cast<unsigned long long>(bytes_sent_),
            static_cast<unsigned long long>(chunks_sent_), static_cast<unsigned long long>(bytes_skipped_),
            static_cast<unsigned long long>(chunks_skipped_), secs, mib_s);
        if (rc == exit_code::ok)
            std::fprintf(stderr,
                         "datamover send: %u files verified at the receiver; sent %s in %.2f s (%s/s), %llu chunks "
                         "(%s) were already there\n",
                         files_verified_, human_bytes(static_cast<double>(bytes_sent_)).c_str(), secs,
                         human_bytes(static_cast<double>(bytes_sent_) / std::max(secs, 1e-9)).c_str(),
                         static_cast<unsigned long long>(chunks_skipped_),
                         human_bytes(static_cast<double>(bytes_skipped_)).c_str());
        return rc;
    }

    const send_options& o_;
    vmrdma::event_loop& loop_;
    vmrdma::device& dev_;
    std::vector<entry> entries_;
    vmrdma::endpoint ep_;
    vmrdma::connection conn_;
    vmrdma::remote_region remote_;
    std::uint32_t chunk_ = 0, slots_ = 0;
    std::vector<std::byte> local_, notices_, acks_, ctrl_, reply_, fin_ctrl_, fin_reply_;
    vmrdma::region local_mr_, notices_mr_, acks_mr_, ctrl_mr_, reply_mr_, fin_ctrl_mr_, fin_reply_mr_;
    std::vector<unsigned> free_finishers_;
    std::stop_source stop_;
    std::exception_ptr error_;
    bool interrupted_ = false;  // SIGINT or SIGTERM stopped the transfer
    notifier work_, file_closed_, finisher_free_;
    std::deque<chunk_job> queue_;
    std::list<std::unique_ptr<file_job>> jobs_;
    vmrdma::async_scope* scope_ = nullptr;
    std::size_t open_files_ = 0;
    bool manifest_done_ = false, finished_ = false, tty_ = false;
    clock_type::time_point t0_;
    std::uint64_t total_ = 0, bytes_sent_ = 0, bytes_skipped_ = 0, chunks_sent_ = 0, chunks_skipped_ = 0, in_flight_ = 0;
    unsigned files_verified_ = 0, verify_failures_ = 0, source_failures_ = 0;
};

std::string base_name(const std::string& path) {
    std::string p = path;
    while (p.size() > 1 && p.back() == '/') p.pop_back();
    if (p == "." || p == ".." || p.empty() || p == "/") {
        char buf[PATH_MAX];
        if (realpath(path.c_str(), buf)) p = buf;
    }
    auto slash = p.rfind('/');
    return slash == std::string::npos ? p : p.substr(slash + 1);
}

}  // namespace

int send(const send_options& o) {
    std::vector<entry> entries;
    unsigned failures = 0;
    for (const auto& s : o.sources) {
        std::string name = base_name(s);
        if (name.empty() || name == "/") {
            std::fprintf(stderr, "datamover send: cannot send %s as a whole; name a directory below it\n", s.c_str());
            return exit_code::usage_error;
        }
        walk(s, name, entries, failures);
    }
    if (entries.empty()) {
        std::fprintf(stderr, "datamover send: nothing to send\n");
        return exit_code::some_failed;
    }
    int rc = exit_code::some_failed;
    try {
        vmrdma::event_loop loop;
        vmrdma::device_options dopt;
        dopt.max_endpoints = sender::local_endpoints;
        dopt.unexpected_message_size = 40 * 1024;  // > an entry reply (33 KiB)
        std::srand(static_cast<unsigned>(getpid() ^ std::chrono::steady_clock::now().time_since_epoch().count()));
        auto dev = vmrdma::device::open(loop, o.device, dopt);
        sender s(o, loop, *dev, std::move(entries));
        sigset_t stop_signals;
        sigemptyset(&stop_signals);
        sigaddset(&stop_signals, SIGINT);
        sigaddset(&stop_signals, SIGTERM);
        sigprocmask(SIG_BLOCK, &stop_signals, nullptr);
        int sigfd = signalfd(-1, &stop_signals, SFD_CLOEXEC);
        if (sigfd < 0) throw std::runtime_error(std::string("signalfd: ") + std::strerror(errno));
        rc = loop.run(s.run_until_signal(sigfd));
        close(sigfd);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "datamover send: %s\n", e.what());
    }
    if (rc == exit_code::ok && failures) rc = exit_code::some_failed;
    return rc;
}

}  // namespace datamover
