// Symmetric transfer: a chain of co_awaits that all complete synchronously
// runs in constant stack. GCC turns the transfer into a tail call only when
// optimising, so this test is built with -O2 and without sanitizers (see
// BUILD); in -O0 builds deep synchronous chains can exhaust the stack.
#include <doctest/doctest.h>

#include "vmrdma/sync_wait.hpp"
#include "vmrdma/task.hpp"

namespace {
vmrdma::task<int> chain(int depth) {
    if (depth == 0) co_return 0;
    co_return co_await chain(depth - 1) + 1;
}
}  // namespace

TEST_CASE("a million nested synchronous co_awaits do not grow the stack") {
    CHECK(vmrdma::sync_wait(chain(1000000)) == 1000000);
}
