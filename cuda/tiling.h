// How the CUDA kernels of pau::forward / pau::backward cut a tensor into tiles.
// Torch-free and CUDA-free (host and device): the kernels, the launchers and
// the CPU emulation check (tests/cuda_emulation/pau_kernels_check.cpp, run by
// .ci/cuda_compile_and_emulate.sh) share this one definition.
//
// As on the CPU (cpp/cpu/tiling.h), a dense tensor is, in memory order,
// [rows, G, R]: the element at offset o belongs to group (o / R) % G, and a
// row has P = G * R elements. The geometry depends only on the shape, the
// dtype and the coefficient count, never on the GPU, the grid size or pointer
// alignment, so the per-tile partial sums of the coefficient gradients (and
// therefore the gradients themselves) are bitwise reproducible everywhere.
//
//  * Broadcast tiles (G == 1 or R >= kMinRun): a tile is part of one group's
//    run (a column chunk of at most kTileElements) in a block of rows, so the
//    whole block shares one group's coefficients (shared memory, then
//    registers). Threads take "items" of `lanes` consecutive elements (one
//    128-bit vector when the layout allows) in flattened (row, item) order.
//  * Per-lane tiles (R < kMinRun and G > 1, e.g. channels-last per-channel):
//    a tile covers groups_per_tile whole groups (columns = groups_per_tile * R)
//    in many rows. Each thread owns one fixed item column (vectors_per_row of
//    them per row, row_slots threads per column), so each of its lanes
//    always belongs to the same group and can accumulate that group's
//    gradients in registers; the block then sums them per group in a fixed
//    order in shared memory.
#pragma once

#include <cstdint>
#include <initializer_list>

#include "../cpp/math/pau_math.h"

namespace pau {
namespace cuda {

constexpr int kThreads = 256;                 // threads of a broadcast block, max of a per-lane one
constexpr int64_t kMinRun = 64;               // shorter runs (with G > 1) use per-lane tiles
constexpr int64_t kTileElements = 16384;      // elements of a broadcast tile (64 per thread)
constexpr int kPerLaneMaxVectors = 32;        // item columns of a per-lane tile (>= 8 row slots)
constexpr int kPerLaneRowsPerThread = 32;     // rows each per-lane thread accumulates per tile
constexpr int64_t kPerLaneCoefficientBytes = 16384;  // shared-memory table of a per-lane tile
constexpr int kReduceThreads = 256;           // threads of the final per-group reduction

struct Plan {
  int64_t numel = 0;
  int64_t rows = 0;
  int64_t groups = 0;           // G
  int64_t run = 0;              // R
  int64_t row_length = 0;       // P = G * R
  int coefficients = 0;         // K = m + 1 + n
  int tables = 1;               // (G, K) tables a per-lane tile keeps: 1 (PAU), 3 (RPAU: + noise base, scale)
  int element_size = 0;         // bytes of one element of x
  int lanes = 1;                // elements per item
  bool per_lane = false;
  bool vector_layout = false;   // every full item starts at a multiple of `lanes` elements
  int threads = kThreads;       // block size
  int64_t columns = 0;          // broadcast: W, columns of a tile; per-lane: groups_per_tile * R
  int64_t groups_per_tile = 1;  // per-lane: whole groups per tile; broadcast: 1
  int64_t tiles_per_group = 1;  // broadcast: ceil(R / W); per-lane: 1
  int vectors_per_row = 0;      // per-lane: item columns, ceil(columns / lanes)
  int row_slots = 0;            // per-lane: threads per item column
  int64_t rows_per_tile = 0;
  int64_t column_tiles = 0;
  int64_t row_tiles = 0;

