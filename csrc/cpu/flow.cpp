// Gradient flow of the seed's ReLU OneHidden under the alpha-trick hinge loss, advanced in C++ (registry operation
// "flow.onehidden_hinge"): the piecewise-exact integrator of fastdyn/_src/train/exact.py, whose docstring has the
// maths, step for step the same operations as its Python-driven stepper (ExactFlowStepper), with no Python per step.
//
// Inside a region where the activation pattern a_ni = [pre_ni > 0] and the hinge active set A = {i : F_i y_i < 1}
// are fixed, the flow of each neuron is linear with constant coefficients, the moments over the active points
//   u_n = scale sum_{i in A} g_i a_ni x_i / sqrt(d),  ub_n = scale sum_{i in A} g_i a_ni,  q_n = omega_n.u_n + b_n ub_n
// (g_i = dL/df_i = -y_i / (p alpha)), and is solved exactly: a hyperbolic rotation of (beta_n, (omega_n, b_n)) along
// v_n = (u_n, ub_n) (advance below). A step advances by that solution; its error comes only from the pattern and
// active-set switches inside it, estimated by step doubling (one step of tau against two of tau / 2).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <string>
#include <vector>

#include "cpu/onehidden.hpp"
#include "cpu/parallel.hpp"
#include "registry.hpp"
#include "signatures.hpp"

namespace fastdyn {
namespace {

template <typename T>
struct Weights {
  std::vector<T> omega, b, beta;  // (h, d), (h,), (h,)
  Weights(long h, long d) : omega(static_cast<size_t>(h * d)), b(static_cast<size_t>(h)), beta(static_cast<size_t>(h)) {}
};

template <typename T>
struct Moments {
  std::vector<T> u, ub, q;  // (h, d), (h,), (h,)
  long active = 0;          // points with F y < 1
  Moments(long h, long d) : u(static_cast<size_t>(h * d)), ub(static_cast<size_t>(h)), q(static_cast<size_t>(h)) {}
};

struct Settings {
  double alpha, scale, tol, max_dout, min_dt, max_time, t_stop, max_seconds;
  long max_steps;
  int threads;
};

struct Progress {
  double t, dt, dt_max;
  long steps = 0, rejected = 0, hinge_events = 0;
  std::string stop;  // "", "nonfinite" or "dt_underflow" (a stop of the run); "" also after margins / time
};

template <typename T>
class HingeFlow {
 public:
  HingeFlow(const T* x, const T* y, const T* f0, long p, long d, long h, const Settings& s)
      : x_(x), y_(y), f0_(f0), p_(p), d_(d), h_(h), s_(s), f_(static_cast<size_t>(p)),
        xa_(static_cast<size_t>(p * d)), ga_(static_cast<size_t>(p)), ones_(static_cast<size_t>(h), T(1)) {}

  // F (p,) = alpha (f(w) - f0)
  void outputs(const Weights<T>& w, T* F) {
    cpu::onehidden_forward<T>(x_, w.omega.data(), w.b.data(), w.beta.data(), f_.data(), p_, d_, h_, inv_sqrt<T>(d_),
                              static_cast<T>(s_.scale), s_.threads);
    const T alpha = static_cast<T>(s_.alpha);
    for (long i = 0; i < p_; ++i) F[i] = alpha * (f_[i] - f0_[i]);
  }

  // The moments at w of the points active at F: the gradient kernel with beta = 1 on the active points, gathered
  // in index order, with g_i = -y_i / (p alpha).
  void moments(const Weights<T>& w, const T* F, Moments<T>& m) {
    const T denominator = static_cast<T>(static_cast<double>(p_) * s_.alpha);
    long n = 0;
    for (long i = 0; i < p_; ++i) {
      if (F[i] * y_[i] < T(1)) {
        std::copy(x_ + i * d_, x_ + (i + 1) * d_, xa_.data() + n * d_);
        ga_[n++] = -y_[i] / denominator;
      }
    }
    m.active = n;
    if (n == 0) {
      std::fill(m.u.begin(), m.u.end(), T(0));
      std::fill(m.ub.begin(), m.ub.end(), T(0));
      std::fill(m.q.begin(), m.q.end(), T(0));
      return;
    }
    cpu::onehidden_gradient<T>(xa_.data(), ga_.data(), w.omega.data(), w.b.data(), ones_.data(), m.u.data(),
                               m.ub.data(), m.q.data(), n, d_, h_, inv_sqrt<T>(d_), static_cast<T>(s_.scale),
                               s_.threads);
  }

