// The dispatched kernels of each instruction-set path, one namespace per path: fastdyn::cpu::baseline (SSE2 on
// x86-64; NEON or scalar code elsewhere), ::avx2 (AVX2 + FMA), ::avx512 (AVX-512 F/DQ/BW/VL; x86 builds only).
// Compiled once per path (CMake targets fastdyn_isa_<path>) and called through FASTDYN_ISA_CALL below, which sets
// the threads (`threads` >= 1 here):
// * the one-hidden-layer kernels: defined in onehidden_simd.hpp, instantiated in onehidden_isa.cpp, dispatched by
//   cpu/onehidden.cpp;
// * fc_kernels, the infinite-width layer recursion: infinite_width_isa.cpp, dispatched by cpu/infinite_width.cpp;
//   sigma (n1, n2) Sigma_1 in, the NNGP out; theta (n1, n2) the NTK out; q1, r1 (layers, n1), q2, r2 (layers, n2)
//   the per-point factors of each layer's variances; weight_vars, bias_vars (layers,); symmetric: n1 == n2, the
//   same points on both sides, Sigma_1 symmetrised and the kernels written exactly symmetric.
// Shapes: x (p, d), g (p,), omega and v_omega (h, d), b, beta, v_b, v_beta (h,), out (p,), sx (h, d), s1 (h,), sp (h,), keys (h, 3);
// moments with beta null writes the moments, with beta the gradient (cpu/onehidden.hpp).
#pragma once
#include <cstdint>

#define FASTDYN_ISA_KERNELS                                                                                    \
  template <typename T>                                                                                        \
  void forward(const T* x, const T* omega, const T* b, const T* beta, T* out, long p, long d, long h,           \
               T inv_sqrt_d, T scale, int threads);                                                            \
  template <typename T>                                                                                        \
  void jvp(const T* x, const T* omega, const T* b, const T* beta, const T* v_omega, const T* v_b,               \
           const T* v_beta, T* out, long p, long d, long h, T inv_sqrt_d, T scale, int threads);               \
  template <typename T>                                                                                        \
  void moments(const T* x, const T* g, const T* omega, const T* b, const T* beta, T scale, T* sx, T* s1, T* sp, \
               long p, long d, long h, T inv_sqrt_d, int threads);                                             \
  template <typename T>                                                                                        \
  void pattern_keys(const T* x, const T* omega, const T* b, std::uint64_t* keys, long p, long d, long h,        \
                    T inv_sqrt_d, int threads);                                                           \
  template <typename T>                                                                                        \
  void fc_kernels(T* sigma, T* theta, const T* q1, const T* r1, const T* q2, const T* r2,                      \
                  const double* weight_vars, const double* bias_vars, long layers, long n1, long n2, bool erf, \
                  bool symmetric, int threads);

namespace fastdyn::cpu {
namespace baseline {
FASTDYN_ISA_KERNELS
}
#if FASTDYN_X86_ISAS
namespace avx2 {
FASTDYN_ISA_KERNELS
}
namespace avx512 {
FASTDYN_ISA_KERNELS
}
#endif
}  // namespace fastdyn::cpu

#undef FASTDYN_ISA_KERNELS

// return path::kernel<T>(args..., threads) for the path in use, after setting the threads (`threads`, T in scope).
#if FASTDYN_X86_ISAS
#define FASTDYN_ISA_CALL(kernel, ...)                                \
  switch (::fastdyn::cpu::isa()) {                                   \
    case ::fastdyn::cpu::Isa::kAvx512:                               \
      return ::fastdyn::cpu::avx512::kernel<T>(__VA_ARGS__, use_threads(threads));   \
    case ::fastdyn::cpu::Isa::kAvx2:                                 \
      return ::fastdyn::cpu::avx2::kernel<T>(__VA_ARGS__, use_threads(threads));     \
    case ::fastdyn::cpu::Isa::kBaseline:                             \
      break;                                                         \
  }                                                                  \
  return ::fastdyn::cpu::baseline::kernel<T>(__VA_ARGS__, use_threads(threads))
#else
#define FASTDYN_ISA_CALL(kernel, ...) return ::fastdyn::cpu::baseline::kernel<T>(__VA_ARGS__, use_threads(threads))
#endif
