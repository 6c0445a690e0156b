// Output derivative of the alpha-trick hinge loss (fastdyn training, registry operation "loss.hinge_gradient"):
//   F = alpha (f - f0),  L = sum_i relu(1 - F_i y_i) / (p alpha^2),  g_i = dL/df_i = -y_i [F_i y_i < 1] / (p alpha)
// for f, f0, y (p,). The margin is computed in T, g is bitwise train's loss_derivative("hinge") / (p alpha) (signed
// zeros included), the loss summed in double; result (2,) float64 = (L, #unsatisfied).
#include <cstdint>

#include "cpu/parallel.hpp"
#include "registry.hpp"
#include "signatures.hpp"

namespace fastdyn {
namespace {

constexpr long kSerialPoints = 1L << 15;  // below this many points one thread beats the fork/join

template <typename T>
void hinge_gradient(const T* f, const T* f0, const T* y, T* g, long p, double alpha, double* result, int n_threads) {
  use_threads(n_threads);
  const T alpha_t = static_cast<T>(alpha);
  const T denominator = static_cast<T>(static_cast<double>(p) * alpha);
  double total = 0.0;
  std::int64_t unsatisfied = 0;
#pragma omp parallel for schedule(static) reduction(+ : total, unsatisfied) if (p >= kSerialPoints)
  for (long i = 0; i < p; ++i) {
    const T margin = alpha_t * (f[i] - f0[i]) * y[i];
    const bool below = margin < T(1);
    g[i] = -y[i] * T(below) / denominator;  // the bits of train's -y * mask / (p alpha), -0.0 included
    total += below ? 1.0 - static_cast<double>(margin) : 0.0;
    unsatisfied += below ? 1 : 0;
  }
  result[0] = total / (static_cast<double>(p) * alpha * alpha);
  result[1] = static_cast<double>(unsatisfied);
}

}  // namespace
}  // namespace fastdyn

FASTDYN_BINDINGS(losses) {
  fastdyn::bind_hinge_gradient<fastdyn::Cpu>(m, [](auto... args) { fastdyn::hinge_gradient(args...); });
}
