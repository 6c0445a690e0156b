// The one-hidden-layer ReLU kernels of the seed (fastdyn.models.OneHidden) as a C++ API for other CPU code:
//   f(x_i) = scale * sum_n beta_n relu(pre_ni),  pre_ni = omega_n . x_i * inv_sqrt_d + b_n,  a_ni = [pre_ni > 0],
// for x (p, d), omega (h, d), b (h,), beta (h,), all C-contiguous. Each call runs on the instruction-set path
// cpu_isa() (isa.hpp) with `threads` threads (OpenMP's default when < 1); instantiated for float and double.
// Results are deterministic for given inputs and path: each sum runs in an order independent of the threads.
#pragma once
#include <cstdint>

#include "cpu/isa.hpp"

namespace fastdyn::cpu {

// out (p,) = f(x_i).
template <typename T>
void onehidden_forward(const T* x, const T* omega, const T* b, const T* beta, T* out, long p, long d, long h,
                       T inv_sqrt_d, T scale, int threads);

// out (p,) = the derivative of f(x_i) along (v_omega (h, d), v_b (h,), v_beta (h,)):
// scale * sum_n a_ni (v_beta_n pre_ni + beta_n (v_omega_n . x_i * inv_sqrt_d + v_b_n)).
template <typename T>
void onehidden_jvp(const T* x, const T* omega, const T* b, const T* beta, const T* v_omega, const T* v_b,
                   const T* v_beta, T* out, long p, long d, long h, T inv_sqrt_d, T scale, int threads);

// Per-neuron moments of g (p,) over the points: sx (h, d) = sum_i g_i a_ni x_i, s1 (h,) = sum_i g_i a_ni,
// sp (h,) = sum_i g_i a_ni pre_ni.
template <typename T>
void onehidden_moments(const T* x, const T* g, const T* omega, const T* b, T* sx, T* s1, T* sp, long p, long d,
                       long h, T inv_sqrt_d, int threads);

// Gradient of sum_i g_i f(x_i): grad_omega (h, d) = scale beta_n inv_sqrt_d sx, grad_b (h,) = scale beta_n s1,
// grad_beta (h,) = scale sp.
template <typename T>
void onehidden_gradient(const T* x, const T* g, const T* omega, const T* b, const T* beta, T* grad_omega, T* grad_b,
                        T* grad_beta, long p, long d, long h, T inv_sqrt_d, T scale, int threads);

// keys (h, 3): two 64-bit hashes of each neuron's activation pattern a_n(x_i), i = 0..p-1, and its active count.
template <typename T>
void onehidden_pattern_keys(const T* x, const T* omega, const T* b, std::uint64_t* keys, long p, long d, long h,
                            T inv_sqrt_d, int threads);

}  // namespace fastdyn::cpu
