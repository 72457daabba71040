// CPU kernels of pau::forward and pau::backward for one tile (see tiling.h),
// and of pau::rpau_forward / pau::rpau_backward: the same loops with a noise
// policy (kNoisy) that perturbs the coefficients per element.
// CMake compiles this file once per instruction set with CPU_CAPABILITY set to
// DEFAULT, AVX2 or AVX512 and the matching -m flags; dispatch.cpp picks the
// table of the running CPU. The math is pau_math.h, evaluated on
// at::vec::Vectorized lanes; this file only loads, loops and accumulates.
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <type_traits>
#include <vector>

#include "math/counter_rng.h"
#include "cpu/kernels.h"
#include "cpu/tile_coefficients.h"
#include "cpu/vec_ops.h"
#include "math/pau_math.h"

namespace pau {
namespace cpu {
namespace CPU_CAPABILITY {
namespace {

using math::Degrees;
using math::Variant;

// counter_rng.h's lane operations on at::vec int32 lanes. Two's complement
// wraps like uint32; the logical shift is the arithmetic one masked.
struct VecU32Ops {
  using value = Vec<int32_t>;
  static PAU_INLINE value broadcast(uint32_t v) { return value(static_cast<int32_t>(v)); }
  static PAU_INLINE value shift_right(const value& v, int s) {
    // One logical shift where the ISA has it, instead of at::vec's arithmetic
    // shift by a vector and a mask.
#if defined(CPU_CAPABILITY_AVX512)
    return _mm512_srl_epi32(v, _mm_cvtsi32_si128(s));
#elif defined(CPU_CAPABILITY_AVX2)
    return _mm256_srl_epi32(v, _mm_cvtsi32_si128(s));
#else
    return (v >> value(s)) & value(static_cast<int32_t>((1u << (32 - s)) - 1u));
#endif
  }
  static PAU_INLINE value multiply(const value& v, uint32_t c) { return v * value(static_cast<int32_t>(c)); }
  static PAU_INLINE value bit_xor(const value& a, const value& b) { return a ^ b; }
  static PAU_INLINE value bit_and(const value& a, uint32_t mask) {
    return a & value(static_cast<int32_t>(mask));
  }
  static PAU_INLINE value add(const value& a, const value& b) { return a + b; }
};

// The levels k_ij (see counter_rng.h) for the elements with logical indices
// [first, first + count) and every coefficient j, as T: out[j * kBlock + e].
// kWords: s.words when known at compile time (the paper's (5, 4): 10, so the
// loop over coefficients unrolls), else 0.
template <class T, int kWords = 0>
void generate_noise(const rng::Stream& s, int64_t first, int64_t count, T* out) {
  const int words = kWords > 0 ? kWords : s.words;
  int64_t e = 0;
#if defined(CPU_CAPABILITY_AVX2) || defined(CPU_CAPABILITY_AVX512)
  // The generic at::vec int32 multiply of the DEFAULT build is signed C++
  // arithmetic (overflow is undefined): that build takes the scalar loop.
  using I = Vec<int32_t>;
  constexpr int64_t L = I::size();
  static_assert(Vec<float>::size() == L, "one float lane per int32 lane");
  alignas(64) float lanes[L];
  for (; e + L <= count; e += L) {
    const uint64_t index = static_cast<uint64_t>(first + e);
    const uint32_t lo = static_cast<uint32_t>(index);
    if (static_cast<uint64_t>(lo) + L > (uint64_t(1) << 32)) break;  // lanes straddle i_hi
    const I state = rng::element_state<VecU32Ops>(
        s, I(static_cast<int32_t>(lo)) + I::arange(0, 1), static_cast<uint32_t>(index >> 32));
    I word;
    for (int j = 0; j < words; ++j) {
      if ((j & 1) == 0) word = rng::pair_word<VecU32Ops>(s, state, j / 2);
      const Vec<float> k =
          at::vec::convert_to_fp_of_same_size<float>(rng::level<VecU32Ops>(word, j));
      if constexpr (std::is_same_v<T, float>) {
        k.store(out + j * kBlock + e);
      } else {
        k.store(lanes);
        for (int64_t l = 0; l < L; ++l) out[j * kBlock + e + l] = static_cast<T>(lanes[l]);
      }
    }
  }
#endif
  for (; e < count; ++e) {
    const uint64_t index = static_cast<uint64_t>(first + e);
    const uint32_t state = rng::element_state<rng::ScalarOps>(
        s, static_cast<uint32_t>(index), static_cast<uint32_t>(index >> 32));
    uint32_t word = 0;
    for (int j = 0; j < words; ++j) {
      if ((j & 1) == 0) word = rng::pair_word<rng::ScalarOps>(s, state, j / 2);
      out[j * kBlock + e] = static_cast<T>(rng::level<rng::ScalarOps>(word, j));
    }
  }
}

// RPAU's noise policy for one tile: the per-element factors 1 + e of every
// coefficient (base + scale * k, with base and scale laid out like the
// coefficients) and the perturbed coefficients c * (1 + e).
template <class T>
class TileNoise {
 public:
  TileNoise(const Problem& p, const Tile& tile)
      : stream_(p.noise->stream),
        base_(with_tables(p, p.noise->base_numerator, p.noise->base_denominator), tile),
        scale_(with_tables(p, p.noise->scale_numerator, p.noise->scale_denominator), tile),
        k_(static_cast<size_t>(p.coefficients() * kBlock)) {}

