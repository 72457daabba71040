// Runs the PWLU CUDA kernels of pwlu_kernels.cuh on the CPU (emulator.h) and
// checks them against pwlu_math.h evaluated on the host:
//  * every output element written exactly where it belongs (guard zones),
//  * F(x) and dL/dx bitwise equal to the host evaluation in the compute type
//    (the same functions, the same compiler here),
//  * the parameter gradients (points, bounds, slopes) within a tolerance of
//    the float64 sum of the per-element terms,
//  * the parameter gradients bitwise identical for other grid sizes and for
//    misaligned (scalar-path) buffers,
// over broadcast and per-lane tiles, the per-lane fallback to broadcast tiles
// for large N, histogram copies shared by several warps (large N), N from 1
// to 4096, every dtype, inputs on breakpoints, on the bounds, outside them,
// infinite and NaN, and a group with unusable bounds (NaN outputs). The group
// tables come from the device table kernel and are checked bit for bit
// against the host's construction. .ci/cuda_compile_and_emulate.sh builds and runs it:
//   g++ -std=c++17 -O2 -I<cuda>/include tests/cuda_emulation/pwlu_kernels_check.cpp
#include "emulator.h"  // first: defines the emulated CUDA built-ins

#include "../../cuda/pwlu_kernels.cuh"

namespace {

using namespace emu;  // the emulated launch and the checks' helpers

using pau::cuda::Plan;
using pau::cuda::detail::PwluKernelArgs;
namespace pwlu = pau::pwlu;

struct Case {
  int64_t rows;
  int64_t groups;
  int64_t run;
  int intervals;
  double x_scale;
  bool specials;       // breakpoints, bounds, +-inf and NaN among the inputs
  int invalid_group;   // a group with B_L == B_R (-1: none): NaN outputs and gradients
};

bool same_value(double a, double b) { return a == b || (std::isnan(a) && std::isnan(b)); }

template <class S>
struct Runner {
  using T = pau::cuda::detail::compute_t<S>;

  const Case& c;
  int64_t numel;
  int N;
  int K;
  int64_t group_run;
  Plan plan;
  using P = std::conditional_t<std::is_same_v<T, double>, double, float>;
  // The group tables (pwlu_kernels.h) and where their parts start.
  std::vector<T> tables;
  const T* points = nullptr;
  const T* steps = nullptr;
  const T* params = nullptr;
  std::vector<S> x, g;

