// Float32 products X K with one N x N matrix K that is used many times (the mixed-precision kPCA solver multiplies
// each kernel ~10 times by a block of ~k vectors). OpenBLAS repacks K on every call, which costs ~30% of such a
// skinny product; PackedMatrix32 packs K once into column panels and multiply() streams them through an
// AVX-512 register tile. Without AVX-512 (the build uses -march=native) the panels stay a plain float32 copy
// and multiply() calls OpenBLAS.
#pragma once
#include <algorithm>
#include <cstddef>
#include <vector>

#include "cpu/parallel.hpp"

#ifdef __AVX512F__
#include <immintrin.h>
#endif

#include "cpu/blas.hpp"

namespace fastdyn {

class PackedMatrix32 {
 public:
#ifdef __AVX512F__
  static constexpr long kPanel = 64;  // columns per panel: four zmm registers
  static constexpr bool kOwnThreads = true;  // multiply() shares its panels among OpenMP threads
#else
  static constexpr bool kOwnThreads = false;  // OpenBLAS threads multiply()
#endif

  // Pack the row-major n x n matrix k (float or double), rounding to float32.
  template <typename T>
  void pack(const T* k, long n) {
    n_ = n;
#ifdef __AVX512F__
    const long panels = (n + kPanel - 1) / kPanel;
    data_.resize(static_cast<size_t>(panels * n * kPanel));
    for (long p = 0; p < panels; ++p) {
      float* panel = data_.data() + p * n * kPanel;
      const long first = p * kPanel, width = std::min(kPanel, n - first);
      for (long i = 0; i < n; ++i) {
        const T* row = k + i * n + first;
        float* out = panel + i * kPanel;
        for (long c = 0; c < width; ++c) out[c] = static_cast<float>(row[c]);
        for (long c = width; c < kPanel; ++c) out[c] = 0.0f;
      }
    }
#else
    data_.resize(static_cast<size_t>(n * n));
    std::copy(k, k + n * n, data_.begin());
#endif
  }

  // out (rows x n, row-major) = in (rows x n) K.
  void multiply(const float* in, long rows, float* out) const {
#ifdef __AVX512F__
    multiply_panels(in, rows, out);
#else
    const int ni = static_cast<int>(n_);
    blas::gemm(false, false, static_cast<int>(rows), ni, ni, 1.0f, in, ni, data_.data(), ni, 0.0f, out, ni);
#endif
  }


 private:
#ifdef __AVX512F__
  static constexpr long kRows = 6;     // rows of `in` per register tile (6 x 4 accumulators)
  static constexpr long kDepth = 512;  // inner-dimension block: a 128 KiB panel slice stays in L2

  // out tile (R rows x width columns of one panel) (+)= in rows [i0, i1) times the panel slice.
  template <int R>
  static void tile(const float* in, long n, const float* panel, long i0, long i1, float* out, long width,
                   bool accumulate) {
    __m512 acc[R][4];
    for (int r = 0; r < R; ++r)
      for (int q = 0; q < 4; ++q) acc[r][q] = _mm512_setzero_ps();
    for (long i = i0; i < i1; ++i) {
      const float* b = panel + i * kPanel;
      const __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16), b2 = _mm512_loadu_ps(b + 32),
                   b3 = _mm512_loadu_ps(b + 48);
      for (int r = 0; r < R; ++r) {
        const __m512 a = _mm512_set1_ps(in[r * n + i]);
        acc[r][0] = _mm512_fmadd_ps(a, b0, acc[r][0]);
        acc[r][1] = _mm512_fmadd_ps(a, b1, acc[r][1]);
        acc[r][2] = _mm512_fmadd_ps(a, b2, acc[r][2]);
        acc[r][3] = _mm512_fmadd_ps(a, b3, acc[r][3]);
      }
    }
    for (int r = 0; r < R; ++r)
      for (int q = 0; q < 4; ++q) {
        const long c = q * 16;
        if (c >= width) break;
        const __mmask16 mask = width - c >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (width - c)) - 1);
        float* dst = out + r * n + c;
        __m512 value = acc[r][q];
        if (accumulate) value = _mm512_add_ps(value, _mm512_maskz_loadu_ps(mask, dst));
        _mm512_mask_storeu_ps(dst, mask, value);
      }
  }

  // out columns of panel p (+)= in rows times the panel's rows [i0, i1).
  void panel_product(long p, long i0, long i1, const float* in, long rows, float* out) const {
    const long n = n_;
    const float* panel = data_.data() + p * n * kPanel;
    const long first = p * kPanel, width = std::min(kPanel, n - first);
    const bool accumulate = i0 > 0;
    for (long r = 0; r < rows; r += kRows) {
      const float* a = in + r * n;
      float* c = out + r * n + first;
      switch (std::min(kRows, rows - r)) {
        case 6: tile<6>(a, n, panel, i0, i1, c, width, accumulate); break;
        case 5: tile<5>(a, n, panel, i0, i1, c, width, accumulate); break;
        case 4: tile<4>(a, n, panel, i0, i1, c, width, accumulate); break;
        case 3: tile<3>(a, n, panel, i0, i1, c, width, accumulate); break;
        case 2: tile<2>(a, n, panel, i0, i1, c, width, accumulate); break;
        default: tile<1>(a, n, panel, i0, i1, c, width, accumulate); break;
      }
    }
  }

  // Panels write disjoint output columns: threads share them unless the caller already runs in parallel (a
  // batch solved one matrix per thread).
  void multiply_panels(const float* in, long rows, float* out) const {
    const long n = n_, panels = (n + kPanel - 1) / kPanel;
    const bool threaded = !omp_in_parallel() && omp_get_max_threads() > 1;
    for (long i0 = 0; i0 < n; i0 += kDepth) {
      const long i1 = std::min(n, i0 + kDepth);
      if (threaded) {
#pragma omp parallel for schedule(static)
        for (long p = 0; p < panels; ++p) panel_product(p, i0, i1, in, rows, out);
      } else {
        for (long p = 0; p < panels; ++p) panel_product(p, i0, i1, in, rows, out);
      }
    }
  }
#endif

  long n_ = 0;
  std::vector<float> data_;
};

}  // namespace fastdyn
