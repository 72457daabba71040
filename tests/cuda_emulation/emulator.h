// Runs CUDA kernels on the CPU for pau_kernels_check.cpp (PAU, RPAU) and
// pwlu_kernels_check.cpp (PWLU): one fiber per CUDA thread, blocks one
// after another. Include it before any kernel header.
//
// This is not a GPU: it cannot see timing, the memory model, register limits
// or real vector loads. It runs the kernels' own code on their own geometry,
// so that index mapping, barriers, warp-wide operations and reductions are
// checked against float64 references without a GPU.
//
// The emulated built-ins: threadIdx/blockIdx/blockDim/gridDim; __syncthreads
// and __syncthreads_and (block barriers); __syncwarp, __shfl_sync,
// __shfl_down_sync, __any_sync and __match_any_sync (warp barriers that
// exchange one operand per lane); __ffs; __shared__ (function-local statics:
// blocks run one after another, so one copy is enough); the dynamic shared
// memory buffer (filled with NaN before each launch).
#pragma once

#define PAU_CUDA_EMULATION 1
#define __shared__ static
#define __launch_bounds__(...)

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <strings.h>
#include <ucontext.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <type_traits>
#include <vector>

#include "../../cuda/pau_kernels.h"  // DType

namespace emu {

// One block at a time; its CUDA threads are fibers on this OS thread. A fiber
// runs until it reaches a barrier or returns; when every fiber of the block
// waits at the barrier, all are released. Deterministic, and far cheaper than
// one OS thread per CUDA thread. On x86-64 a fiber switch is a few
// instructions (callee-saved registers and the stack pointer); elsewhere
// ucontext, whose swapcontext also makes a signal-mask system call.
void entry();

#if defined(__x86_64__)
extern "C" void pau_emu_switch(void** save_sp, void* load_sp);
asm(R"(
    .text
    .globl pau_emu_switch
    .type pau_emu_switch, @function
pau_emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size pau_emu_switch, .-pau_emu_switch
)");

struct Context {
  void* sp = nullptr;
};
Context scheduler;

// A fresh fiber "returns" into entry() with the stack aligned as after a call.
void prepare(Context& context, std::vector<char>& stack) {
  auto top = reinterpret_cast<std::uintptr_t>(stack.data() + stack.size()) & ~std::uintptr_t(15);
  void** sp = reinterpret_cast<void**>(top);
  *--sp = nullptr;                                  // entry()'s return address: never used
  *--sp = reinterpret_cast<void*>(&entry);          // popped by ret
  for (int i = 0; i < 6; ++i) *--sp = nullptr;      // rbp, rbx, r12-r15
  context.sp = sp;
}
void switch_to(Context& from, Context& to) { pau_emu_switch(&from.sp, to.sp); }
#else
struct Context {
  ucontext_t context;
};
Context scheduler;

void prepare(Context& context, std::vector<char>& stack) {
  getcontext(&context.context);
  context.context.uc_stack.ss_sp = stack.data();
  context.context.uc_stack.ss_size = stack.size();
  context.context.uc_link = &scheduler.context;
  makecontext(&context.context, entry, 0);
}
void switch_to(Context& from, Context& to) { swapcontext(&from.context, &to.context); }
#endif

// Where a fiber waits: at a block barrier (__syncthreads*) or at a warp-wide
// operation (__shfl*_sync, __any_sync, __match_any_sync, __syncwarp).
enum class Wait { none, block, warp };

struct Fiber {
  Context context;
  std::vector<char> stack;
  bool done = false;
  bool predicate = true;
  Wait wait = Wait::none;
  double warp_value = 0.0;  // this lane's operand of the warp-wide operation
};

std::vector<Fiber> fibers;
unsigned int current = 0;
bool barrier_result = true;
// Per warp: the lanes' operands of the last warp-wide operation, copied when
// the whole warp has arrived, so each lane reads them after it resumes (no
// lane can overwrite them before every lane of its warp has arrived again).
std::vector<std::vector<double>> warp_operands;
std::vector<double> dynamic_shared;  // doubles: 8-byte aligned
std::function<void()> body;          // the kernel call of the running block

// Waits until every thread of the block is here; returns the AND of the
// threads' predicates (__syncthreads_and).
bool barrier(bool predicate) {
  fibers[current].predicate = predicate;
  fibers[current].wait = Wait::block;
  switch_to(fibers[current].context, scheduler);
  return barrier_result;
}

// Waits until every thread of the warp is at a warp-wide operation; returns
// the operands of its lanes (lane l at index l).
const std::vector<double>& warp_exchange(double operand) {
  fibers[current].warp_value = operand;
  fibers[current].wait = Wait::warp;
  switch_to(fibers[current].context, scheduler);
  return warp_operands[current / 32];
}

void entry() {
  body();
  fibers[current].done = true;
  switch_to(fibers[current].context, scheduler);  // never resumed
  std::abort();
}

}  // namespace emu