  // out = the exact frozen-pattern flow from w for time tau: with r = |v|, v = (u, ub), z = r tau,
  //   beta' = cosh(z) beta - sinh(z)/r q,   (omega', b') = (omega, b) + (2 sinh(z/2)^2/r^2 q - sinh(z)/r beta) v
  void advance(const Weights<T>& w, const Moments<T>& m, T tau, Weights<T>& out) const {
    const long d = d_;
#pragma omp parallel for schedule(static) num_threads(s_.threads) if (h_ * d_ >= 1L << 16)
    for (long n = 0; n < h_; ++n) {
      const T* u = m.u.data() + n * d;
      T r2 = m.ub[n] * m.ub[n];
      for (long k = 0; k < d; ++k) r2 += u[k] * u[k];
      const T r = std::sqrt(r2), z = r * tau;
      T cosh_z = T(1), sinh_r = tau, coshm1_r2 = tau * tau / T(2);
      if (z > T(0)) {
        const T half = std::sinh(z / T(2));
        cosh_z = std::cosh(z), sinh_r = std::sinh(z) / r, coshm1_r2 = T(2) * half * half / r2;
      }
      out.beta[n] = cosh_z * w.beta[n] - sinh_r * m.q[n];
      const T coef = coshm1_r2 * m.q[n] - sinh_r * w.beta[n];
      for (long k = 0; k < d; ++k) out.omega[n * d + k] = w.omega[n * d + k] + coef * u[k];
      out.b[n] = w.b[n] + coef * m.ub[n];
    }
  }

  // max_n |w1_n - w2_n|_1 / |w_n|_1 over the neurons' (omega_n, b_n, beta_n)
  T weight_error(const Weights<T>& w, const Weights<T>& w1, const Weights<T>& w2) const {
    T worst = T(0);
    for (long n = 0; n < h_; ++n) {
      T diff = std::abs(w1.b[n] - w2.b[n]) + std::abs(w1.beta[n] - w2.beta[n]);
      T size = std::abs(w.b[n]) + std::abs(w.beta[n]);
      for (long k = 0; k < d_; ++k) {
        diff += std::abs(w1.omega[n * d_ + k] - w2.omega[n * d_ + k]);
        size += std::abs(w.omega[n * d_ + k]);
      }
      worst = std::max(worst, size > T(0) ? diff / size : diff);
    }
    return worst;
  }

 private:
  const T *x_, *y_, *f0_;
  long p_, d_, h_;
  Settings s_;
  std::vector<T> f_, xa_, ga_, ones_;
};

// Advance w (in place) and F by up to s.max_steps accepted steps; stops early at every margin >= 1, at max_time,
// at t >= t_stop (the next snapshot) or after max_seconds (both after one step at least), or for NaN/Inf / dt
// below min_dt (then Progress::stop).
template <typename T>
Progress hinge_flow(const T* x, const T* y, const T* f0, T* omega, T* b, T* beta, T* F, long p, long d, long h,
                    const Settings& s, double t, double dt, double dt_max) {
  use_threads(s.threads);
  HingeFlow<T> flow(x, y, f0, p, d, h, s);
  Weights<T> w(h, d), w1(h, d), wh(h, d), w2(h, d);
  std::copy(omega, omega + h * d, w.omega.begin());
  std::copy(b, b + h, w.b.begin());
  std::copy(beta, beta + h, w.beta.begin());
  Moments<T> m(h, d), mh(h, d);
  std::vector<T> Fh(static_cast<size_t>(p)), F1(static_cast<size_t>(p)), F2(static_cast<size_t>(p));
  flow.moments(w, F, m);
  Progress progress{t, dt, dt_max};
  const auto start = std::chrono::steady_clock::now();
  auto seconds = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(); };
  // at least one accepted step per call, then up to the next snapshot time and the chunk's seconds
  while (m.active > 0 && progress.t < s.max_time && progress.steps < s.max_steps &&
         (progress.steps == 0 || (progress.t < s.t_stop && seconds() < s.max_seconds))) {
    const double step = std::min(progress.dt, s.max_time - progress.t);
    const T tau = static_cast<T>(step), half = static_cast<T>(step / 2);
    flow.advance(w, m, tau, w1);
    flow.advance(w, m, half, wh);
    flow.outputs(wh, Fh.data());
    flow.moments(wh, Fh.data(), mh);
    flow.advance(wh, mh, half, w2);
    flow.outputs(w1, F1.data());
    flow.outputs(w2, F2.data());
    T output_error = T(0), dout = T(0);
    bool finite = true;
    for (long i = 0; i < p; ++i) {
      output_error = std::max(output_error, std::abs(F1[i] - F2[i]));
      dout = std::max(dout, std::abs(F2[i] - F[i]));
      finite = finite && std::isfinite(F2[i]) && std::isfinite(F1[i]);
    }
    const double error = std::max<double>(output_error, flow.weight_error(w, w1, w2)) / s.tol;
    const double ratio = std::max(error, static_cast<double>(dout) / s.max_dout);
    finite = finite && std::isfinite(ratio);
    if (finite && ratio <= 1.0) {
      for (long i = 0; i < p; ++i) progress.hinge_events += (F[i] * y[i] < T(1)) != (F2[i] * y[i] < T(1));
      std::swap(w, w2);
      std::copy(F2.begin(), F2.end(), F);
      flow.moments(w, F, m);
      progress.t += step;
      progress.dt_max = std::max(progress.dt_max, step);
      progress.dt = step * (ratio > 0.0 ? std::min(2.0, 0.9 / ratio) : 2.0);
      ++progress.steps;
    } else {
      ++progress.rejected;
      progress.dt = step * (finite ? std::max(0.1, std::min(0.5, 0.9 / ratio)) : 0.1);
      if (progress.dt < s.min_dt) {
        progress.stop = finite ? "dt_underflow" : "nonfinite";
        break;
      }
    }
  }
  std::copy(w.omega.begin(), w.omega.end(), omega);
  std::copy(w.b.begin(), w.b.end(), b);
  std::copy(w.beta.begin(), w.beta.end(), beta);
  return progress;
}

}  // namespace
}  // namespace fastdyn