  PAU_HOST_DEVICE int64_t tiles() const { return row_tiles * column_tiles; }
  // Doubles of the backward workspace: (tiles, groups_per_tile, K).
  PAU_HOST_DEVICE int64_t workspace_elements() const {
    return tiles() * groups_per_tile * coefficients;
  }
  // Bytes of dynamic shared memory of a per-lane block (0 for broadcast):
  // the coefficient (and RPAU noise) tables in the compute type, the effective
  // degrees, and (backward only) one double per thread and lane for the
  // per-group sums.
  PAU_HOST_DEVICE int64_t shared_bytes(int compute_size, bool backward) const {
    if (!per_lane) return 0;
    int64_t bytes = groups_per_tile * coefficients * compute_size * static_cast<int64_t>(tables);
    bytes = (bytes + 15) / 16 * 16;
    bytes += groups_per_tile * 2 * static_cast<int64_t>(sizeof(int));
    bytes = (bytes + 15) / 16 * 16;
    if (backward) bytes += static_cast<int64_t>(threads) * lanes * sizeof(double);
    return bytes;
  }
};

struct Tile {
  int64_t row_begin, row_end;
  int64_t column_begin, column_end;  // within a row of length P
  int64_t first_group;
  int64_t group_count;
};

PAU_HOST_DEVICE int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

PAU_HOST_DEVICE int64_t gcd(int64_t a, int64_t b) {
  while (b != 0) {
    const int64_t t = a % b;
    a = b;
    b = t;
  }
  return a;
}

// numel elements of element_size bytes; `groups` groups with runs of `run`
// elements; K coefficients per group, computed in compute_size bytes; `tables`
// coefficient-shaped tables per group (3 for RPAU's noise base and scale).
// allow_per_lane false: broadcast tiles for every run (correct for any run,
// coalesced only for long ones).
inline Plan make_plan(int64_t numel, int64_t groups, int64_t run, int coefficients,
                      int element_size, int compute_size, int tables = 1,
                      bool allow_per_lane = true) {
  Plan p;
  // One group: the whole tensor is one run whatever the caller's run, so a
  // single row needs only its start aligned for 128-bit items.
  if (groups == 1) run = numel;
  p.numel = numel;
  p.groups = groups;
  p.run = run;
  p.row_length = groups * run;
  p.coefficients = coefficients;
  p.tables = tables;
  p.element_size = element_size;
  if (numel == 0 || p.row_length == 0) return p;
  p.rows = numel / p.row_length;
  p.per_lane = allow_per_lane && run < kMinRun && groups > 1;
  if (!p.per_lane) {
    // 128-bit items. One group is one row (above) that only needs its start
    // aligned; several rows need every run to start on an item.
    p.lanes = 16 / element_size;
    p.vector_layout = groups == 1 || run % p.lanes == 0;
    p.threads = kThreads;
    p.columns = run < kTileElements ? run : kTileElements;
    p.tiles_per_group = ceil_div(run, p.columns);
    p.column_tiles = groups * p.tiles_per_group;
    const int64_t rows_per_tile = kTileElements / p.columns;
    p.rows_per_tile = rows_per_tile > 1 ? rows_per_tile : 1;
  } else {
    // Four lanes (two for double): every lane of a thread accumulates its own
    // group's K gradients in registers, so wider items would cost registers.
    p.lanes = element_size == 8 ? 2 : 4;
    const int64_t max_columns = static_cast<int64_t>(kPerLaneMaxVectors) * p.lanes;
    int64_t per_tile = max_columns / run;
    const int64_t by_memory = kPerLaneCoefficientBytes /
                              (static_cast<int64_t>(coefficients) * compute_size * tables);
    if (by_memory < per_tile) per_tile = by_memory;
    if (per_tile < 1) per_tile = 1;
    if (per_tile >= groups) {
      per_tile = groups;
    } else {
      // Later column tiles must start on an item: groups_per_tile * R a
      // multiple of lanes.
      const int64_t step = p.lanes / gcd(run, p.lanes);
      per_tile = per_tile / step * step;
      if (per_tile < step) per_tile = step;
      if (per_tile > groups) per_tile = groups;
    }
    p.groups_per_tile = per_tile;
    p.columns = per_tile * run;
    p.vector_layout = p.row_length % p.lanes == 0 && p.columns % p.lanes == 0;
    p.vectors_per_row = static_cast<int>(ceil_div(p.columns, p.lanes));
    p.row_slots = kThreads / p.vectors_per_row > 1 ? kThreads / p.vectors_per_row : 1;
    p.threads = p.vectors_per_row * p.row_slots;
    p.column_tiles = ceil_div(groups, per_tile);
    p.rows_per_tile = static_cast<int64_t>(p.row_slots) * kPerLaneRowsPerThread;
  }
  p.row_tiles = ceil_div(p.rows, p.rows_per_tile);
  return p;
}

PAU_HOST_DEVICE Tile tile_at(const Plan& p, int64_t index) {
  const int64_t row_tile = index / p.column_tiles;
  const int64_t column_tile = index - row_tile * p.column_tiles;
  Tile t;
  t.row_begin = row_tile * p.rows_per_tile;
  t.row_end = t.row_begin + p.rows_per_tile < p.rows ? t.row_begin + p.rows_per_tile : p.rows;
  if (p.per_lane) {
    t.first_group = column_tile * p.groups_per_tile;
    t.group_count = p.groups - t.first_group < p.groups_per_tile ? p.groups - t.first_group
                                                                  : p.groups_per_tile;
    t.column_begin = t.first_group * p.run;
    t.column_end = t.column_begin + t.group_count * p.run;
  } else {
    t.first_group = column_tile / p.tiles_per_group;
    t.group_count = 1;
    t.column_begin =
        t.first_group * p.run + (column_tile - t.first_group * p.tiles_per_group) * p.columns;
    const int64_t group_end = (t.first_group + 1) * p.run;
    t.column_end = t.column_begin + p.columns < group_end ? t.column_begin + p.columns : group_end;
  }
  return t;
}

// Blocks of a launch over the plan's tiles: one per tile, at most max_blocks
// (if > 0) and gridDim.x's limit; the kernels loop over the remaining tiles.
inline unsigned int grid_blocks(const Plan& p, int64_t max_blocks) {
  int64_t blocks = p.tiles();
  if (max_blocks > 0 && blocks > max_blocks) blocks = max_blocks;
  constexpr int64_t kMaxGrid = (int64_t(1) << 31) - 1;
  if (blocks > kMaxGrid) blocks = kMaxGrid;
  return static_cast<unsigned int>(blocks);
}

// Whether every pointer is aligned for one item (lanes * element_size bytes)
// of the plan's tiles, so vector loads and stores may be used.
inline bool items_aligned(const Plan& p, std::initializer_list<const void*> pointers) {
  const auto bytes = static_cast<std::uintptr_t>(p.lanes * p.element_size);
  for (const void* pointer : pointers) {
    if (reinterpret_cast<std::uintptr_t>(pointer) % bytes != 0) return false;
  }
  return true;
}

// The final reduction: group g's partial sums are entries
// (tile, slot) for i in [0, partials_per_group) in this fixed order.
PAU_HOST_DEVICE int64_t partials_per_group(const Plan& p) {
  return p.per_lane ? p.row_tiles : p.row_tiles * p.tiles_per_group;
}

// Index into the (tiles, groups_per_tile) partial-sum table (times K).
PAU_HOST_DEVICE int64_t partial_index(const Plan& p, int64_t group, int64_t i) {
  if (p.per_lane) {
    const int64_t tile = i * p.column_tiles + group / p.groups_per_tile;
    return tile * p.groups_per_tile + group % p.groups_per_tile;
  }
  const int64_t row_tile = i / p.tiles_per_group;
  const int64_t column_tile = group * p.tiles_per_group + (i - row_tile * p.tiles_per_group);
  return row_tile * p.column_tiles + column_tile;
}

}  // namespace cuda
}  // namespace pau