  explicit Runner(const Case& cs) : c(cs) {
    numel = c.rows * c.groups * c.run;
    N = c.intervals;
    K = pau::cuda::pwlu_gradient_entries(N);
    group_run = c.groups == 1 ? numel : c.run;
    const int row = N + 1;
    // Parameters as a model holds them: float64 for float64 x, else float32.
    std::vector<P> y(static_cast<size_t>(c.groups * row)), bounds(static_cast<size_t>(2 * c.groups));
    std::vector<P> slopes(bounds.size());
    std::vector<double> left(static_cast<size_t>(c.groups)), right(left.size());
    for (int64_t gi = 0; gi < c.groups; ++gi) {
      for (int j = 0; j <= N; ++j) y[gi * row + j] = static_cast<P>(uniform(-1.0, 1.0));
      left[gi] = static_cast<P>(uniform(-2.0, -0.5));
      right[gi] = gi == c.invalid_group ? left[gi] : static_cast<P>(uniform(0.5, 2.0));
      bounds[2 * gi] = static_cast<P>(left[gi]);
      bounds[2 * gi + 1] = static_cast<P>(right[gi]);
      // Group 1 has flat outer pieces: infinite inputs must give the end points.
      slopes[2 * gi] = static_cast<P>(gi == 1 ? 0.0 : uniform(-1.0, 1.0));
      slopes[2 * gi + 1] = static_cast<P>(gi == 1 ? 0.0 : uniform(-1.0, 1.0));
    }
    // The tables as the CUDA glue gets them (the device kernel), checked
    // against the host's construction (cpp/ops/pwlu.cpp) bit for bit.
    const int64_t table_size = pau::cuda::pwlu_table_elements(c.groups, N);
    Guarded<T> device_tables(table_size, 0, static_cast<T>(NAN));
    {
      const P* py = y.data();
      const P* pb = bounds.data();
      const P* ps = slopes.data();
      T* out = device_tables.data();
      const int64_t groups = c.groups;
      const int n = N;
      launch([&](int) { pau::cuda::detail::pwlu_build_tables<P, T>(py, pb, ps, groups, n, out); },
             3, 64, 0, 0);
    }
    if (!device_tables.guards_intact()) fail(label() + ": table kernel wrote outside its buffer");
    tables.assign(device_tables.data(), device_tables.data() + table_size);
    std::vector<T> host(static_cast<size_t>(table_size));
    T* host_steps = host.data() + c.groups * row;
    T* host_params = host.data() + 2 * c.groups * row;
    for (int64_t gi = 0; gi < c.groups; ++gi) {
      for (int j = 0; j <= N; ++j) {
        pwlu::table_entry(y.data(), bounds.data(), slopes.data(), gi, N, j, host.data(),
                          host_steps, host_params);
      }
    }
    for (int64_t i = 0; i < table_size; ++i) {
      const int64_t params_begin = 2 * c.groups * row;
      const bool invalid = i >= params_begin && (i - params_begin) / pwlu::kParams == c.invalid_group;
      const bool ok = invalid ? std::isnan(static_cast<double>(tables[i]))
                              : same_bits(tables[i], host[i]);
      if (!ok) {
        fail(label() + ": device-built table entry " + std::to_string(i) + " differs");
        break;
      }
    }
    points = tables.data();
    steps = points + c.groups * row;
    params = steps + c.groups * row;
    x.resize(static_cast<size_t>(numel));
    g.resize(static_cast<size_t>(numel));
    for (int64_t o = 0; o < numel; ++o) {
      const int64_t gi = (o / group_run) % c.groups;
      double v = uniform(-c.x_scale, c.x_scale);
      if (c.specials) {
        const double d = (right[gi] - left[gi]) / N;
        switch (o % 9) {
          case 0: v = left[gi] + d * static_cast<double>(o % (N + 1)); break;  // breakpoints
          case 1: v = left[gi]; break;
          case 2: v = right[gi]; break;
          case 3: v = o % 2 ? INFINITY : -INFINITY; break;
          case 4: v = NAN; break;
          default: break;
        }
      }
      x[o] = from_double<S>(v);
      g[o] = from_double<S>(uniform(-1.0, 1.0));
    }
    plan = pau::cuda::make_pwlu_plan(numel, c.groups, group_run, N, dtype_of<S>());
  }

  std::string label() const {
    char buffer[256];
    std::snprintf(buffer, sizeof(buffer),
                  "PWLU %s N=%d rows=%lld G=%lld R=%lld%s [%s L=%d, %d histogram copies]",
                  name_of<S>(), N, static_cast<long long>(c.rows),
                  static_cast<long long>(c.groups), static_cast<long long>(c.run),
                  c.specials ? " specials" : "", plan.per_lane ? "per-lane" : "broadcast",
                  plan.lanes, copies());
    return buffer;
  }

  int copies() const {
    return pau::cuda::pwlu_histogram_copies(plan, N, static_cast<int>(sizeof(T)));
  }

  struct Outputs {
    std::vector<S> y, grad_x;
    std::vector<double> gradients;  // (G, K)
  };

