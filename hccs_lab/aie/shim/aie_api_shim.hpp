// Host shim of the AIE API subset used by hccs_lab's generated kernels and, from the section at
// the end on, by aie4ml's HCCS Softmax kernels (compiled unmodified by hccs_lab.export.hostbuild).
//
// It lets the emitted kernel compile with g++ on a workstation and compute the same integers as
// the AI Engine: elementwise vector ops wrap in their lane type, multiplies land in 32- or 64-bit
// accumulators, and to_vector() narrows with the tile's global rounding mode (default floor) and
// saturation mode (default none = wrap on the MSB side). It is not AMD's header: only the
// operations and the integer semantics the generated kernels rely on.
#pragma once
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

using int8 = std::int8_t;
using uint8 = std::uint8_t;
using int16 = std::int16_t;
using uint16 = std::uint16_t;
using int32 = std::int32_t;

#define chess_prepare_for_pipelining
#define chess_unroll_loop(x)
#define chess_loop_range(a, b)

// count leading sign bits of a 32-bit value (for a positive value: its leading zeros)
inline int clb(int32 x) {
    std::uint32_t u = x < 0 ? ~static_cast<std::uint32_t>(x) : static_cast<std::uint32_t>(x);
    return u == 0 ? 32 : __builtin_clz(u);
}

// accumulator tags live in the global namespace, as in the AIE API
struct acc32 { static constexpr int bits = 32; };
struct acc64 { static constexpr int bits = 64; };

