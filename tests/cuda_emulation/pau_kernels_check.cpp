// Runs the CUDA kernels of pau_kernels.cuh (PAU, and RPAU with the counter
// hash of counter_rng.h) on the CPU, one fiber per CUDA thread, and checks
// them against a float64 evaluation of pau_math.h: every
// output element written exactly where it belongs (guard zones around every
// buffer), forward, grad_x and the coefficient gradients within tolerance,
// and the coefficient gradients bitwise identical for other grid sizes and
// for misaligned (scalar-path) buffers.
//
// It checks what a GPU run would otherwise be the first to check: the tile
// geometry, the per-thread item mapping, the fixed- and run-time-degree
// paths, the per-lane and broadcast reductions and the final per-group
// reduction (emulator.h says what the emulation cannot see).
// .ci/cuda_compile_and_emulate.sh builds and runs it:
//   g++ -std=c++17 -O2 -I<cuda>/include tests/cuda_emulation/pau_kernels_check.cpp
#include "emulator.h"  // first: defines the emulated CUDA built-ins

#include "../../cuda/pau_kernels.cuh"

namespace {

using namespace emu;  // the emulated launch and the checks' helpers

using pau::cuda::DType;
using pau::cuda::Plan;
using pau::cuda::Problem;
using pau::cuda::detail::KernelArgs;
using pau::math::Variant;

const char* variant_name(Variant v) {
  return v == Variant::safe ? "safe" : v == Variant::abs_sum ? "abs_sum" : "plain";
}

struct Case {
  int64_t rows;
  int64_t groups;
  int64_t run;
  int m;
  int n;
  int zero_leading_group;  // a group whose leading coefficients are 0 (-1: none)
  double x_scale;
  bool coefficients_double;
};

// kNoisy: the RPAU kernels, checked against the float64 reference evaluated
// with the same counter-hash noise (counter_rng.h) per logical element index.
template <class S, Variant V, bool kNoisy>
struct Runner {
  using T = pau::cuda::detail::compute_t<S>;

  const Case& c;
  Problem problem;
  int64_t numel;
  int K;
  std::vector<double> num, den;  // (G, m + 1), (G, n) as double
  std::vector<float> num_f, den_f;
  // RPAU only: alpha as the kernels read it (float or double, broadcast by
  // strides), and alpha_gj as double for the reference.
  std::vector<double> alpha_double;
  std::vector<float> alpha_float;
  pau::rng::Stream stream{};
  std::vector<S> x, g;

  explicit Runner(const Case& cs) : c(cs) {
    numel = c.rows * c.groups * c.run;
    K = c.m + 1 + c.n;
    num.resize(static_cast<size_t>(c.groups * (c.m + 1)));
    den.resize(static_cast<size_t>(c.groups * c.n));
    for (int64_t gi = 0; gi < c.groups; ++gi) {
      for (int j = 0; j <= c.m; ++j) {
        num[gi * (c.m + 1) + j] = uniform(-1.0, 1.0) / (1 + j);
      }
      for (int k = 0; k < c.n; ++k) {
        den[gi * c.n + k] = uniform(-1.0, 1.0) / (1 + k) * (V == Variant::plain ? 0.02 : 1.0);
      }
      if (gi == c.zero_leading_group) {
        num[gi * (c.m + 1) + c.m] = 0.0;
        if (c.n > 0) den[gi * c.n + c.n - 1] = 0.0;
      }
    }
    if (!c.coefficients_double) {
      // The operator would get float coefficients: the reference uses them too.
      for (auto& v : num) v = static_cast<float>(v);
      for (auto& v : den) v = static_cast<float>(v);
    }
    num_f.assign(num.begin(), num.end());
    den_f.assign(den.begin(), den.end());
    x.resize(static_cast<size_t>(numel));
    g.resize(static_cast<size_t>(numel));
    for (int64_t i = 0; i < numel; ++i) {
      x[i] = from_double<S>(uniform(-c.x_scale, c.x_scale));
      g[i] = from_double<S>(uniform(-1.0, 1.0));
    }
    problem.dtype = dtype_of<S>();
    problem.variant = V;
    problem.m = c.m;
    problem.n = c.n;
    problem.coefficients_double = c.coefficients_double;
    problem.plan = plan_of(kNoisy);
    if (kNoisy) {
      // alpha up to 0.4: the noise moves every value far beyond the
      // tolerances, so a wrong element index or table shows. With float64
      // coefficients a double (G, K) table; with float ones a float alpha per
      // coefficient (K), or per group (G, 1) for an odd G: both broadcasts.
      auto& a = problem.alpha;
      if (c.coefficients_double) {
        alpha_double.resize(static_cast<size_t>(c.groups * K));
        for (double& v : alpha_double) v = uniform(0.0, 0.4);
        a.values = alpha_double.data();
        a.is_double = true;
        a.group_stride = K;
        a.coefficient_stride = 1;
      } else {
        const bool per_group = c.groups % 2 == 1;
        alpha_float.resize(static_cast<size_t>(per_group ? c.groups : K));
        for (float& v : alpha_float) v = static_cast<float>(uniform(0.0, 0.4));
        a.values = alpha_float.data();
        a.group_stride = per_group ? 1 : 0;
        a.coefficient_stride = per_group ? 0 : 1;
      }
      const auto seed = static_cast<uint64_t>(uniform(0.0, 1.0) * 9007199254740992.0);
      // An offset past 2^32 elements exercises the high index word of the key.
      stream = pau::rng::make_stream(seed, (uint64_t(1) << 32) + 12345, K);
      problem.stream = stream;
    }
  }