  // One forward and one backward with `max_blocks` blocks at most and the
  // data `offset` elements past a 64-byte boundary.
  Outputs run(unsigned int max_blocks, int offset) {
    const S poison = from_double<S>(std::nan(""));
    Guarded<S> xb(numel, offset, poison), gb(numel, offset, poison);
    Guarded<S> yb(numel, offset, poison), gxb(numel, offset, poison);
    std::copy(x.begin(), x.end(), xb.data());
    std::copy(g.begin(), g.end(), gb.data());
    const unsigned int grid =
        static_cast<unsigned int>(std::min<int64_t>(plan.tiles(), max_blocks));
    const unsigned int threads = plan.per_lane
                                     ? static_cast<unsigned int>(pau::cuda::pwlu_threads(plan))
                                     : static_cast<unsigned int>(pau::cuda::kThreads);
    PwluKernelArgs args{};
    args.plan = plan;
    args.intervals = N;
    args.histogram_copies = copies();
    args.points = points;
    args.steps = steps;
    args.params = params;

    namespace d = pau::cuda::detail;
    PwluKernelArgs fa = args;
    fa.x = xb.data();
    fa.out = yb.data();
    fa.vector = plan.vector_layout && pau::cuda::items_aligned(plan, {fa.x, fa.out});
    launch(plan.per_lane ? d::pwlu_forward_per_lane<S> : d::pwlu_forward_broadcast<S>, grid,
           threads, 0, fa);

    Guarded<double> workspace(plan.workspace_elements(), 0, std::nan(""));
    PwluKernelArgs ba = args;
    ba.grad = gb.data();
    ba.x = xb.data();
    ba.out = gxb.data();
    ba.workspace = workspace.data();
    ba.vector = plan.vector_layout && pau::cuda::items_aligned(plan, {ba.grad, ba.x, ba.out});
    const auto shared = static_cast<size_t>(
        pau::cuda::pwlu_backward_shared_bytes(plan, N, static_cast<int>(sizeof(T))));
    launch(plan.per_lane ? d::pwlu_backward_per_lane<S> : d::pwlu_backward_broadcast<S>, grid,
           threads, shared, ba);

    Guarded<double> gradients(c.groups * K, 0, std::nan(""));
    const unsigned int reduce_grid = static_cast<unsigned int>(std::min<int64_t>(c.groups * K, 7));
    const double* ws = workspace.data();
    double* out_gradients = gradients.data();
    launch([&](const PwluKernelArgs&) { d::pwlu_reduce_partials(plan, K, ws, out_gradients); },
           reduce_grid, pau::cuda::kReduceThreads, 0, ba);

    if (!xb.guards_intact() || !gb.guards_intact() || !yb.guards_intact() ||
        !gxb.guards_intact() || !workspace.guards_intact() || !gradients.guards_intact()) {
      fail(label() + ": a kernel wrote outside its buffers");
    }
    Outputs out;
    out.y.assign(yb.data(), yb.data() + numel);
    out.grad_x.assign(gxb.data(), gxb.data() + numel);
    out.gradients.assign(gradients.data(), gradients.data() + c.groups * K);
    return out;
  }

  void check() {
    // Gradient sums: the kernels add the per-element terms in T per histogram
    // copy (or thread) and tile, then in double.
    const double sum_tol = std::is_same_v<T, double> ? 1e-12 : 2e-5;
    const Outputs first = run(1u << 30, 0);
    ++checks;

    std::vector<double> want(static_cast<size_t>(c.groups * K), 0.0);
    std::vector<double> scale(want.size(), 0.0);
    int bad_values = 0;
    const int row = N + 1;
    for (int64_t o = 0; o < numel; ++o) {
      const int64_t gi = (o / group_run) % c.groups;
      const pwlu::Params<T> p = pwlu::unpack_params<T>(&params[gi * pwlu::kParams], N);
      const pwlu::ScalarTables<T> group_tables{points, steps, gi * row};
      const T xv = pau::cuda::detail::Element<S>::to_compute(x[o]);
      const T gv = pau::cuda::detail::Element<S>::to_compute(g[o]);
      const T y = pwlu::forward<pwlu::ScalarOps<T>>(xv, p, group_tables);
      T acc[pwlu::kExtras] = {};
      pwlu::PointGradient<T, int64_t> point;
      const T gx = pwlu::backward<pwlu::ScalarOps<T>>(xv, gv, p, group_tables, acc, &point);
      const double want_y = to_double(from_double<S>(static_cast<double>(y)));
      const double want_gx = to_double(from_double<S>(static_cast<double>(gx)));
      if (!same_value(to_double(first.y[o]), want_y) ||
          !same_value(to_double(first.grad_x[o]), want_gx)) {
        if (bad_values++ < 3) {
          std::printf("  element %lld (x %.10g): y %.10g want %.10g, grad_x %.10g want %.10g\n",
                      static_cast<long long>(o), static_cast<double>(xv),
                      to_double(first.y[o]), want_y, to_double(first.grad_x[o]), want_gx);
        }
      }
      double* w = &want[gi * K];
      double* s = &scale[gi * K];
      const int64_t k = point.index - gi * row;
      w[k] += point.lower;
      s[k] += std::fabs(static_cast<double>(point.lower));
      w[k + 1] += point.upper;
      s[k + 1] += std::fabs(static_cast<double>(point.upper));
      for (int e = 0; e < pwlu::kExtras; ++e) {
        w[row + e] += acc[e];
        s[row + e] += std::fabs(static_cast<double>(acc[e]));
      }
    }
    if (bad_values > 0) fail(label() + ": forward/grad_x values");
    // A group with unusable bounds: every output NaN (not only by agreement
    // with the reference, which reads the same NaN tables).
    for (int64_t o = 0; o < numel; ++o) {
      if ((o / group_run) % c.groups == c.invalid_group &&
          !(std::isnan(to_double(first.y[o])) && std::isnan(to_double(first.grad_x[o])))) {
        fail(label() + ": an output of the group with B_L == B_R is not NaN");
        break;
      }
    }
    for (size_t i = 0; i < want.size(); ++i) {
      const double got = first.gradients[i];
      const bool ok = std::isfinite(want[i])
                          ? std::fabs(got - want[i]) <= sum_tol * scale[i] + 1e-300
                          : same_value(got, want[i]);
      if (!ok) {
        std::printf("  gradient[group %zu, entry %zu]: %.12g want %.12g (sum |terms| %.3g)\n",
                    i / K, i % K, got, want[i], scale[i]);
        fail(label() + ": parameter gradients");
        break;
      }
    }

    // Bitwise: other grid sizes and misaligned data (scalar loads) give the
    // same results.
    const std::pair<unsigned int, int> variants[] = {{1u, 1}, {3u, 0}, {2u, 3}};
    for (const auto& [blocks, offset] : variants) {
      const Outputs again = run(blocks, offset);
      bool same = true;
      for (size_t i = 0; i < again.gradients.size() && same; ++i) {
        same = same_bits(again.gradients[i], first.gradients[i]);
      }
      for (int64_t o = 0; o < numel && same; ++o) {
        same = same_bits(again.y[o], first.y[o]) && same_bits(again.grad_x[o], first.grad_x[o]);
      }
      if (!same) {
        fail(label() + ": results differ with " + std::to_string(blocks) + " blocks, offset " +
             std::to_string(offset));
      }
    }
  }
};

template <class S>
void run_dtype(const Case& c) {
  if (!pau::cuda::pwlu_intervals_supported(c.intervals, dtype_of<S>())) return;
  Runner<S>(c).check();
}

void run_all(const Case& c) {
  run_dtype<float>(c);
  run_dtype<double>(c);
  run_dtype<__half>(c);
  run_dtype<__nv_bfloat16>(c);
}

}  // namespace

