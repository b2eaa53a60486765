// libfabric's atomic operations, applied by the target's provider (docs/mpi.md,
// "RMA and atomics"): one table of which (operation, datatype) pairs exist for
// each of fi_atomic, fi_fetch_atomic and fi_compare_atomic, and the code that
// applies them element by element.
#pragma once

#include <rdma/fabric.h>
#include <rdma/fi_domain.h>

#include <cstddef>

namespace vmrdma::fabric {

enum class atomic_kind { base, fetch, compare };

// Bytes of one element of `datatype`; 0 for a datatype the provider does not
// know (including FI_VOID and collective types).
std::size_t atomic_size(int datatype);

// Whether `op` on `datatype` is offered for `kind`.
bool atomic_valid(atomic_kind kind, int op, int datatype);

// Applies `op` to `count` elements at `target`: `operand` (absent for
// FI_ATOMIC_READ), `compare` (compare kind only); the previous values go to
// `previous` when it is given. The caller has checked atomic_valid; the
// buffers need no alignment.
void atomic_apply(int op, int datatype, void* target, const void* operand, const void* compare,
                  void* previous, std::size_t count);

}  // namespace vmrdma::fabric
