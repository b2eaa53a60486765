// How many file descriptors this process has open: tests compare it before
// and after to show that nothing leaked.
#pragma once

#include <dirent.h>

namespace vmrdma::testing {

inline int open_fd_count() {
    int n = 0;
    if (DIR* d = opendir("/proc/self/fd")) {
        while (readdir(d)) ++n;
        closedir(d);
    }
    return n;
}

}  // namespace vmrdma::testing