  // Coefficient gradients: sums accumulated in the compute type per thread.
  static constexpr double kSumTolerance = std::is_same_v<S, double> ? 1e-12 : 2e-5;

  // Elements per group run: one group covers the whole tensor.
  int64_t group_run() const { return c.groups == 1 ? numel : c.run; }

  Plan plan_of(bool noisy) const {
    return pau::cuda::make_problem_plan(numel, c.groups, group_run(), c.m, c.n, problem.dtype,
                                        noisy);
  }

  // alpha of group g, coefficient j, as the kernels read it.
  double alpha(int64_t g, int j) const {
    const auto& a = problem.alpha;
    const int64_t at = g * a.group_stride + j * a.coefficient_stride;
    return a.is_double ? alpha_double[at] : static_cast<double>(alpha_float[at]);
  }

  std::string label() const {
    char buffer[256];
    std::snprintf(buffer, sizeof(buffer),
                  "%s%s %s m=%d n=%d rows=%lld G=%lld R=%lld zero_group=%d coef=%s [%s L=%d]",
                  kNoisy ? "RPAU " : "", name_of<S>(), variant_name(V), c.m, c.n, static_cast<long long>(c.rows),
                  static_cast<long long>(c.groups), static_cast<long long>(c.run),
                  c.zero_leading_group, c.coefficients_double ? "f64" : "f32",
                  problem.plan.per_lane ? "per-lane" : "broadcast", problem.plan.lanes);
    return buffer;
  }

  pau::math::Degrees degrees(int64_t group) const {
    pau::math::Degrees d;
    d.m = c.m;
    d.n = c.n;
    d.m_eff = std::max(0, pau::math::effective_degree(&num[group * (c.m + 1)], c.m + 1, 0));
    d.n_eff = pau::math::effective_degree(c.n ? &den[group * c.n] : nullptr, c.n, 0) + 1;
    return d;
  }

  KernelArgs args(const Plan& plan, const void* coefficients_num,
                  const void* coefficients_den) const {
    KernelArgs a{};
    a.plan = plan;
    a.m = c.m;
    a.n = c.n;
    a.coefficients_double = c.coefficients_double;
    a.numerator = coefficients_num;
    a.denominator = coefficients_den;
    a.alpha = problem.alpha;
    a.stream = problem.stream;
    return a;
  }

  struct Outputs {
    std::vector<S> y, grad_x;
    std::vector<double> grad_num, grad_den;
  };

