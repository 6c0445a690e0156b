// Thread control shared by the CPU kernels: the Python side passes torch.get_num_threads()
// (which honours OMP_NUM_THREADS) with every call.
#pragma once
#include <omp.h>

extern "C" void scipy_openblas_set_num_threads(int num_threads);

namespace fastdyn {

inline int use_threads(int n_threads) {
  if (n_threads < 1) n_threads = omp_get_max_threads();
  omp_set_num_threads(n_threads);
  scipy_openblas_set_num_threads(n_threads);
  return n_threads;
}

}  // namespace fastdyn