  // Regenerates k for the block of elements [first, first + count).
  template <class Deg>
  void generate(int64_t first, int64_t count, const Deg&) {
    generate_noise<T, fixed_coefficients<Deg>()>(stream_, first, count, k_.data());
  }

  // For the lanes at block position i (tile column `column`): factor[0..m+n]
  // and the perturbed coefficients a' = a * factor, b' = b * factor.
  // kPerLane: the tile's kind (TileCoefficients::lanes).
  template <bool kPerLane, class Deg>
  PAU_INLINE void perturb(int64_t column, int64_t i, const Deg& deg, const Vec<T>* a,
                          const Vec<T>* b, Vec<T>* a_out, Vec<T>* b_out, Vec<T>* factor) {
    const Vec<T>* base_a;
    const Vec<T>* base_b;
    const Vec<T>* scale_a;
    const Vec<T>* scale_b;
    base_.template lanes<kPerLane>(column, base_a, base_b, lane_buffers_[0], lane_buffers_[1]);
    scale_.template lanes<kPerLane>(column, scale_a, scale_b, lane_buffers_[2],
                                    lane_buffers_[3]);
    const T* k = k_.data() + i;
    for (int j = 0; j <= deg.m; ++j) {
      factor[j] = at::vec::fmadd(scale_a[j], Vec<T>::loadu(k + j * kBlock), base_a[j]);
      a_out[j] = a[j] * factor[j];
    }
    for (int q = 0; q < deg.n; ++q) {
      const int j = deg.m + 1 + q;
      factor[j] = at::vec::fmadd(scale_b[q], Vec<T>::loadu(k + j * kBlock), base_b[q]);
      b_out[q] = b[q] * factor[j];
    }
  }

  // perturb() for the single element at block position i (tile column
  // `column`); c holds its m + 1 + n coefficients and is perturbed in place.
  void perturb_element(int64_t column, int64_t i, int count, T* c, T* factor) const {
    T base[2 * math::kMaxTerms];
    T scale[2 * math::kMaxTerms];
    base_.column_coefficients(column, base);
    scale_.column_coefficients(column, scale);
    for (int j = 0; j < count; ++j) {
      factor[j] = scale[j] * k_[j * kBlock + i] + base[j];
      c[j] *= factor[j];
    }
  }

 private:
  rng::Stream stream_;
  TileCoefficients<T> base_;
  TileCoefficients<T> scale_;
  std::vector<T> k_;
  Vec<T> lane_buffers_[4][math::kMaxTerms];
};

// The noise policy of a kernel: none for PAU, TileNoise for RPAU.
template <class T, bool kNoisy>
std::unique_ptr<TileNoise<T>> make_noise(const Problem& p, const Tile& tile) {
  if constexpr (kNoisy) {
    return std::make_unique<TileNoise<T>>(p, tile);
  } else {
    return nullptr;
  }
}

// The coefficient vectors of the lanes at tile column `column` (block position
// i): the tile's, or for RPAU (kNoisy) perturbed per element, with their noise
// factors. Declared inside the vector loop, so its scratch stays in registers
// for compile-time degrees and its stores that nothing reads go.
template <class T, class Deg, bool kNoisy, bool kPerLane>
class LaneCoefficients {
 public:
  PAU_INLINE LaneCoefficients(const TileCoefficients<T>& coefficients, TileNoise<T>* noise,
                              int64_t column, int64_t i, const Deg& degrees, Vec<T>* a_lanes,
                              Vec<T>* b_lanes) {
    coefficients.template lanes<kPerLane>(column, a_, b_, a_lanes, b_lanes);
    if constexpr (kNoisy) {
      noise->template perturb<kPerLane>(column, i, degrees, a_, b_, a_noisy_.data(),
                                        b_noisy_.data(), factor_.data());
    }
  }
  PAU_INLINE const Vec<T>* a() { return kNoisy ? a_noisy_.data() : a_; }
  PAU_INLINE const Vec<T>* b() { return kNoisy ? b_noisy_.data() : b_; }
  // For math::backward: the factors, or nullptr for PAU.
  PAU_INLINE const Vec<T>* factors() { return kNoisy ? factor_.data() : nullptr; }

