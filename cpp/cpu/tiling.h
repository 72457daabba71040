// How an element-wise PAU-style operator walks a tensor on the CPU.
//
// A dense tensor whose channel dimension has C channels split into G groups is,
// in memory order, [rows, G, R] with R = (C / G) * stride(dim): one group's
// coefficients apply to a run of R consecutive elements. The work is cut into
// tiles of fixed size that depend only on the shape, never on the thread
// count, so per-tile partial sums reduced in tile order are bitwise
// reproducible.
//
//  * R >= kMinRun ("broadcast" tiles): a tile covers part of one group's run in
//    a block of rows; coefficients are broadcast to every vector lane.
//  * R < kMinRun ("per-lane" tiles, e.g. channels-last with one group per
//    channel): a tile covers several whole groups; each lane loads its own
//    coefficients from a per-tile table.
#pragma once

#include <algorithm>
#include <cstdint>

namespace pau {
namespace cpu {

constexpr int64_t kMinRun = 64;       // shorter runs use per-lane tiles
constexpr int64_t kPerLaneColumns = 256;  // per-lane tiles span at least this many columns
constexpr int64_t kMaxColumns = 8192; // columns of a broadcast tile
constexpr int64_t kTileElements = 32768;

struct Layout {
  int64_t rows = 0;
  int64_t row_length = 0;      // P = G * R
  int64_t run = 0;             // R
  int64_t groups = 0;          // G
  int64_t columns = 0;         // W, columns of a tile
  int64_t groups_per_tile = 1; // per-lane tiles: W / R; broadcast tiles: 1
  int64_t tiles_per_group = 1; // broadcast tiles: ceil(R / W); per-lane tiles: 1
  int64_t column_tiles = 0;
  int64_t rows_per_tile = 0;
  int64_t row_tiles = 0;

  bool per_lane() const { return run < kMinRun && groups > 1; }
  int64_t tiles() const { return row_tiles * column_tiles; }
  int64_t numel() const { return rows * row_length; }
};

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// numel elements; `groups` groups, each a run of `run` elements per row.
// tile_elements: target tile size (operators with large per-tile gradient
// state use larger tiles; it must depend only on shapes).
inline Layout make_layout(int64_t numel, int64_t groups, int64_t run,
                          int64_t tile_elements = kTileElements) {
  Layout l;
  l.groups = groups;
  l.run = run;
  l.row_length = groups * run;
  if (numel == 0 || l.row_length == 0) return l;
  l.rows = numel / l.row_length;
  if (l.per_lane()) {
    l.groups_per_tile = std::min(groups, ceil_div(kPerLaneColumns, run));
    l.columns = l.groups_per_tile * run;
    l.column_tiles = ceil_div(groups, l.groups_per_tile);
  } else {
    l.columns = std::min(run, kMaxColumns);
    l.tiles_per_group = ceil_div(run, l.columns);
    l.column_tiles = groups * l.tiles_per_group;
  }
  l.rows_per_tile = std::max<int64_t>(1, tile_elements / l.columns);
  l.row_tiles = ceil_div(l.rows, l.rows_per_tile);
  return l;
}

struct Tile {
  int64_t row_begin, row_end;
  int64_t column_begin, column_end;  // within a row of length P
  int64_t first_group;
  int64_t group_count;
};

inline Tile tile_at(const Layout& l, int64_t index) {
  const int64_t row_tile = index / l.column_tiles;
  const int64_t column_tile = index % l.column_tiles;
  Tile t;
  t.row_begin = row_tile * l.rows_per_tile;
  t.row_end = std::min(l.rows, t.row_begin + l.rows_per_tile);
  if (l.per_lane()) {
    t.first_group = column_tile * l.groups_per_tile;
    t.group_count = std::min(l.groups_per_tile, l.groups - t.first_group);
    t.column_begin = t.first_group * l.run;
    t.column_end = t.column_begin + t.group_count * l.run;
  } else {
    t.first_group = column_tile / l.tiles_per_group;
    t.group_count = 1;
    t.column_begin = t.first_group * l.run + (column_tile % l.tiles_per_group) * l.columns;
    t.column_end = std::min(t.column_begin + l.columns, (t.first_group + 1) * l.run);
  }
  return t;
}

}  // namespace cpu
}  // namespace pau
