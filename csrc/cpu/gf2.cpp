// Gauss-Jordan elimination over GF(2), bit-packed 64 equations per word (registry operation "gf2.eliminate",
// fastdyn.parity.solve_gf2). The system Z s = b (mod 2), Z (n, d), is stored by columns: columns (d + 1, W) uint64,
// W = ceil(n / 64), bit r % 64 of word r / 64 of column j = Z[r, j], column d = b. A row operation "row r ^= row p for
// every r in a set R" is, column by column, col_j ^= R whenever bit p of col_j is set: XORs of whole words.
//
// Pivots are chosen in column order, each the first equation not yet used whose bit is set; rows are never moved
// (a `used` mask stands for the swaps). Once column c has its pivot row p, only the columns after c can have bit p
// set (an earlier pivot column is zero off its own pivot row, an earlier free column is zero on every unused row),
// so those and b are updated: in parallel over columns, each thread owning whole columns. On return pivots[c] is the
// pivot row of column c (-1: a free variable) and column d holds the reduced b: s_c = b[pivots[c]] solves the system
// with the free variables at 0 when every unused row of b is 0 (else it is inconsistent). Cost: at most
// rank * (d + 1) * W word operations; the order of the XORs is fixed, so the result does not depend on the threads.
#include <cstdint>
#include <vector>

#include "buffer.hpp"
#include "cpu/parallel.hpp"
#include "registry.hpp"

namespace fastdyn {
namespace {

constexpr long kSerialWords = 1L << 14;  // below this many words per pivot step one thread beats the fork/join

inline int lowest_bit(std::uint64_t word) { return __builtin_ctzll(word); }

void gf2_eliminate(std::uint64_t* columns, std::int32_t* pivots, long d, long words, int n_threads) {
  use_threads(n_threads);
  std::vector<std::uint64_t> used(static_cast<std::size_t>(words), 0), mask(static_cast<std::size_t>(words));
  for (long c = 0; c < d; ++c) {
    std::uint64_t* column = columns + c * words;
    long pivot = -1;
    for (long w = 0; w < words && pivot < 0; ++w) {
      const std::uint64_t free_rows = column[w] & ~used[static_cast<std::size_t>(w)];
      if (free_rows != 0) pivot = w * 64 + lowest_bit(free_rows);
    }
    pivots[c] = static_cast<std::int32_t>(pivot);
    if (pivot < 0) continue;
    const long pivot_word = pivot / 64;
    const std::uint64_t pivot_bit = std::uint64_t{1} << (pivot % 64);
    used[static_cast<std::size_t>(pivot_word)] |= pivot_bit;
    for (long w = 0; w < words; ++w) mask[static_cast<std::size_t>(w)] = column[w];
    mask[static_cast<std::size_t>(pivot_word)] &= ~pivot_bit;  // every row with a 1 in column c but the pivot
    for (long w = 0; w < words; ++w) column[w] = 0;
    column[pivot_word] = pivot_bit;
    const std::uint64_t* rows = mask.data();
    const long later = d - c;  // columns c + 1 .. d (b included)
#pragma omp parallel for schedule(static) if (later * words >= kSerialWords)
    for (long j = c + 1; j <= d; ++j) {
      std::uint64_t* target = columns + j * words;
      if ((target[pivot_word] & pivot_bit) == 0) continue;
      for (long w = 0; w < words; ++w) target[w] ^= rows[w];
    }
  }
}

}  // namespace
}  // namespace fastdyn

FASTDYN_BINDINGS(gf2) {
  namespace py = pybind11;
  using fastdyn::Buffer;
  using fastdyn::Call;
  using fastdyn::Dtype;
  m.def(
      "gf2_eliminate",
      [](Buffer columns, Buffer pivots, long n, int threads) {
        Call call("gf2_eliminate", fastdyn::kDLCPU);
        call.check("columns", columns, {"d1", "W"}, Dtype::kUInt64);
        call.check("pivots", pivots, {"d"}, Dtype::kInt32);
        const long d1 = call.size("d1"), d = call.size("d"), words = call.size("W");
        if (d1 != d + 1) throw py::value_error("gf2_eliminate: columns must have d + 1 rows (the last one is b)");
        if (n < 0 || (n + 63) / 64 != words)
          throw py::value_error("gf2_eliminate: columns must have ceil(n / 64) words per column");
        py::gil_scoped_release release;
        fastdyn::gf2_eliminate(columns.data<std::uint64_t>(), pivots.data<std::int32_t>(), d, words, threads);
      },
      "Gauss-Jordan elimination over GF(2) in place: columns (d + 1, W) uint64, the bit-packed columns of Z (n, d) "
      "and b, 64 equations per word; pivots (d,) int32: the pivot row of each column, -1 for a free variable.",
      py::arg("columns"), py::arg("pivots"), py::kw_only(), py::arg("n"), py::arg("threads"));
}
