// The wait object behind a CQ, a counter or an EQ (docs/mpi.md, Progress).
#pragma once

namespace vmrdma::fabric {

// An eventfd used as a level: readable while set, once somebody may sleep
// on it: a thread waiting in fi_cq_sread or fi_cntr_wait (between arm() and
// disarm()), or an application that was handed the fd (FI_GETWAIT:
// expose(), for good). Until then set() and clear() only keep the level:
// each was a write(2) or read(2) per completion, on a queue nobody waits on
// (docs/mpi.md, Progress). Used under the owner's mutex.
class wake_fd {
public:
    explicit wake_fd(bool always_armed = false);
    ~wake_fd();
    wake_fd(const wake_fd&) = delete;
    wake_fd& operator=(const wake_fd&) = delete;
    int fd() const noexcept { return fd_; }
    void set() noexcept;
    void clear() noexcept;
    void arm() noexcept;
    void disarm() noexcept;
    void expose() noexcept;

private:
    bool armed() const noexcept { return exposed_ || sleepers_ > 0; }
    void sync() noexcept;  // while armed, the fd is readable exactly when set

    int fd_ = -1;
    bool level_ = false;    // set, as the owner sees it
    bool written_ = false;  // the eventfd holds a count
    bool exposed_ = false;
    int sleepers_ = 0;
};

}  // namespace vmrdma::fabric