  // One forward and one backward with `max_blocks` blocks at most and the
  // data `offset` elements past a 64-byte boundary. kWithNoise false on an
  // RPAU runner: PAU's kernels, with PAU's plan, on the same data.
  template <bool kWithNoise = kNoisy>
  Outputs run(unsigned int max_blocks, int offset) {
    const Plan plan = plan_of(kWithNoise);
    const S poison = from_double<S>(std::nan(""));
    Guarded<S> xb(numel, offset, poison), gb(numel, offset, poison);
    Guarded<S> yb(numel, offset, poison), gxb(numel, offset, poison);
    std::copy(x.begin(), x.end(), xb.data());
    std::copy(g.begin(), g.end(), gb.data());
    const void* cn = c.coefficients_double ? static_cast<const void*>(num.data())
                                           : static_cast<const void*>(num_f.data());
    const void* cd = c.coefficients_double ? static_cast<const void*>(den.data())
                                           : static_cast<const void*>(den_f.data());
    const unsigned int grid =
        static_cast<unsigned int>(std::min<int64_t>(plan.tiles(), max_blocks));
    const int item_bytes = plan.lanes * plan.element_size;
    auto aligned = [&](const void* p) {
      return reinterpret_cast<std::uintptr_t>(p) % static_cast<std::uintptr_t>(item_bytes) == 0;
    };
    constexpr int FM = 5, FN = 4;
    const bool fixed = c.m == FM && c.n == FN;

    KernelArgs fa = args(plan, cn, cd);
    fa.x = xb.data();
    fa.out = yb.data();
    fa.vector = plan.vector_layout && aligned(fa.x) && aligned(fa.out);
    namespace d = pau::cuda::detail;
    if (plan.per_lane) {
      const size_t shared = static_cast<size_t>(plan.shared_bytes(sizeof(T), false));
      launch(fixed ? d::forward_per_lane<V, S, FM, FN, kWithNoise>
                   : d::forward_per_lane<V, S, -1, -1, kWithNoise>,
             grid, plan.threads, shared, fa);
    } else {
      launch(fixed ? d::forward_broadcast<V, S, FM, FN, kWithNoise>
                   : d::forward_broadcast<V, S, -1, -1, kWithNoise>,
             grid, pau::cuda::kThreads, 0, fa);
    }

    Guarded<double> workspace(plan.workspace_elements(), 0, std::nan(""));
    KernelArgs ba = args(plan, cn, cd);
    ba.grad = gb.data();
    ba.x = xb.data();
    ba.out = gxb.data();
    ba.workspace = workspace.data();
    ba.vector = plan.vector_layout && aligned(ba.grad) && aligned(ba.x) && aligned(ba.out);
    if (plan.per_lane) {
      const size_t shared = static_cast<size_t>(plan.shared_bytes(sizeof(T), true));
      launch(fixed ? d::backward_per_lane<V, S, FM, FN, kWithNoise>
                   : d::backward_per_lane<V, S, -1, -1, kWithNoise>,
             grid, plan.threads, shared, ba);
    } else {
      launch(fixed ? d::backward_broadcast<V, S, FM, FN, kWithNoise>
                   : d::backward_broadcast<V, S, -1, -1, kWithNoise>,
             grid, pau::cuda::kThreads, 0, ba);
    }
    Outputs out;
    const unsigned int reduce_grid = static_cast<unsigned int>(std::min<int64_t>(plan.groups, 3));
    if (c.coefficients_double) {
      Guarded<double> gn(c.groups * (c.m + 1), 0, std::nan(""));
      Guarded<double> gd(c.groups * c.n, 0, std::nan(""));
      double* gn_data = gn.data();
      double* gd_data = gd.data();
      const double* ws = workspace.data();
      launch([&](const KernelArgs&) { d::reduce_partials<double>(plan, c.m, c.n, ws, gn_data, gd_data); },
             reduce_grid, pau::cuda::kReduceThreads, 0, ba);
      out.grad_num.assign(gn.data(), gn.data() + c.groups * (c.m + 1));
      out.grad_den.assign(gd.data(), gd.data() + c.groups * c.n);
      if (!gn.guards_intact() || !gd.guards_intact()) fail(label() + ": coefficient grad guards");
    } else {
      Guarded<float> gn(c.groups * (c.m + 1), 0, std::nanf(""));
      Guarded<float> gd(c.groups * c.n, 0, std::nanf(""));
      float* gn_data = gn.data();
      float* gd_data = gd.data();
      const double* ws = workspace.data();
      launch([&](const KernelArgs&) { d::reduce_partials<float>(plan, c.m, c.n, ws, gn_data, gd_data); },
             reduce_grid, pau::cuda::kReduceThreads, 0, ba);
      out.grad_num.assign(gn.data(), gn.data() + c.groups * (c.m + 1));
      out.grad_den.assign(gd.data(), gd.data() + c.groups * c.n);
      if (!gn.guards_intact() || !gd.guards_intact()) fail(label() + ": coefficient grad guards");
    }
    if (!xb.guards_intact() || !gb.guards_intact() || !yb.guards_intact() ||
        !gxb.guards_intact() || !workspace.guards_intact()) {
      fail(label() + ": a kernel wrote outside its buffers");
    }
    out.y.assign(yb.data(), yb.data() + numel);
    out.grad_x.assign(gxb.data(), gxb.data() + numel);
    return out;
  }