namespace aie {

enum class rounding_mode { floor, ceil, symmetric_inf, conv_even };
enum class saturation_mode { none, saturate, symmetric };

namespace detail {
inline rounding_mode& rounding() { static rounding_mode m = rounding_mode::floor; return m; }
inline saturation_mode& saturation() { static saturation_mode m = saturation_mode::none; return m; }

template <typename T> T wrap(long long v) { return static_cast<T>(v); }  // C++20: modular
}  // namespace detail

inline void set_rounding(rounding_mode m) { detail::rounding() = m; }
inline void set_saturation(saturation_mode m) { detail::saturation() = m; }

template <typename T, unsigned N>
struct vector {
    T v[N];
    T get(unsigned i) const { return v[i]; }
    T& operator[](unsigned i) { return v[i]; }  // lane access (aie4ml's kernels index lanes)
    const T& operator[](unsigned i) const { return v[i]; }
    template <unsigned M>
    vector<T, M> extract(unsigned idx) const {  // lanes [idx*M, (idx+1)*M)
        static_assert(N % M == 0, "extract splits a vector into equal parts");
        vector<T, M> r;
        for (unsigned i = 0; i < M; ++i) r.v[i] = v[idx * M + i];
        return r;
    }
    template <typename U>
    vector<U, N> cast_to() const {
        static_assert(sizeof(U) == sizeof(T), "cast_to keeps the element width");
        vector<U, N> r;
        std::memcpy(r.v, v, sizeof(v));
        return r;
    }
};

template <typename Tag, unsigned N>
struct accum {
    long long v[N];
    accum() = default;
    // an accumulator holding a vector's lanes, shifted left by `shift` (aie4ml's kernels construct it so)
    template <typename T>
    explicit accum(const vector<T, N>& a, int shift = 0) { from_vector(a, shift); }
    static long long fit(long long x) {
        if (Tag::bits == 32) return static_cast<long long>(static_cast<int32>(x));
        if (Tag::bits == 48) return static_cast<long long>(static_cast<std::uint64_t>(x) << 16) >> 16;  // sign-extend bit 47
        return x;
    }
    template <unsigned M>
    accum<Tag, M> extract(unsigned idx) const {
        static_assert(N % M == 0, "extract splits an accumulator into equal parts");
        accum<Tag, M> r;
        for (unsigned i = 0; i < M; ++i) r.v[i] = v[idx * M + i];
        return r;
    }
    template <typename T>
    void from_vector(const vector<T, N>& a, int shift = 0) {
        for (unsigned i = 0; i < N; ++i) v[i] = fit(static_cast<long long>(a.v[i]) << shift);
    }
    template <typename T>
    vector<T, N> to_vector(int shift = 0) const {
        vector<T, N> r;
        for (unsigned i = 0; i < N; ++i) {
            long long a = v[i], q = a;
            if (shift > 0) {
                long long half = 1LL << (shift - 1);
                switch (detail::rounding()) {
                    case rounding_mode::floor: q = a >> shift; break;
                    case rounding_mode::ceil: q = -((-a) >> shift); break;
                    case rounding_mode::symmetric_inf:
                        q = a >= 0 ? (a + half) >> shift : -((-a + half) >> shift); break;
                    case rounding_mode::conv_even: {
                        long long fl = a >> shift, rem = a - (fl << shift);
                        q = fl + ((rem > half || (rem == half && (fl & 1))) ? 1 : 0);
                        break;
                    }
                }
            }
            if (detail::saturation() != saturation_mode::none) {
                long long lo = static_cast<long long>(std::numeric_limits<T>::min());
                long long hi = static_cast<long long>(std::numeric_limits<T>::max());
                if (detail::saturation() == saturation_mode::symmetric && std::is_signed_v<T>) lo = -hi;
                q = q < lo ? lo : (q > hi ? hi : q);
            }
            r.v[i] = detail::wrap<T>(q);
        }
        return r;
    }
};

template <typename T, unsigned N>
vector<T, N> broadcast(T x) {
    vector<T, N> r;
    for (unsigned i = 0; i < N; ++i) r.v[i] = x;
    return r;
}

template <unsigned N, typename T>
vector<T, N> load_v(const T* p) {
    vector<T, N> r;
    std::memcpy(r.v, p, sizeof(r.v));
    return r;
}

template <typename T, unsigned N>
void store_v(T* p, const vector<T, N>& a) { std::memcpy(p, a.v, sizeof(a.v)); }

#define HCCS_SHIM_ELEMENTWISE(NAME, EXPR)                                   \
    template <typename T, unsigned N>                                       \
    vector<T, N> NAME(const vector<T, N>& a, const vector<T, N>& b) {       \
        vector<T, N> r;                                                     \
        for (unsigned i = 0; i < N; ++i) {                                  \
            long long x = a.v[i], y = b.v[i];                               \
            r.v[i] = detail::wrap<T>(EXPR);                                 \
        }                                                                   \
        return r;                                                           \
    }
HCCS_SHIM_ELEMENTWISE(max, x > y ? x : y)
HCCS_SHIM_ELEMENTWISE(min, x < y ? x : y)
HCCS_SHIM_ELEMENTWISE(sub, x - y)
HCCS_SHIM_ELEMENTWISE(add, x + y)
#undef HCCS_SHIM_ELEMENTWISE

template <typename Tag, unsigned N>
accum<Tag, N> add(const accum<Tag, N>& a, const accum<Tag, N>& b) {
    accum<Tag, N> r;
    for (unsigned i = 0; i < N; ++i) r.v[i] = accum<Tag, N>::fit(a.v[i] + b.v[i]);
    return r;
}

namespace detail {
template <typename A, typename B>
using default_tag = std::conditional_t<(sizeof(A) >= 4 || sizeof(B) >= 4), acc64, acc32>;
}

template <typename Tag = void, typename A, typename B, unsigned N,
          typename R = std::conditional_t<std::is_void_v<Tag>, detail::default_tag<A, B>, Tag>>
accum<R, N> mul(const vector<A, N>& a, const vector<B, N>& b) {
    accum<R, N> r;
    for (unsigned i = 0; i < N; ++i)
        r.v[i] = accum<R, N>::fit(static_cast<long long>(a.v[i]) * static_cast<long long>(b.v[i]));
    return r;
}

template <typename Tag, typename A, typename B, unsigned N>
accum<Tag, N> mac(const accum<Tag, N>& acc, const vector<A, N>& a, const vector<B, N>& b) {
    accum<Tag, N> r;
    for (unsigned i = 0; i < N; ++i)
        r.v[i] = accum<Tag, N>::fit(acc.v[i] + static_cast<long long>(a.v[i]) * static_cast<long long>(b.v[i]));
    return r;
}

// lanes [0, N-n) take lanes [n, N); the top n lanes are zero (callers read only the low lanes)
template <typename T, unsigned N>
vector<T, N> shuffle_down(const vector<T, N>& a, unsigned n) {
    vector<T, N> r;
    for (unsigned i = 0; i < N; ++i) r.v[i] = i + n < N ? a.v[i + n] : T(0);
    return r;
}

template <typename T, unsigned N, typename... Rest>
vector<T, N * (1 + sizeof...(Rest))> concat(const vector<T, N>& first, const Rest&... rest) {
    vector<T, N * (1 + sizeof...(Rest))> r;
    const vector<T, N>* parts[] = {&first, &rest...};
    for (unsigned p = 0; p < 1 + sizeof...(Rest); ++p)
        for (unsigned i = 0; i < N; ++i) r.v[p * N + i] = parts[p]->v[i];
    return r;
}

template <typename T, unsigned N>
T reduce_max(const vector<T, N>& a) {
    T m = a.v[0];
    for (unsigned i = 1; i < N; ++i) m = a.v[i] > m ? a.v[i] : m;
    return m;
}

template <typename T, unsigned N>
T reduce_add(const vector<T, N>& a) {
    long long s = 0;
    for (unsigned i = 0; i < N; ++i) s += a.v[i];
    return detail::wrap<T>(s);
}

}  // namespace aie