FASTDYN_BINDINGS(flow) {
  namespace py = pybind11;
  using fastdyn::Buffer, fastdyn::Call;
  m.def(
      "onehidden_hinge_flow",
      [](Buffer x, Buffer y, Buffer f0, Buffer omega, Buffer b, Buffer beta, Buffer F, double alpha, double scale,
         double t, double dt, double dt_max, double tol, double max_dout, double min_dt, double max_time,
         double t_stop, long max_steps, double max_seconds, int threads) {
        Call call("onehidden_hinge_flow", fastdyn::kDLCPU);
        fastdyn::check_onehidden(call, x, omega, b, beta);
        call.check("y", y, {"p"});
        call.check("f0", f0, {"p"});
        call.check("F", F, {"p"});
        const long p = call.size("p"), d = call.size("d"), h = call.size("h");
        // below ~1e5 multiply-adds a kernel call is shorter than waking a second thread (which costs far more on
        // a machine whose cores are busy with other work)
        const int n_threads = p * h * d < (1L << 17) ? 1 : fastdyn::use_threads(threads);
        const fastdyn::Settings settings{alpha, scale, tol, max_dout, min_dt, max_time, t_stop, max_seconds,
                                         max_steps, n_threads};
        fastdyn::Progress progress;
        call.dispatch([&](auto zero) {
          using T = decltype(zero);
          py::gil_scoped_release release;
          progress = fastdyn::hinge_flow<T>(x.data<T>(), y.data<T>(), f0.data<T>(), omega.data<T>(), b.data<T>(),
                                            beta.data<T>(), F.data<T>(), p, d, h, settings, t, dt, dt_max);
        });
        py::dict out;
        out["t"] = progress.t, out["dt"] = progress.dt, out["dt_max"] = progress.dt_max;
        out["steps"] = progress.steps, out["rejected"] = progress.rejected;
        out["hinge_events"] = progress.hinge_events, out["stop"] = progress.stop;
        return out;
      },
      "Gradient flow of a ReLU OneHidden on the alpha-trick hinge loss (fastdyn/_src/train/exact.py): advances "
      "omega (h, d), b (h,), beta (h,) and F (p,) = alpha (f - f0) in place by up to max_steps accepted steps; "
      "returns t, dt, dt_max, steps, rejected, hinge_events and stop ('', 'nonfinite' or 'dt_underflow').",
      py::arg("x"), py::arg("y"), py::arg("f0"), py::arg("omega"), py::arg("b"), py::arg("beta"), py::arg("F"),
      py::kw_only(), py::arg("alpha"), py::arg("scale"), py::arg("t"), py::arg("dt"), py::arg("dt_max"),
      py::arg("tol"), py::arg("max_dout"), py::arg("min_dt"), py::arg("max_time"), py::arg("t_stop"),
      py::arg("max_steps"), py::arg("max_seconds"), py::arg("threads"));
}
