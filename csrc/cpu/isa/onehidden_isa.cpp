// One instruction-set path of the one-hidden-layer kernels: compiled once per path (CMake object libraries
// fastdyn_isa_<path>) with that path's flags and -DFASTDYN_ISA=<path>; cpu/onehidden.cpp dispatches between them.
#include "cpu/isa/onehidden_simd.hpp"

namespace fastdyn::cpu::FASTDYN_ISA {

#define FASTDYN_INSTANTIATE(T)                                                                                    \
  template void forward<T>(const T*, const T*, const T*, const T*, T*, long, long, long, T, T, int);              \
  template void jvp<T>(const T*, const T*, const T*, const T*, const T*, const T*, const T*, T*, long, long, long, \
                       T, T, int);                                                                              \
  template void moments<T>(const T*, const T*, const T*, const T*, const T*, T, T*, T*, T*, long, long, long, T,  \
                           int);                                                                                \
  template void pattern_keys<T>(const T*, const T*, const T*, std::uint64_t*, long, long, long, T, int);
FASTDYN_INSTANTIATE(float)
FASTDYN_INSTANTIATE(double)
#undef FASTDYN_INSTANTIATE

}  // namespace fastdyn::cpu::FASTDYN_ISA
