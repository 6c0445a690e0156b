// Threading shared by the CPU kernels. OpenMP is optional: without it (_OPENMP undefined) the omp_* calls below fall
// back to one thread and the compiler ignores `#pragma omp parallel`, so every kernel runs serially.
// The Python side passes torch.get_num_threads() (which honours OMP_NUM_THREADS) with every call.
#pragma once
#ifdef _OPENMP
#include <omp.h>
#else
inline int omp_get_max_threads() { return 1; }
inline int omp_get_thread_num() { return 0; }
inline int omp_in_parallel() { return 0; }
inline void omp_set_num_threads(int) {}
#endif

extern "C" void scipy_openblas_set_num_threads(int num_threads);

namespace fastdyn {

// Threads for OpenMP and OpenBLAS: n_threads, or OpenMP's default when n_threads < 1; returns the count.
inline int use_threads(int n_threads) {
  if (n_threads < 1) n_threads = omp_get_max_threads();
  omp_set_num_threads(n_threads);
  scipy_openblas_set_num_threads(n_threads);
  return n_threads;
}

}  // namespace fastdyn
