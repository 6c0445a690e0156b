// The one-hidden-layer kernels of each instruction-set path, one namespace per path: fastdyn::cpu::baseline (SSE2
// on x86-64; NEON or scalar code elsewhere), ::avx2 (AVX2 + FMA), ::avx512 (AVX-512 F/DQ/BW/VL; x86 builds only).
// Defined in onehidden_simd.hpp, compiled once per path (onehidden_isa.cpp, CMake targets fastdyn_isa_<path>) and
// called through the dispatch of cpu/onehidden.cpp, which has already set the threads (`threads` >= 1 here).
// Shapes: x (p, d), g (p,), omega and v_omega (h, d), b, beta, v_b, v_beta (h,), out (p,), sx (h, d), s1 (h,), sp (h,), keys (h, 3);
// moments with beta null writes the moments, with beta the gradient (cpu/onehidden.hpp).
#pragma once
#include <cstdint>

#define FASTDYN_ONEHIDDEN_ISA_KERNELS                                                                            \
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
                    T inv_sqrt_d, int threads);

namespace fastdyn::cpu {
namespace baseline {
FASTDYN_ONEHIDDEN_ISA_KERNELS
}
#if FASTDYN_X86_ISAS
namespace avx2 {
FASTDYN_ONEHIDDEN_ISA_KERNELS
}
namespace avx512 {
FASTDYN_ONEHIDDEN_ISA_KERNELS
}
#endif
}  // namespace fastdyn::cpu

#undef FASTDYN_ONEHIDDEN_ISA_KERNELS