  void check() {
    // Per element, relative to 1 + |value|: float keeps ~1e-6 but loses a
    // little more where P'(x) - F Q'(x) cancels; half types may round the
    // stored result one unit in the last place the other way.
    const double tol = std::is_same_v<S, double>           ? 1e-12
                       : std::is_same_v<S, float>          ? 3e-5
                       : std::is_same_v<S, __half>         ? 2e-3
                                                           : 1.6e-2;
    const Outputs first = run(1u << 30, 0);
    ++checks;

    // float64 reference of the same per-element math.
    std::vector<double> ref_num(num.size(), 0.0), ref_den(den.size(), 0.0);
    std::vector<double> abs_num(num.size(), 0.0), abs_den(den.size(), 0.0);
    int bad_values = 0;
    for (int64_t o = 0; o < numel; ++o) {
      const int64_t group = (o / group_run()) % c.groups;
      const double* a = &num[group * (c.m + 1)];
      const double* b = c.n ? &den[group * c.n] : nullptr;
      // RPAU: c' = c * f, f_j = base_j + scale_j * k_oj, o the logical index.
      double pa[pau::math::kMaxTerms] = {};
      double pb[pau::math::kMaxTerms] = {};
      double factor[2 * pau::math::kMaxTerms] = {};
      if (kNoisy) {
        for (int j = 0; j < K; ++j) {
          const double u = pau::rng::uniform(stream, static_cast<uint64_t>(o), j);
          const double k = u / pau::rng::kUnit - 0.5;  // the level k, exactly
          const double alpha_j = alpha(group, j);
          factor[j] = pau::rng::factor_base(alpha_j) + pau::rng::factor_scale(alpha_j) * k;
          if (j <= c.m) {
            pa[j] = a[j] * factor[j];
          } else {
            pb[j - c.m - 1] = b[j - c.m - 1] * factor[j];
          }
        }
        a = pa;
        b = pb;
      }
      const pau::math::Degrees deg = degrees(group);
      const double xv = to_double(x[o]);
      const double gv = to_double(g[o]);
      const double y = pau::math::forward<V, pau::math::ScalarOps<double>>(xv, a, b, deg);
      double ga[pau::math::kMaxTerms] = {};
      double gb[pau::math::kMaxTerms] = {};
      const double gx = pau::math::backward<V, pau::math::ScalarOps<double>>(
          xv, gv, a, b, deg, ga, gb, kNoisy ? factor : nullptr);
      for (int j = 0; j <= c.m; ++j) {
        ref_num[group * (c.m + 1) + j] += ga[j];
        abs_num[group * (c.m + 1) + j] += std::fabs(ga[j]);
      }
      for (int k = 0; k < c.n; ++k) {
        ref_den[group * c.n + k] += gb[k];
        abs_den[group * c.n + k] += std::fabs(gb[k]);
      }
      const double got_y = to_double(first.y[o]);
      const double got_gx = to_double(first.grad_x[o]);
      // Half types round the stored result: compare with its rounding.
      const double want_y = to_double(from_double<S>(y));
      const double want_gx = to_double(from_double<S>(gx));
      if (!(got_y == want_y || std::fabs(got_y - want_y) <= tol * (1.0 + std::fabs(want_y)))) {
        if (bad_values++ < 3) {
          std::printf("  element %lld: y %.10g want %.10g (x %.10g)\n",
                      static_cast<long long>(o), got_y, want_y, xv);
        }
      }
      if (!(got_gx == want_gx ||
            std::fabs(got_gx - want_gx) <= tol * (1.0 + std::fabs(want_gx)))) {
        if (bad_values++ < 3) {
          std::printf("  element %lld: grad_x %.10g want %.10g (x %.10g)\n",
                      static_cast<long long>(o), got_gx, want_gx, xv);
        }
      }
    }
    if (bad_values > 0) fail(label() + ": forward/grad_x values");
    auto check_sums = [&](const std::vector<double>& got, const std::vector<double>& want,
                          const std::vector<double>& scale, const char* what) {
      for (size_t i = 0; i < want.size(); ++i) {
        // Float coefficients get float gradients: one more rounding.
        const double rounding = c.coefficients_double ? 0.0 : 1.2e-7 * std::fabs(want[i]);
        if (!(std::fabs(got[i] - want[i]) <= kSumTolerance * scale[i] + rounding + 1e-300)) {
          std::printf("  %s[%zu]: %.12g want %.12g (sum |terms| %.3g)\n", what, i, got[i],
                      want[i], scale[i]);
          fail(label() + ": " + what);
          return;
        }
      }
    };
    check_sums(first.grad_num, ref_num, abs_num, "grad_numerator");
    check_sums(first.grad_den, ref_den, abs_den, "grad_denominator");

    // Bitwise: other grid sizes and misaligned data (scalar loads) give the
    // same results.
    const std::pair<unsigned int, int> variants[] = {{1u, 1}, {3u, 0}, {2u, 3}};
    for (const auto& [blocks, offset] : variants) {
      const Outputs again = run(blocks, offset);
      bool same = again.grad_num == first.grad_num && again.grad_den == first.grad_den;
      for (int64_t o = 0; o < numel && same; ++o) {
        same = same_bits(again.y[o], first.y[o]) && same_bits(again.grad_x[o], first.grad_x[o]);
      }
      if (!same) {
        fail(label() + ": results differ with " + std::to_string(blocks) + " blocks, offset " +
             std::to_string(offset));
      }
    }
    if constexpr (kNoisy) check_alpha_edges(first);
  }

