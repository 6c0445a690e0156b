// The infinite-width layer recursion (fastdyn.kernels; the maths in cpu/isa/infinite_width_isa.cpp): the per-point
// factors of each layer's variances, the dispatch to the instruction-set path in use, and the binding fc_kernels.
// Memory: the two (n1, n2) outputs (sigma is overwritten with the NNGP) and O((n1 + n2) layers).
#include <cmath>
#include <vector>

#include "cpu/isa/kernels.hpp"
#include "cpu/isa.hpp"
#include "cpu/parallel.hpp"
#include "registry.hpp"
#include "signatures.hpp"

namespace fastdyn::cpu {
namespace {

// q = sqrt(var), r = 1 / sqrt(var) (ReLU) or r = sqrt(2 / (1 + 2 var)) (erf), elementwise over (layers, n).
template <typename T>
void factors(const T* var, long count, bool erf, std::vector<T>& q, std::vector<T>& r) {
  q.resize(count);
  r.resize(count);
  for (long k = 0; k < count; ++k) {
    q[k] = std::sqrt(var[k]);
    r[k] = erf ? std::sqrt(T(2) / (T(1) + T(2) * var[k])) : T(1) / q[k];
  }
}

template <typename T>
void fc_kernels_dispatch(T* sigma, T* theta, const T* var1, const T* var2, const double* weight_vars,
                         const double* bias_vars, long layers, long n1, long n2, bool erf, bool symmetric,
                         int threads) {
  std::vector<T> q1, r1, q2, r2;
  factors(var1, layers * n1, erf, q1, r1);
  if (!symmetric) factors(var2, layers * n2, erf, q2, r2);
  const std::vector<T>& q = symmetric ? q1 : q2;
  const std::vector<T>& r = symmetric ? r1 : r2;
  FASTDYN_ISA_CALL(fc_kernels, sigma, theta, q1.data(), r1.data(), q.data(), r.data(), weight_vars, bias_vars,
                   layers, n1, n2, erf, symmetric);
}

}  // namespace
}  // namespace fastdyn::cpu

FASTDYN_BINDINGS(infinite_width) {
  fastdyn::bind_fc_kernels<fastdyn::Cpu>(m, [](auto... args) { fastdyn::cpu::fc_kernels_dispatch(args...); });
}