// ---------------------------------------------------------------------------------------------
// The part of the AIE API that aie4ml's Softmax kernels (templates/nnet_utils/softmax/) use on
// top of the above, so hccs_lab.export.hostbuild can compile the sources an aie4ml project
// generates, unmodified. Same rules as above: integer ops wrap in their lane type, to_vector()
// narrows with the global rounding and saturation modes (the kernels' constructors set floor and
// saturate), accumulators keep their tag's width.
// ---------------------------------------------------------------------------------------------

struct acc48 { static constexpr int bits = 48; };  // AIE1's accumulator (named by aie4ml's AIE1 paths)

namespace aie {

// alignment for vectors declared in memory; only its being a constant matters on the host
inline constexpr unsigned vector_decl_align = 64;

namespace detail {
template <typename T> struct is_acc_tag : std::false_type {};
template <> struct is_acc_tag<acc32> : std::true_type {};
template <> struct is_acc_tag<acc48> : std::true_type {};
template <> struct is_acc_tag<acc64> : std::true_type {};
}  // namespace detail

// an all-zero vector, or an all-zero accumulator when T is an accumulator tag
template <typename T, unsigned N>
auto zeros() {
    if constexpr (detail::is_acc_tag<T>::value) {
        accum<T, N> r;
        for (unsigned i = 0; i < N; ++i) r.v[i] = 0;
        return r;
    } else {
        vector<T, N> r;
        for (unsigned i = 0; i < N; ++i) r.v[i] = T(0);
        return r;
    }
}

// an accumulator holding the vector's lanes (shifted left by `shift`), as accum's constructor does
template <typename Tag, typename T, unsigned N>
accum<Tag, N> from_vector(const vector<T, N>& a, int shift = 0) {
    accum<Tag, N> r;
    r.from_vector(a, shift);
    return r;
}

// vector with a scalar: the scalar stands for a broadcast of itself
#define HCCS_SHIM_WITH_SCALAR(NAME)                                          \
    template <typename T, unsigned N>                                        \
    vector<T, N> NAME(const vector<T, N>& a, std::type_identity_t<T> b) { return NAME(a, broadcast<T, N>(b)); } \
    template <typename T, unsigned N>                                        \
    vector<T, N> NAME(std::type_identity_t<T> a, const vector<T, N>& b) { return NAME(broadcast<T, N>(a), b); }
HCCS_SHIM_WITH_SCALAR(max)
HCCS_SHIM_WITH_SCALAR(min)
HCCS_SHIM_WITH_SCALAR(add)
HCCS_SHIM_WITH_SCALAR(sub)
#undef HCCS_SHIM_WITH_SCALAR

template <typename T, unsigned N>
vector<T, N> bit_and(const vector<T, N>& a, const vector<T, N>& b) {
    vector<T, N> r;
    for (unsigned i = 0; i < N; ++i) r.v[i] = static_cast<T>(a.v[i] & b.v[i]);
    return r;
}

// arithmetic (signed) or logical (unsigned) right shift of every lane, as the vector unit does
template <typename T, unsigned N>
vector<T, N> downshift(const vector<T, N>& a, unsigned s) {
    vector<T, N> r;
    for (unsigned i = 0; i < N; ++i) r.v[i] = static_cast<T>(a.v[i] >> s);
    return r;
}

// one bit per lane, as compares return it
template <unsigned N>
struct mask {
    bool b[N];
    bool test(unsigned i) const { return b[i]; }
};

template <typename T, unsigned N>
mask<N> ge(const vector<T, N>& a, const vector<T, N>& b) {
    mask<N> m;
    for (unsigned i = 0; i < N; ++i) m.b[i] = a.v[i] >= b.v[i];
    return m;
}

template <typename T, unsigned N>
mask<N> lt(const vector<T, N>& a, const vector<T, N>& b) {
    mask<N> m;
    for (unsigned i = 0; i < N; ++i) m.b[i] = a.v[i] < b.v[i];
    return m;
}

// lane i: b where the mask bit is set, a where it is not
template <typename T, unsigned N>
vector<T, N> select(const vector<T, N>& a, const vector<T, N>& b, const mask<N>& m) {
    vector<T, N> r;
    for (unsigned i = 0; i < N; ++i) r.v[i] = m.b[i] ? b.v[i] : a.v[i];
    return r;
}

// the vector read as a row x col matrix (row-major), returned as its col x row transpose
template <typename T, unsigned N>
vector<T, N> transpose(const vector<T, N>& a, unsigned row, unsigned col) {
    vector<T, N> r;
    for (unsigned i = 0; i < row; ++i)
        for (unsigned j = 0; j < col; ++j) r.v[j * row + i] = a.v[i * col + j];
    return r;
}

// widen every lane to twice its width (sign- or zero-extended by the element type)
namespace detail {
template <typename T> struct wider;
template <> struct wider<int8> { using type = int16; };
template <> struct wider<uint8> { using type = uint16; };
template <> struct wider<int16> { using type = int32; };
}  // namespace detail

template <typename T, unsigned N>
vector<typename detail::wider<T>::type, N> unpack(const vector<T, N>& a) {
    vector<typename detail::wider<T>::type, N> r;
    for (unsigned i = 0; i < N; ++i) r.v[i] = a.v[i];
    return r;
}

// int lanes scaled by 2^-shift as float; the float path is only ever a seed that aie4ml's
// reciprocal corrects to the exact integer quotient, so its rounding cannot reach an output
template <typename T, unsigned N>
vector<float, N> to_float(const vector<T, N>& a, int shift = 0) {
    vector<float, N> r;
    for (unsigned i = 0; i < N; ++i) r.v[i] = static_cast<float>(static_cast<double>(a.v[i]) / static_cast<double>(1LL << shift));
    return r;
}

template <unsigned N>
vector<float, N> inv(const vector<float, N>& a) {
    vector<float, N> r;
    for (unsigned i = 0; i < N; ++i) r.v[i] = 1.0f / a.v[i];
    return r;
}

// float lanes times 2^shift, rounded down and saturated to the integer type
template <typename T, unsigned N>
vector<T, N> to_fixed(const vector<float, N>& a, int shift = 0) {
    vector<T, N> r;
    const double lo = static_cast<double>(std::numeric_limits<T>::min());
    const double hi = static_cast<double>(std::numeric_limits<T>::max());
    for (unsigned i = 0; i < N; ++i) {
        double x = static_cast<double>(a.v[i]) * static_cast<double>(1LL << shift);
        x = x != x ? 0.0 : x;  // NaN: no meaningful fixed-point value; 0 like a cleared lane
        x = x < lo ? lo : (x > hi ? hi : x);
        r.v[i] = static_cast<T>(static_cast<long long>(__builtin_floor(x)));
    }
    return r;
}

// Iterators over consecutive N-lane vectors in memory (aie::begin_vector / cbegin_vector).
template <typename T, unsigned N>
struct vector_ref {
    T* p;
    operator vector<T, N>() const { return load_v<N>(static_cast<const T*>(p)); }
    vector_ref& operator=(const vector<T, N>& a) { store_v(p, a); return *this; }
};

template <typename T, unsigned N>
struct vector_iterator {
    T* p;
    vector_ref<T, N> operator*() const { return {p}; }
    vector_iterator& operator++() { p += N; return *this; }
    vector_iterator operator++(int) { vector_iterator old = *this; p += N; return old; }
};

template <typename T, unsigned N>
struct const_vector_iterator {
    const T* p;
    vector<T, N> operator*() const { return load_v<N>(p); }
    const_vector_iterator& operator++() { p += N; return *this; }
    const_vector_iterator operator++(int) { const_vector_iterator old = *this; p += N; return old; }
};

template <unsigned N, typename T>
vector_iterator<T, N> begin_vector(T* p) { return {p}; }

template <unsigned N, typename T>
const_vector_iterator<T, N> cbegin_vector(const T* p) { return {p}; }

}  // namespace aie
