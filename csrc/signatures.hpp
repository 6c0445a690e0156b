// The Python signature of each kernel bound on both devices, written once: its name, argument names, buffer
// checks (shapes, dtypes), keyword options and the float32/float64 dispatch. A device file binds a kernel with
//
//   bind_onehidden_forward<Cpu>(m, [](auto... args) { onehidden_forward(args...); });
//
// where the kernel takes the typed pointers, sizes and options in the order below, then the device's last argument:
// a thread count on CPU (Cpu, here), torch's current stream on CUDA (Cuda, in cuda/check.cuh).
#pragma once
#include <pybind11/pybind11.h>

#include <cmath>
#include <optional>
#include <stdexcept>
#include <string>

#include "buffer.hpp"

namespace fastdyn {

struct Cpu {
  static constexpr DLDeviceType kType = kDLCPU;
  static constexpr const char* kLast = "threads";
  using Last = int;
  static int last(int threads) { return threads; }
};

template <typename T>
T inv_sqrt(long d) {
  return static_cast<T>(1.0 / std::sqrt(static_cast<double>(d)));
}

// The inputs of every one-hidden-layer kernel: x (p, d) and the network omega (h, d), b (h,), beta (h,).
inline void check_onehidden(Call& call, Buffer& x, Buffer& omega, Buffer& b, Buffer& beta) {
  call.check("x", x, {"p", "d"});
  call.check("omega", omega, {"h", "d"});
  call.check("b", b, {"h"});
  call.check("beta", beta, {"h"});
}

// kernel(x, omega, b, beta, out, p, d, h, inv_sqrt_d, scale, last)
template <typename Device, typename Kernel>
void bind_onehidden_forward(pybind11::module_& m, Kernel kernel) {
  namespace py = pybind11;
  m.def(
      "onehidden_forward",
      [kernel](Buffer x, Buffer omega, Buffer b, Buffer beta, Buffer out, double scale, typename Device::Last last) {
        Call call("onehidden_forward", Device::kType);
        check_onehidden(call, x, omega, b, beta);
        call.check("out", out, {"p"});
        const long p = call.size("p"), d = call.size("d"), h = call.size("h");
        call.dispatch([&](auto zero) {
          using T = decltype(zero);
          py::gil_scoped_release release;
          kernel(x.data<T>(), omega.data<T>(), b.data<T>(), beta.data<T>(), out.data<T>(), p, d, h, inv_sqrt<T>(d),
                 static_cast<T>(scale), Device::last(last));
        });
      },
      "OneHidden ReLU forward: out (p,) = scale * relu(x omega^T / sqrt(d) + b) beta for x (p, d), omega (h, d), "
      "b (h,), beta (h,)",
      py::arg("x"), py::arg("omega"), py::arg("b"), py::arg("beta"), py::arg("out"), py::kw_only(), py::arg("scale"),
      py::arg(Device::kLast));
}

// kernel(x, g, omega, b, beta, grad_omega, grad_b, grad_beta, p, d, h, inv_sqrt_d, scale, last)
template <typename Device, typename Kernel>
void bind_onehidden_gradient(pybind11::module_& m, Kernel kernel) {
  namespace py = pybind11;
  m.def(
      "onehidden_gradient",
      [kernel](Buffer x, Buffer g, Buffer omega, Buffer b, Buffer beta, Buffer grad_omega, Buffer grad_b,
               Buffer grad_beta, double scale, typename Device::Last last) {
        Call call("onehidden_gradient", Device::kType);
        check_onehidden(call, x, omega, b, beta);
        call.check("g", g, {"p"});
        call.check("grad_omega", grad_omega, {"h", "d"});
        call.check("grad_b", grad_b, {"h"});
        call.check("grad_beta", grad_beta, {"h"});
        const long p = call.size("p"), d = call.size("d"), h = call.size("h");
        call.dispatch([&](auto zero) {
          using T = decltype(zero);
          py::gil_scoped_release release;
          kernel(x.data<T>(), g.data<T>(), omega.data<T>(), b.data<T>(), beta.data<T>(), grad_omega.data<T>(),
                 grad_b.data<T>(), grad_beta.data<T>(), p, d, h, inv_sqrt<T>(d), static_cast<T>(scale),
                 Device::last(last));
        });
      },
      "OneHidden ReLU gradient of sum_i g_i f(x_i), g (p,): writes grad_omega (h, d), grad_b (h,), grad_beta (h,)",
      py::arg("x"), py::arg("g"), py::arg("omega"), py::arg("b"), py::arg("beta"), py::arg("grad_omega"),
      py::arg("grad_b"), py::arg("grad_beta"), py::kw_only(), py::arg("scale"), py::arg(Device::kLast));
}

// kernel(x, omega, b, beta, v_omega, v_b, v_beta, out, p, d, h, inv_sqrt_d, scale, last)
template <typename Device, typename Kernel>
void bind_onehidden_jvp(pybind11::module_& m, Kernel kernel) {
  namespace py = pybind11;
  m.def(
      "onehidden_jvp",
      [kernel](Buffer x, Buffer omega, Buffer b, Buffer beta, Buffer v_omega, Buffer v_b, Buffer v_beta, Buffer out,
               double scale, typename Device::Last last) {
        Call call("onehidden_jvp", Device::kType);
        check_onehidden(call, x, omega, b, beta);
        call.check("v_omega", v_omega, {"h", "d"});
        call.check("v_b", v_b, {"h"});
        call.check("v_beta", v_beta, {"h"});
        call.check("out", out, {"p"});
        const long p = call.size("p"), d = call.size("d"), h = call.size("h");
        call.dispatch([&](auto zero) {
          using T = decltype(zero);
          py::gil_scoped_release release;
          kernel(x.data<T>(), omega.data<T>(), b.data<T>(), beta.data<T>(), v_omega.data<T>(), v_b.data<T>(),
                 v_beta.data<T>(), out.data<T>(), p, d, h, inv_sqrt<T>(d), static_cast<T>(scale), Device::last(last));
        });
      },
      "OneHidden ReLU Jacobian-vector product: out (p,) = the derivative of f(x_i) along the parameter direction "
      "(v_omega (h, d), v_b (h,), v_beta (h,))",
      py::arg("x"), py::arg("omega"), py::arg("b"), py::arg("beta"), py::arg("v_omega"), py::arg("v_b"),
      py::arg("v_beta"), py::arg("out"), py::kw_only(), py::arg("scale"), py::arg(Device::kLast));
}

// kernel(x1, n1, x2 or nullptr, n2, omega, b, beta, d, h, scale, out, tile, last)
template <typename Device, typename Kernel>
void bind_onehidden_ntk(pybind11::module_& m, Kernel kernel) {
  namespace py = pybind11;
  m.def(
      "onehidden_ntk",
      [kernel](Buffer x1, std::optional<Buffer> x2, Buffer omega, Buffer b, Buffer beta, Buffer out, double scale,
               long tile, typename Device::Last last) {
        Call call("onehidden_ntk", Device::kType);
        call.check("x1", x1, {"n1", "d"});
        const bool cross = call.check("x2", x2, {"n2", "d"});
        if (!cross) call.bind("n2", call.size("n1"));
        call.check("omega", omega, {"h", "d"});
        call.check("b", b, {"h"});
        call.check("beta", beta, {"h"});
        call.check("out", out, {"n1", "n2"});
        const long n1 = call.size("n1"), n2 = call.size("n2"), d = call.size("d"), h = call.size("h");
        call.dispatch([&](auto zero) {
          using T = decltype(zero);
          py::gil_scoped_release release;
          kernel(x1.data<T>(), n1, cross ? x2->data<T>() : nullptr, n2, omega.data<T>(), b.data<T>(), beta.data<T>(),
                 d, h, static_cast<T>(scale), out.data<T>(), tile, Device::last(last));
        });
      },
      "Closed-form NTK of a ReLU OneHidden: out (n1, n2) = Theta(x1 (n1, d), x2 (n2, d)); x2 = None means "
      "Theta(x1, x1), exactly symmetric. `tile` neurons per activation tile.",
      py::arg("x1"), py::arg("x2"), py::arg("omega"), py::arg("b"), py::arg("beta"), py::arg("out"), py::kw_only(),
      py::arg("scale"), py::arg("tile"), py::arg(Device::kLast));
}

// kernel(f, f0, y, g, p, alpha, result, last)
template <typename Device, typename Kernel>
void bind_hinge_gradient(pybind11::module_& m, Kernel kernel) {
  namespace py = pybind11;
  m.def(
      "hinge_gradient",
      [kernel](Buffer f, Buffer f0, Buffer y, Buffer g, Buffer result, double alpha, typename Device::Last last) {
        Call call("hinge_gradient", Device::kType);
        call.check("f", f, {"p"});
        call.check("f0", f0, {"p"});
        call.check("y", y, {"p"});
        call.check("g", g, {"p"});
        call.check("result", result, {"2"}, Dtype::kFloat64);
        const long p = call.size("p");
        call.dispatch([&](auto zero) {
          using T = decltype(zero);
          py::gil_scoped_release release;
          kernel(f.data<T>(), f0.data<T>(), y.data<T>(), g.data<T>(), p, alpha, result.data<double>(),
                 Device::last(last));
        });
      },
      "Hinge loss of F = alpha (f - f0) against y, all (p,): g (p,) = dL/df, result (2,) float64 = (L, number of "
      "points with F y < 1), L = sum_i relu(1 - F_i y_i) / (p alpha^2).",
      py::arg("f"), py::arg("f0"), py::arg("y"), py::arg("g"), py::arg("result"), py::kw_only(), py::arg("alpha"),
      py::arg(Device::kLast));
}

// kernel(sigma, theta, var1, var2, weight_vars, bias_vars, layers, n1, n2, erf, symmetric, last)
template <typename Device, typename Kernel>
void bind_fc_kernels(pybind11::module_& m, Kernel kernel) {
  namespace py = pybind11;
  m.def(
      "fc_kernels",
      [kernel](Buffer sigma, Buffer theta, Buffer var1, Buffer var2, Buffer weight_vars, Buffer bias_vars,
               const std::string& act, bool symmetric, typename Device::Last last) {
        Call call("fc_kernels", Device::kType);
        call.check("sigma", sigma, {"n1", "n2"});
        call.check("theta", theta, {"n1", "n2"});
        call.check("var1", var1, {"layers", "n1"});
        call.check("var2", var2, {"layers", "n2"});
        call.check("weight_vars", weight_vars, {"layers"}, Dtype::kFloat64);
        call.check("bias_vars", bias_vars, {"layers"}, Dtype::kFloat64);
        if (act != "relu" && act != "erf")
          throw std::invalid_argument("fc_kernels: act must be 'relu' or 'erf', got '" + act + "'");
        const long layers = call.size("layers"), n1 = call.size("n1"), n2 = call.size("n2");
        if (symmetric && n1 != n2)
          throw std::invalid_argument("fc_kernels: symmetric needs a square sigma, got (" + std::to_string(n1) +
                                      ", " + std::to_string(n2) + ")");
        call.dispatch([&](auto zero) {
          using T = decltype(zero);
          py::gil_scoped_release release;
          kernel(sigma.data<T>(), theta.data<T>(), var1.data<T>(), var2.data<T>(), weight_vars.data<double>(),
                 bias_vars.data<double>(), layers, n1, n2, act == "erf", symmetric, Device::last(last));
        });
      },
      "Infinite-width layer recursion: sigma (n1, n2) Sigma_1 in, the NNGP kernel out; theta (n1, n2) the NTK out; "
      "var1 (layers, n1), var2 (layers, n2) the variances Sigma_l(x, x) entering layers 1..L; weight_vars, "
      "bias_vars (layers,) float64; symmetric: the same points on both sides (var1 == var2), sigma is symmetrised "
      "and the kernels come out exactly symmetric",
      py::arg("sigma"), py::arg("theta"), py::arg("var1"), py::arg("var2"), py::arg("weight_vars"),
      py::arg("bias_vars"), py::kw_only(), py::arg("act"), py::arg("symmetric"), py::arg(Device::kLast));
}

}  // namespace fastdyn