uint3 threadIdx;
uint3 blockIdx;
dim3 blockDim;
dim3 gridDim;

void __syncthreads() { emu::barrier(true); }
int __syncthreads_and(int predicate) { return emu::barrier(predicate != 0) ? 1 : 0; }

// Warp-wide operations. The kernels only use full masks with whole warps.
inline unsigned int lane_id() { return threadIdx.x % 32; }
inline unsigned int warp_lanes() {
  const unsigned int first = threadIdx.x / 32 * 32;
  return blockDim.x - first < 32 ? blockDim.x - first : 32;
}
void __syncwarp(unsigned int = 0xffffffffu) { emu::warp_exchange(0.0); }
template <class T>
T __shfl_sync(unsigned int, T value, int source) {
  const auto& lanes = emu::warp_exchange(static_cast<double>(value));
  return static_cast<T>(lanes[static_cast<unsigned int>(source) % 32]);
}
template <class T>
T __shfl_down_sync(unsigned int, T value, int offset) {
  const auto& lanes = emu::warp_exchange(static_cast<double>(value));
  const unsigned int source = lane_id() + static_cast<unsigned int>(offset);
  return source < warp_lanes() ? static_cast<T>(lanes[source]) : value;
}
int __any_sync(unsigned int, int predicate) {
  const auto& lanes = emu::warp_exchange(predicate != 0 ? 1.0 : 0.0);
  for (unsigned int l = 0; l < warp_lanes(); ++l) {
    if (lanes[l] != 0.0) return 1;
  }
  return 0;
}
unsigned int __match_any_sync(unsigned int, unsigned int value) {
  const auto& lanes = emu::warp_exchange(static_cast<double>(value));
  unsigned int peers = 0;
  for (unsigned int l = 0; l < warp_lanes(); ++l) {
    if (lanes[l] == static_cast<double>(value)) peers |= 1u << l;
  }
  return peers;
}
int __ffs(int value) { return ::ffs(value); }

namespace pau {
namespace cuda {
namespace detail {
unsigned char* dynamic_shared_memory() {
  return reinterpret_cast<unsigned char*>(emu::dynamic_shared.data());
}
}  // namespace detail
}  // namespace cuda
}  // namespace pau

namespace emu {

// Runs kernel(args) on a grid of `grid` blocks of `threads` threads: the
// fibers of a block run until each waits at a barrier or a warp-wide
// operation (or returns); a warp whose every thread waits at a warp-wide
// operation is released, and when every thread of the block waits at a block
// barrier, the block is.
template <class Kernel, class Args>
void launch(const Kernel& kernel, unsigned int grid, unsigned int threads, size_t shared_bytes,
            const Args& args) {
  constexpr size_t kStack = 256 * 1024;
  fibers.resize(threads);
  for (auto& fiber : fibers) {
    if (fiber.stack.size() != kStack) fiber.stack.assign(kStack, 0);
  }
  const unsigned int warps = (threads + 31) / 32;
  warp_operands.assign(warps, std::vector<double>(32, 0.0));
  // Garbage, not zeros: the kernels must initialise what they read.
  dynamic_shared.assign(shared_bytes / sizeof(double) + 2, std::nan(""));
  body = [&] { kernel(args); };
  gridDim = dim3(grid);
  blockDim = dim3(threads);
  auto stop = [&](unsigned int b, const char* why) {
    std::printf("FAIL block %u: %s\n", b, why);
    std::exit(2);
  };
  for (unsigned int b = 0; b < grid; ++b) {
    blockIdx = make_uint3(b, 0, 0);
    for (auto& fiber : fibers) {
      prepare(fiber.context, fiber.stack);
      fiber.done = false;
      fiber.wait = Wait::none;
    }
    for (;;) {
      for (unsigned int t = 0; t < threads; ++t) {
        if (fibers[t].done || fibers[t].wait != Wait::none) continue;
        current = t;
        threadIdx = make_uint3(t, 0, 0);
        switch_to(scheduler, fibers[t].context);
      }
      unsigned int waiting = 0;
      unsigned int at_block = 0;
      bool all = true;
      for (const auto& fiber : fibers) {
        if (fiber.done) continue;
        ++waiting;
        if (fiber.wait == Wait::block) {
          ++at_block;
          all = all && fiber.predicate;
        }
      }
      if (waiting == 0) break;
      bool released = false;
      for (unsigned int w = 0; w < warps; ++w) {
        const unsigned int first = w * 32;
        const unsigned int last = std::min(threads, first + 32);
        unsigned int at_warp = 0;
        for (unsigned int t = first; t < last; ++t) at_warp += fibers[t].wait == Wait::warp;
        if (at_warp == 0) continue;
        // Every fiber that has not returned waits somewhere by now: lanes that
        // returned or wait at a block barrier never reach this warp-wide
        // operation, a hang or undefined behaviour on a GPU.
        if (at_warp != last - first) {
          stop(b, "lanes of a warp wait at a warp-wide operation the others never reach");
        }
        for (unsigned int t = first; t < last; ++t) {
          warp_operands[w][t - first] = fibers[t].warp_value;
          fibers[t].wait = Wait::none;
        }
        released = true;
      }
      if (released) continue;
      if (waiting != threads) {
        stop(b, "some threads returned while others wait at a barrier they never reach");
      }
      if (at_block != threads) stop(b, "threads wait at different kinds of barrier");
      barrier_result = all;
      for (auto& fiber : fibers) fiber.wait = Wait::none;
    }
  }
}

}  // namespace emu