int main(int argc, char** argv) {
  // Optional: indices of the cases to run (default: all).
  std::vector<int> only;
  for (int i = 1; i < argc; ++i) only.push_back(std::atoi(argv[i]));
  // rows, G, R, N, |x| scale, specials
  const Case cases[] = {
      // G = 1: one run of numel elements; tails of every length.
      {1, 1, 1, 16, 3.0, false, -1},
      {1, 1, 7, 16, 3.0, false, -1},
      {1, 1, 129, 1, 3.0, false, -1},
      {1, 1, 4097, 16, 3.0, true, -1},
      {1, 1, 16384 + 24 + 3, 8, 3.0, false, -1},  // two tiles, odd tail
      {1, 1, 3000, 256, 2.5, true, -1},
      // Large N: one histogram copy shared by all warps (float64 N = 2047,
      // float32 N = 4096), in turns.
      {1, 1, 5000, 2047, 2.5, false, -1},
      {1, 1, 5000, 4096, 2.5, false, -1},
      // Broadcast tiles with several rows: R a multiple of every vector width,
      // R not (scalar items), R longer than a tile.
      {5, 4, 64, 16, 3.0, true, 2},
      {3, 3, 100, 5, 3.0, false, -1},
      {2, 2, 16384 + 40, 8, 3.0, false, -1},
      // Large |x|: the outer pieces.
      {2, 2, 96, 16, 1e4, false, -1},
      // Per-lane tiles: channels-last per channel, several column tiles,
      // runs that are not a divisor of the item width.
      {70, 48, 1, 16, 3.0, true, 5},
      {40, 300, 1, 4, 3.0, false, -1},
      {9, 100, 3, 16, 3.0, false, -1},
      {10, 6, 35, 8, 3.0, false, -1},
      {600, 5, 2, 1, 3.0, false, -1},
      {20, 40, 1, 256, 2.5, false, -1},
      // Per-lane runs with a histogram too large for the fewest groups a
      // per-lane tile can hold: broadcast tiles instead.
      {30, 8, 1, 4096, 2.5, false, -1},
  };
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  int index = -1;
  for (const Case& c : cases) {
    ++index;
    if (!only.empty() && std::find(only.begin(), only.end(), index) == only.end()) continue;
    const int before = failures;
    run_all(c);
    std::printf("%s rows=%lld G=%lld R=%lld N=%d\n", failures == before ? "ok  " : "FAIL",
                static_cast<long long>(c.rows), static_cast<long long>(c.groups),
                static_cast<long long>(c.run), c.intervals);
  }
  std::printf("PWLU: %d configurations checked, %d failures\n", checks, failures);
  return failures == 0 ? 0 : 1;
}