  // RPAU only, after check(): `usable` are the results with this runner's alpha.
  // alpha = 0: factors of exactly 1, so the outputs and grad_x are those of
  // PAU's kernels bit for bit, and so are the coefficient gradients when the
  // two plans tile alike (else within the sums' tolerance). An unusable alpha
  // in one coefficient of one group: all that group's outputs and gradients
  // are NaN, every other value is as with a usable alpha, bit for bit.
  void check_alpha_edges(const Outputs& usable) {
    const pau::cuda::Alpha saved = problem.alpha;
    std::vector<double> table(static_cast<size_t>(c.groups * K), 0.0);
    problem.alpha = {table.data(), true, K, 1};
    const Outputs zero = run<true>(1u << 30, 0);
    const Outputs pau = run<false>(1u << 30, 0);
    ++checks;
    bool same = true;
    for (int64_t o = 0; o < numel && same; ++o) {
      same = same_bits(zero.y[o], pau.y[o]) && same_bits(zero.grad_x[o], pau.grad_x[o]);
    }
    if (!same) fail(label() + ": alpha = 0 differs from PAU in y or grad_x");
    const Plan a = plan_of(true), b = plan_of(false);
    const bool alike = a.per_lane == b.per_lane && a.groups_per_tile == b.groups_per_tile &&
                       a.columns == b.columns && a.rows_per_tile == b.rows_per_tile &&
                       a.column_tiles == b.column_tiles && a.row_tiles == b.row_tiles &&
                       a.threads == b.threads && a.lanes == b.lanes;
    auto close = [&](const std::vector<double>& x, const std::vector<double>& y) {
      if (alike) return x == y;
      for (size_t i = 0; i < x.size(); ++i) {
        if (!(std::fabs(x[i] - y[i]) <= kSumTolerance * (1.0 + std::fabs(y[i])))) return false;
      }
      return true;
    };
    if (!close(zero.grad_num, pau.grad_num) || !close(zero.grad_den, pau.grad_den)) {
      fail(label() + ": alpha = 0 differs from PAU in the coefficient gradients" +
           (alike ? " (same tiling: bitwise expected)" : ""));
    }
    // The last group gets alpha 1.5 for its first coefficient, and (G > 2)
    // group 0 a NaN for its last one.
    problem.alpha = saved;
    for (int64_t g = 0; g < c.groups; ++g) {
      for (int j = 0; j < K; ++j) table[g * K + j] = alpha(g, j);
    }
    problem.alpha = {table.data(), true, K, 1};
    table[(c.groups - 1) * K] = 1.5;
    if (c.groups > 2) table[K - 1] = std::nan("");
    const auto bad = [&](int64_t g) { return g == c.groups - 1 || (c.groups > 2 && g == 0); };
    const Outputs mixed = run<true>(1u << 30, 0);
    bool ok = true;
    for (int64_t o = 0; o < numel && ok; ++o) {
      if (bad((o / group_run()) % c.groups)) {
        ok = std::isnan(to_double(mixed.y[o])) && std::isnan(to_double(mixed.grad_x[o]));
      } else {
        ok = same_bits(mixed.y[o], usable.y[o]) && same_bits(mixed.grad_x[o], usable.grad_x[o]);
      }
    }
    for (int64_t g = 0; g < c.groups && ok; ++g) {
      for (int j = 0; j <= c.m && ok; ++j) {
        const double got = mixed.grad_num[g * (c.m + 1) + j];
        ok = bad(g) ? std::isnan(got) : got == usable.grad_num[g * (c.m + 1) + j];
      }
      for (int k = 0; k < c.n && ok; ++k) {
        const double got = mixed.grad_den[g * c.n + k];
        ok = bad(g) ? std::isnan(got) : got == usable.grad_den[g * c.n + k];
      }
    }
    if (!ok) fail(label() + ": an unusable alpha is not confined to NaN in its own group");
    problem.alpha = saved;
  }
};

template <class S, bool kNoisy>
void run_dtype(const Case& c) {
  Runner<S, Variant::safe, kNoisy>(c).check();
  Runner<S, Variant::abs_sum, kNoisy>(c).check();
  Runner<S, Variant::plain, kNoisy>(c).check();
}

// RPAU runs in the two compute types only: its noise code does not depend on
// the storage type, and every dtype doubles this check's compile and run time.
template <bool kNoisy>
void run_all(const Case& c) {
  run_dtype<float, kNoisy>(c);
  run_dtype<double, kNoisy>(c);
  if constexpr (!kNoisy) {
    run_dtype<__half, kNoisy>(c);
    run_dtype<__nv_bfloat16, kNoisy>(c);
  }
}

}  // namespace