 private:
  const Vec<T>* a_;
  const Vec<T>* b_;
  Scratch<T, Deg::max_terms> a_noisy_;
  Scratch<T, Deg::max_terms> b_noisy_;
  Scratch<T, 2 * Deg::max_terms> factor_;
};

// Per-lane tiles with mixed effective degrees (TileCoefficients::mixed) are
// evaluated element by element, each with its own group's degrees. For the
// block [begin, begin + count) of `row`, calls element(i, column,
// coefficients, degrees, factor) with the element's (perturbed, for RPAU)
// m + 1 + n coefficients and, for RPAU, their noise factors (else nullptr).
template <class T, bool kNoisy, class Element>
void for_each_element_lanewise(const Problem& p, const Tile& tile,
                               const TileCoefficients<T>& coefficients, TileNoise<T>* noise,
                               int64_t row, int64_t begin, int64_t count, Element&& element) {
  const int total = p.coefficients();
  T c[2 * math::kMaxTerms];
  T factor[2 * math::kMaxTerms];
  if constexpr (kNoisy) noise->generate(row * p.layout.row_length + begin, count, Degrees{});
  for (int64_t i = 0; i < count; ++i) {
    const int64_t column = begin - tile.column_begin + i;
    const Degrees& degrees = p.degrees[tile.first_group + column / p.layout.run];
    coefficients.column_coefficients(column, c);
    if constexpr (kNoisy) noise->perturb_element(column, i, total, c, factor);
    element(i, column, c, degrees, kNoisy ? factor : nullptr);
  }
}

// Whether the element x of tile column `column` may use plain powers: its own
// group's limit (lanewise tiles evaluate one element at a time).
template <class T>
bool plain(const Problem& p, const Tile& tile, int64_t column, T x) {
  return std::fabs(x) <= p.plain_limits[tile.first_group + column / p.layout.run];
}

template <Variant variant, class T, bool kNoisy>
void forward_tile_lanewise(const ForwardArgs& args, const BlockStorage<T>& storage,
                           const Tile& tile, const TileCoefficients<T>& coefficients,
                           TileNoise<T>* noise) {
  const Problem& p = args.problem;
  alignas(64) T x_buffer[kBlock];
  alignas(64) T y_buffer[kBlock];
  for (int64_t row = tile.row_begin; row < tile.row_end; ++row) {
    for (int64_t begin = tile.column_begin; begin < tile.column_end; begin += kBlock) {
      const int64_t count = std::min(kBlock, tile.column_end - begin);
      const int64_t offset = row * p.layout.row_length + begin;
      const T* xs = storage.load(args.x, offset, count, x_buffer);
      T* ys = storage.output(args.out, offset, y_buffer);
      for_each_element_lanewise<T, kNoisy>(
          p, tile, coefficients, noise, row, begin, count,
          [&](int64_t i, int64_t column, const T* c, const Degrees& degrees, const T*) {
            ys[i] = math::forward<variant, math::ScalarOps<T>>(xs[i], c, c + p.m + 1, degrees,
                                                               plain(p, tile, column, xs[i]));
          });
      storage.store(ys, count, args.out, offset);
    }
  }
}

// Adds each element's coefficient gradients to sums[k * sums_stride + column]
// (double, in row order: deterministic).
template <Variant variant, class T, bool kNoisy>
void backward_tile_lanewise(const BackwardArgs& args, const BlockStorage<T>& storage,
                            const Tile& tile, const TileCoefficients<T>& coefficients,
                            TileNoise<T>* noise, double* sums, int64_t sums_stride) {
  const Problem& p = args.problem;
  const int total = p.coefficients();
  alignas(64) T x_buffer[kBlock];
  alignas(64) T g_buffer[kBlock];
  alignas(64) T gx_buffer[kBlock];
  for (int64_t row = tile.row_begin; row < tile.row_end; ++row) {
    for (int64_t begin = tile.column_begin; begin < tile.column_end; begin += kBlock) {
      const int64_t count = std::min(kBlock, tile.column_end - begin);
      const int64_t offset = row * p.layout.row_length + begin;
      const T* xs = storage.load(args.x, offset, count, x_buffer);
      const T* gs = storage.load(args.grad, offset, count, g_buffer);
      T* gxs = storage.output(args.grad_x, offset, gx_buffer);
      for_each_element_lanewise<T, kNoisy>(
          p, tile, coefficients, noise, row, begin, count,
          [&](int64_t i, int64_t column, const T* c, const Degrees& degrees, const T* factor) {
            T gc[2 * math::kMaxTerms] = {};
            gxs[i] = math::backward<variant, math::ScalarOps<T>>(
                xs[i], gs[i], c, c + p.m + 1, degrees, gc, gc + p.m + 1, factor,
                plain(p, tile, column, xs[i]));
            for (int k = 0; k < total; ++k) sums[k * sums_stride + column] += gc[k];
          });
      storage.store(gxs, count, args.grad_x, offset);
    }
  }
}

template <Variant variant, class T, bool kNoisy>
void forward_tile(const ForwardArgs& args, const BlockStorage<T>& storage, int64_t index) {
  using V = Vec<T>;
  const Problem& p = args.problem;
  const Layout& layout = p.layout;
  const Tile tile = tile_at(layout, index);
  const TileCoefficients<T> coefficients(p, tile);
  alignas(64) T x_buffer[kBlock];
  alignas(64) T y_buffer[kBlock];
  const auto noise = make_noise<T, kNoisy>(p, tile);
  if (coefficients.mixed()) {
    return forward_tile_lanewise<variant, T, kNoisy>(args, storage, tile, coefficients,
                                                     noise.get());
  }
  V a_lanes[math::kMaxTerms];
  V b_lanes[math::kMaxTerms];

  with_constant(coefficients.per_lane(), [&](auto per_lane) {
    with_degrees(coefficients.degrees(), [&](const auto& degrees) {
      using Deg = std::decay_t<decltype(degrees)>;
      for (int64_t row = tile.row_begin; row < tile.row_end; ++row) {
        for (int64_t begin = tile.column_begin; begin < tile.column_end; begin += kBlock) {
          const int64_t count = std::min(kBlock, tile.column_end - begin);
          const int64_t offset = row * layout.row_length + begin;
          const T* xs = storage.load(args.x, offset, count, x_buffer);
          T* ys = storage.output(args.out, offset, y_buffer);
          if constexpr (kNoisy) noise->generate(offset, count, degrees);
          const bool plain = all_abs_at_most(xs, count, coefficients.plain_limit());
          with_constant(plain, [&](auto kPlain) PAU_INLINE_LAMBDA {
            for_each_vector<T>(count, [&](int64_t i, int64_t lanes) PAU_INLINE_LAMBDA {
              LaneCoefficients<T, Deg, kNoisy, per_lane> c(coefficients, noise.get(),
                                                           begin - tile.column_begin + i, i,
                                                           degrees, a_lanes, b_lanes);
              const V y = math::forward<variant, VecOps<T>, Deg>(
                  load_lanes(xs + i, lanes), c.a(), c.b(), degrees, kPlain);
              store_lanes(y, ys + i, lanes);
            });
          });
          storage.store(ys, count, args.out, offset);
        }
      }
    });
  });
}

template <Variant variant, class T, bool kNoisy>
void backward_tile(const BackwardArgs& args, const BlockStorage<T>& storage, int64_t index) {
  using V = Vec<T>;
  const Problem& p = args.problem;
  const Layout& layout = p.layout;
  const Tile tile = tile_at(layout, index);
  const TileCoefficients<T> coefficients(p, tile);
  const int count_coefficients = p.coefficients();

  GradientSums<T> sums(coefficients, count_coefficients);

  alignas(64) T x_buffer[kBlock];
  alignas(64) T g_buffer[kBlock];
  alignas(64) T gx_buffer[kBlock];
  const auto noise = make_noise<T, kNoisy>(p, tile);
  if (coefficients.mixed()) {
    backward_tile_lanewise<variant, T, kNoisy>(args, storage, tile, coefficients, noise.get(),
                                               sums.sums(), sums.stride());
  } else {
    V a_lanes[math::kMaxTerms];
    V b_lanes[math::kMaxTerms];
    with_constant(coefficients.per_lane(), [&](auto kPerLane) {
      with_degrees(coefficients.degrees(), [&](const auto& degrees) {
        using Deg = std::decay_t<decltype(degrees)>;
        // A broadcast tile's accumulators: local, so the fixed-degree case keeps
        // them in registers.
        V acc[2 * math::kMaxTerms];
        for (int64_t row = tile.row_begin; row < tile.row_end; ++row) {
          for (int64_t begin = tile.column_begin; begin < tile.column_end; begin += kBlock) {
            const int64_t count = std::min(kBlock, tile.column_end - begin);
            const int64_t offset = row * layout.row_length + begin;
            const T* xs = storage.load(args.x, offset, count, x_buffer);
            const T* gs = storage.load(args.grad, offset, count, g_buffer);
            T* gxs = storage.output(args.grad_x, offset, gx_buffer);
            if constexpr (!kPerLane) {
              for (int k = 0; k < count_coefficients; ++k) acc[k] = V(T(0));
            }
            if constexpr (kNoisy) noise->generate(offset, count, degrees);
            const bool plain = all_abs_at_most(xs, count, coefficients.plain_limit());
            with_constant(plain, [&](auto kPlain) PAU_INLINE_LAMBDA {
              for_each_vector<T>(count, [&](int64_t i, int64_t lanes) PAU_INLINE_LAMBDA {
                const int64_t column = begin - tile.column_begin + i;
                LaneCoefficients<T, Deg, kNoisy, kPerLane> c(coefficients, noise.get(), column,
                                                             i, degrees, a_lanes, b_lanes);
                // Lanes past `lanes` load x = 0 and g = 0, so they add exact zeros.
                V* target = acc;
                if constexpr (kPerLane) target = sums.position(column);
                const V gx = math::backward<variant, VecOps<T>, Deg>(
                    load_lanes(xs + i, lanes), load_lanes(gs + i, lanes), c.a(), c.b(), degrees,
                    target, target + degrees.m + 1, c.factors(), kPlain);
                store_lanes(gx, gxs + i, lanes);
              });
            });
            storage.store(gxs, count, args.grad_x, offset);
            if constexpr (!kPerLane) sums.flush(acc);
          }
          sums.flush_positions(row - tile.row_begin + 1, row + 1 == tile.row_end);
        }
      });
    });
  }

  sums.write_partials(layout, tile,
                      args.partials + index * layout.groups_per_tile * count_coefficients);
}

// The kernel table's entries, one per storage dtype; the tile kernels are
// compiled once per compute type.
template <class scalar_t, bool kNoisy = false>
void forward_entry(const ForwardArgs& args, int64_t tile) {
  using T = opmath_t<scalar_t>;
  const BlockStorage<T>& storage = block_storage<scalar_t>();
  switch (args.problem.variant) {
    case Variant::safe: return forward_tile<Variant::safe, T, kNoisy>(args, storage, tile);
    case Variant::abs_sum: return forward_tile<Variant::abs_sum, T, kNoisy>(args, storage, tile);
    case Variant::plain: return forward_tile<Variant::plain, T, kNoisy>(args, storage, tile);
  }
}

template <class scalar_t, bool kNoisy = false>
void backward_entry(const BackwardArgs& args, int64_t tile) {
  using T = opmath_t<scalar_t>;
  const BlockStorage<T>& storage = block_storage<scalar_t>();
  switch (args.problem.variant) {
    case Variant::safe: return backward_tile<Variant::safe, T, kNoisy>(args, storage, tile);
    case Variant::abs_sum:
      return backward_tile<Variant::abs_sum, T, kNoisy>(args, storage, tile);
    case Variant::plain: return backward_tile<Variant::plain, T, kNoisy>(args, storage, tile);
  }
}

}  // namespace

const KernelTable& kernels() {
  // Indexed by DType: float32, float64, float16, bfloat16.
  static const KernelTable table{
      {forward_entry<float>, forward_entry<double>, forward_entry<c10::Half>,
       forward_entry<c10::BFloat16>},
      {backward_entry<float>, backward_entry<double>, backward_entry<c10::Half>,
       backward_entry<c10::BFloat16>},
      {forward_entry<float, true>, forward_entry<double, true>,
       forward_entry<c10::Half, true>, forward_entry<c10::BFloat16, true>},
      {backward_entry<float, true>, backward_entry<double, true>,
       backward_entry<c10::Half, true>, backward_entry<c10::BFloat16, true>},
      {double_backward_kernel(DType::float32), double_backward_kernel(DType::float64),
       double_backward_kernel(DType::float16), double_backward_kernel(DType::bfloat16)},
  };
  return table;
}

}  // namespace CPU_CAPABILITY
}  // namespace cpu
}  // namespace pau
