// The one-hidden-layer kernels (onehidden.hpp): the dispatch to the instruction-set path in use (cpu/isa/, one
// build per path) and the Python bindings onehidden_forward, onehidden_jvp, onehidden_gradient, onehidden_moments
// and onehidden_pattern_keys. Memory O((h + p) d), never h x p.
#include "cpu/onehidden.hpp"

#include "cpu/isa/kernels.hpp"
#include "cpu/parallel.hpp"
#include "registry.hpp"
#include "signatures.hpp"

namespace fastdyn::cpu {

template <typename T>
void onehidden_forward(const T* x, const T* omega, const T* b, const T* beta, T* out, long p, long d, long h,
                       T inv_sqrt_d, T scale, int threads) {
  FASTDYN_ISA_CALL(forward, x, omega, b, beta, out, p, d, h, inv_sqrt_d, scale);
}

template <typename T>
void onehidden_jvp(const T* x, const T* omega, const T* b, const T* beta, const T* v_omega, const T* v_b,
                   const T* v_beta, T* out, long p, long d, long h, T inv_sqrt_d, T scale, int threads) {
  FASTDYN_ISA_CALL(jvp, x, omega, b, beta, v_omega, v_b, v_beta, out, p, d, h, inv_sqrt_d, scale);
}

template <typename T>
void onehidden_moments(const T* x, const T* g, const T* omega, const T* b, T* sx, T* s1, T* sp, long p, long d,
                       long h, T inv_sqrt_d, int threads) {
  FASTDYN_ISA_CALL(moments, x, g, omega, b, static_cast<const T*>(nullptr), T(1), sx, s1, sp, p, d, h, inv_sqrt_d);
}

template <typename T>
void onehidden_pattern_keys(const T* x, const T* omega, const T* b, std::uint64_t* keys, long p, long d, long h,
                            T inv_sqrt_d, int threads) {
  FASTDYN_ISA_CALL(pattern_keys, x, omega, b, keys, p, d, h, inv_sqrt_d);
}

template <typename T>
void onehidden_gradient(const T* x, const T* g, const T* omega, const T* b, const T* beta, T* grad_omega, T* grad_b,
                        T* grad_beta, long p, long d, long h, T inv_sqrt_d, T scale, int threads) {
  FASTDYN_ISA_CALL(moments, x, g, omega, b, beta, scale, grad_omega, grad_b, grad_beta, p, d, h, inv_sqrt_d);
}

#define FASTDYN_INSTANTIATE(T)                                                                                   \
  template void onehidden_forward<T>(const T*, const T*, const T*, const T*, T*, long, long, long, T, T, int);   \
  template void onehidden_jvp<T>(const T*, const T*, const T*, const T*, const T*, const T*, const T*, T*, long,  \
                                 long, long, T, T, int);                                                         \
  template void onehidden_moments<T>(const T*, const T*, const T*, const T*, T*, T*, T*, long, long, long, T,    \
                                     int);                                                                       \
  template void onehidden_gradient<T>(const T*, const T*, const T*, const T*, const T*, T*, T*, T*, long, long,  \
                                      long, T, T, int);                                                          \
  template void onehidden_pattern_keys<T>(const T*, const T*, const T*, std::uint64_t*, long, long, long, T, int);
FASTDYN_INSTANTIATE(float)
FASTDYN_INSTANTIATE(double)
#undef FASTDYN_INSTANTIATE

}  // namespace fastdyn::cpu

FASTDYN_BINDINGS(onehidden) {
  namespace py = pybind11;
  using fastdyn::Buffer, fastdyn::Call, fastdyn::Dtype, fastdyn::inv_sqrt;
  fastdyn::bind_onehidden_forward<fastdyn::Cpu>(m, [](auto... args) { fastdyn::cpu::onehidden_forward(args...); });
  fastdyn::bind_onehidden_jvp<fastdyn::Cpu>(m, [](auto... args) { fastdyn::cpu::onehidden_jvp(args...); });
  fastdyn::bind_onehidden_gradient<fastdyn::Cpu>(m,
                                                 [](auto... args) { fastdyn::cpu::onehidden_gradient(args...); });
  m.def(
      "onehidden_moments",
      [](Buffer x, Buffer g, Buffer omega, Buffer b, Buffer sx, Buffer s1, Buffer sp, int threads) {
        Call call("onehidden_moments", fastdyn::kDLCPU);
        call.check("x", x, {"p", "d"});
        call.check("g", g, {"p"});
        call.check("omega", omega, {"h", "d"});
        call.check("b", b, {"h"});
        call.check("sx", sx, {"h", "d"});
        call.check("s1", s1, {"h"});
        call.check("sp", sp, {"h"});
        const long p = call.size("p"), d = call.size("d"), h = call.size("h");
        call.dispatch([&](auto zero) {
          using T = decltype(zero);
          py::gil_scoped_release release;
          fastdyn::cpu::onehidden_moments<T>(x.data<T>(), g.data<T>(), omega.data<T>(), b.data<T>(), sx.data<T>(),
                                             s1.data<T>(), sp.data<T>(), p, d, h, inv_sqrt<T>(d), threads);
        });
      },
      "Per-neuron moments of g (p,), a_ni = [pre_ni > 0]: sx (h, d) = sum_i g_i a_ni x_i, s1 (h,) = sum_i g_i a_ni, "
      "sp (h,) = sum_i g_i a_ni pre_ni, pre_ni = omega_n . x_i / sqrt(d) + b_n",
      py::arg("x"), py::arg("g"), py::arg("omega"), py::arg("b"), py::arg("sx"), py::arg("s1"), py::arg("sp"),
      py::kw_only(), py::arg("threads"));
  m.def(
      "onehidden_pattern_keys",
      [](Buffer x, Buffer omega, Buffer b, Buffer keys, int threads) {
        Call call("onehidden_pattern_keys", fastdyn::kDLCPU);
        call.check("x", x, {"p", "d"});
        call.check("omega", omega, {"h", "d"});
        call.check("b", b, {"h"});
        call.check("keys", keys, {"h", "3"}, Dtype::kUInt64);
        const long p = call.size("p"), d = call.size("d"), h = call.size("h");
        call.dispatch([&](auto zero) {
          using T = decltype(zero);
          py::gil_scoped_release release;
          fastdyn::cpu::onehidden_pattern_keys<T>(x.data<T>(), omega.data<T>(), b.data<T>(),
                                                  keys.data<std::uint64_t>(), p, d, h, inv_sqrt<T>(d), threads);
        });
      },
      "Per-neuron activation-pattern keys (h, 3) uint64: two 64-bit hashes of the bits [pre_n(x_i) > 0] and the "
      "number of active points",
      py::arg("x"), py::arg("omega"), py::arg("b"), py::arg("keys"), py::kw_only(), py::arg("threads"));
}