// PAU's kernels, or with -DPAU_EMULATION_RPAU=1 RPAU's: two programs that
// .ci/cuda_compile_and_emulate.sh builds and runs in parallel.
#if !defined(PAU_EMULATION_RPAU)
#define PAU_EMULATION_RPAU 0
#endif
constexpr bool kRpau = PAU_EMULATION_RPAU != 0;

int main(int argc, char** argv) {
  // Optional: indices of the cases to run (default: all).
  std::vector<int> only;
  for (int i = 1; i < argc; ++i) only.push_back(std::atoi(argv[i]));
  // rows, G, R, m, n, zero-leading group, |x| scale, float64 coefficients
  const Case cases[] = {
      // G = 1: one run of numel elements; tails of every length.
      {1, 1, 1, 5, 4, -1, 3.0, false},
      {1, 1, 7, 5, 4, -1, 3.0, false},
      {1, 1, 129, 5, 4, 0, 3.0, true},
      {1, 1, 4097, 5, 4, -1, 3.0, false},
      {1, 1, 16384 + 24 + 3, 5, 4, -1, 3.0, false},  // two tiles, odd tail
      {1, 1, 300, 3, 3, -1, 2.0, false},
      {1, 1, 200, 8, 7, -1, 1.5, true},
      {1, 1, 100, 16, 16, -1, 1.2, true},
      {1, 1, 50, 0, 0, -1, 3.0, false},
      // Broadcast tiles with several rows: R a multiple of every vector width,
      // R not (scalar items), R longer than a tile.
      {5, 4, 64, 5, 4, 2, 3.0, false},
      {3, 3, 100, 5, 4, -1, 3.0, true},
      {2, 2, 16384 + 40, 5, 4, -1, 3.0, false},
      {300, 2, 72, 3, 2, -1, 2.0, false},
      // Large |x| stays finite (checked against the float64 reference).
      {2, 2, 96, 5, 4, -1, 1e4, false},
      // Per-lane tiles: channels-last per channel, several column tiles,
      // runs that are not a divisor of the item width, zero leading terms.
      {70, 48, 1, 5, 4, 5, 3.0, false},
      {40, 300, 1, 5, 4, 7, 3.0, false},
      {9, 100, 3, 5, 4, -1, 3.0, true},
      {10, 6, 35, 5, 4, 1, 3.0, false},
      {600, 5, 2, 8, 7, -1, 1.5, false},
      {33, 7, 63, 3, 3, -1, 3.0, false},
  };
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  int index = -1;
  for (const Case& c : cases) {
    ++index;
    if (!only.empty() && std::find(only.begin(), only.end(), index) == only.end()) continue;
    const int before = failures;
    run_all<kRpau>(c);
    std::printf("%s rows=%lld G=%lld R=%lld m=%d n=%d\n", failures == before ? "ok  " : "FAIL",
                static_cast<long long>(c.rows), static_cast<long long>(c.groups),
                static_cast<long long>(c.run), c.m, c.n);
  }
  std::printf("%s: %d configurations checked, %d failures\n", kRpau ? "RPAU" : "PAU", checks,
              failures);
  return failures == 0 ? 0 : 1;
}