namespace emu {

uint64_t rng_state = 0x9e3779b97f4a7c15ull;
double uniform(double lo, double hi) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return lo + (hi - lo) * static_cast<double>(rng_state >> 11) / 9007199254740992.0;
}

template <class S>
S from_double(double v) {
  if constexpr (std::is_same_v<S, __half>) {
    return __float2half_rn(static_cast<float>(v));
  } else if constexpr (std::is_same_v<S, __nv_bfloat16>) {
    return __float2bfloat16_rn(static_cast<float>(v));
  } else {
    return static_cast<S>(v);
  }
}

template <class S>
double to_double(S v) {
  if constexpr (std::is_same_v<S, __half>) {
    return __half2float(v);
  } else if constexpr (std::is_same_v<S, __nv_bfloat16>) {
    return __bfloat162float(v);
  } else {
    return static_cast<double>(v);
  }
}

template <class S>
bool same_bits(S a, S b) {
  return std::memcmp(&a, &b, sizeof(S)) == 0;
}

template <class S>
constexpr pau::cuda::DType dtype_of() {
  using pau::cuda::DType;
  if constexpr (std::is_same_v<S, float>) return DType::float32;
  if constexpr (std::is_same_v<S, double>) return DType::float64;
  if constexpr (std::is_same_v<S, __half>) return DType::float16;
  return DType::bfloat16;
}

template <class S>
const char* name_of() {
  if constexpr (std::is_same_v<S, float>) return "float32";
  if constexpr (std::is_same_v<S, double>) return "float64";
  if constexpr (std::is_same_v<S, __half>) return "float16";
  return "bfloat16";
}

// A buffer of n elements at `offset` elements past a 64-byte boundary, with
// guard elements on both sides.
template <class T>
class Guarded {
 public:
  Guarded(int64_t n, int offset, T fill) : n_(n), offset_(offset) {
    storage_.assign(static_cast<size_t>(n + 2 * kGuard + 64), fill);
    std::memset(static_cast<void*>(storage_.data()), 0x5A, storage_.size() * sizeof(T));
    begin_ = first_aligned() + kGuard + offset;
    for (int64_t i = 0; i < n; ++i) data()[i] = fill;
  }
  T* data() { return storage_.data() + begin_; }
  const T* data() const { return storage_.data() + begin_; }
  bool guards_intact() const {
    const unsigned char* bytes = reinterpret_cast<const unsigned char*>(storage_.data());
    const size_t lo = static_cast<size_t>(begin_) * sizeof(T);
    const size_t hi = static_cast<size_t>(begin_ + n_) * sizeof(T);
    for (size_t i = 0; i < lo; ++i) {
      if (bytes[i] != 0x5A) return false;
    }
    for (size_t i = hi; i < storage_.size() * sizeof(T); ++i) {
      if (bytes[i] != 0x5A) return false;
    }
    return true;
  }

 private:
  static constexpr int64_t kGuard = 32;
  int64_t first_aligned() const {
    const auto address = reinterpret_cast<std::uintptr_t>(storage_.data());
    const std::uintptr_t aligned = (address + 63) / 64 * 64;
    return static_cast<int64_t>((aligned - address) / sizeof(T));
  }
  std::vector<T> storage_;
  int64_t n_;
  int offset_;
  int64_t begin_ = 0;
};

int failures = 0;
int checks = 0;

void fail(const std::string& what) {
  ++failures;
  std::printf("FAIL %s\n", what.c_str());
}


}  // namespace emu
