#include "fabric/atomics.hpp"

#include <complex>
#include <cstdint>
#include <cstring>
#include <type_traits>

namespace vmrdma::fabric {

namespace {

template <typename T>
struct is_complex : std::false_type {};
template <typename T>
struct is_complex<std::complex<T>> : std::true_type {};

template <typename T>
constexpr bool is_integer = std::is_integral_v<T> || std::is_same_v<T, __int128> ||
                            std::is_same_v<T, unsigned __int128>;
template <typename T>
constexpr bool is_real = is_integer<T> || std::is_floating_point_v<T>;

// Calls fn(T{}) with the C++ type of `datatype`; false if there is none.
template <typename Fn>
bool with_type(int datatype, Fn&& fn) {
    switch (datatype) {
    case FI_INT8: fn(std::int8_t{}); return true;
    case FI_UINT8: fn(std::uint8_t{}); return true;
    case FI_INT16: fn(std::int16_t{}); return true;
    case FI_UINT16: fn(std::uint16_t{}); return true;
    case FI_INT32: fn(std::int32_t{}); return true;
    case FI_UINT32: fn(std::uint32_t{}); return true;
    case FI_INT64: fn(std::int64_t{}); return true;
    case FI_UINT64: fn(std::uint64_t{}); return true;
    case FI_INT128: fn(__int128{}); return true;
    case FI_UINT128: fn(static_cast<unsigned __int128>(0)); return true;
    case FI_FLOAT: fn(float{}); return true;
    case FI_DOUBLE: fn(double{}); return true;
    case FI_LONG_DOUBLE: fn(static_cast<long double>(0)); return true;
    case FI_FLOAT_COMPLEX: fn(std::complex<float>{}); return true;
    case FI_DOUBLE_COMPLEX: fn(std::complex<double>{}); return true;
    case FI_LONG_DOUBLE_COMPLEX: fn(std::complex<long double>{}); return true;
    default: return false;
    }
}

// Which operations a type has, as libfabric defines them: ordering ones
// (MIN, MAX, the ordered CSWAPs) need a real type, bitwise ones (BOR, BAND,
// BXOR, MSWAP) an integer, logical ones a real type.
template <typename T>
bool op_exists(int op) {
    switch (op) {
    case FI_MIN:
    case FI_MAX:
    case FI_CSWAP_LE:
    case FI_CSWAP_LT:
    case FI_CSWAP_GE:
    case FI_CSWAP_GT:
    case FI_LOR:
    case FI_LAND:
    case FI_LXOR: return is_real<T>;
    case FI_BOR:
    case FI_BAND:
    case FI_BXOR:
    case FI_MSWAP: return is_integer<T>;
    case FI_SUM:
    case FI_PROD:
    case FI_ATOMIC_READ:
    case FI_ATOMIC_WRITE:
    case FI_CSWAP:
    case FI_CSWAP_NE: return true;
    default: return false;
    }
}

bool op_of_kind(atomic_kind kind, int op) {
    switch (kind) {
    case atomic_kind::base: return (op >= FI_MIN && op <= FI_BXOR) || op == FI_ATOMIC_WRITE;
    case atomic_kind::fetch: return (op >= FI_MIN && op <= FI_BXOR) || op == FI_ATOMIC_READ || op == FI_ATOMIC_WRITE;
    case atomic_kind::compare: return op >= FI_CSWAP && op <= FI_MSWAP;
    }
    return false;
}

template <typename T>
T combine(int op, T old, T operand, T compare, bool& write) {
    write = true;
    if constexpr (is_real<T>) {
        switch (op) {
        case FI_MIN: return operand < old ? operand : old;
        case FI_MAX: return operand > old ? operand : old;
        case FI_LOR: return static_cast<T>(old || operand);
        case FI_LAND: return static_cast<T>(old && operand);
        case FI_LXOR: return static_cast<T>(!old != !operand);
        case FI_CSWAP_LE: write = compare <= old; return operand;
        case FI_CSWAP_LT: write = compare < old; return operand;
        case FI_CSWAP_GE: write = compare >= old; return operand;
        case FI_CSWAP_GT: write = compare > old; return operand;
        default: break;
        }
    }
    if constexpr (is_integer<T>) {
        switch (op) {
        case FI_BOR: return old | operand;
        case FI_BAND: return old & operand;
        case FI_BXOR: return old ^ operand;
        case FI_MSWAP: return static_cast<T>((operand & compare) | (old & ~compare));
        default: break;
        }
    }
    switch (op) {
    case FI_SUM: return static_cast<T>(old + operand);
    case FI_PROD: return static_cast<T>(old * operand);
    case FI_ATOMIC_WRITE: return operand;
    case FI_CSWAP: write = compare == old; return operand;
    case FI_CSWAP_NE: write = compare != old; return operand;
    default: write = false; return old;  // FI_ATOMIC_READ
    }
}

}  // namespace

std::size_t atomic_size(int datatype) {
    std::size_t size = 0;
    with_type(datatype, [&](auto v) { size = sizeof v; });
    return size;
}

bool atomic_valid(atomic_kind kind, int op, int datatype) {
    bool ok = false;
    if (!op_of_kind(kind, op)) return false;
    with_type(datatype, [&](auto v) { ok = op_exists<decltype(v)>(op); });
    return ok;
}

void atomic_apply(int op, int datatype, void* target, const void* operand, const void* compare, void* previous,
                  std::size_t count) {
    with_type(datatype, [&](auto v) {
        using T = decltype(v);
        auto* t = static_cast<std::byte*>(target);
        for (std::size_t i = 0; i < count; ++i) {
            T old{}, in{}, cmp{};
            std::memcpy(&old, t + i * sizeof(T), sizeof(T));
            if (operand) std::memcpy(&in, static_cast<const std::byte*>(operand) + i * sizeof(T), sizeof(T));
            if (compare) std::memcpy(&cmp, static_cast<const std::byte*>(compare) + i * sizeof(T), sizeof(T));
            if (previous) std::memcpy(static_cast<std::byte*>(previous) + i * sizeof(T), &old, sizeof(T));
            bool write = false;
            T out = combine<T>(op, old, in, cmp, write);
            if (write) std::memcpy(t + i * sizeof(T), &out, sizeof(T));
        }
    });
}

}  // namespace vmrdma::fabric
