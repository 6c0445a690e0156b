// fastdyn._core: the C++ kernels (OpenMP when the compiler has it, serial otherwise). Kernel families live in
// csrc/cpu/*.cpp and register their bindings through FASTDYN_BINDINGS (registry.hpp).
#include "cpu/parallel.hpp"
#include "registry.hpp"

extern "C" char* scipy_openblas_get_config(void);

PYBIND11_MODULE(_core, m) {
  m.doc() = "fastdyn compiled CPU kernels (C++17, OpenMP when available, OpenBLAS)";
  m.def("build_info", [] {
    pybind11::dict info;
    info["compiler"] = std::string(__VERSION__);
#ifdef _OPENMP
    info["openmp"] = _OPENMP;  // the supported OpenMP version, yyyymm
#else
    info["openmp"] = 0;  // built without OpenMP: the kernels run serially
#endif
    info["native"] = FASTDYN_NATIVE_BUILD != 0;  // compiled with -march=native (FASTDYN_NATIVE)
    info["threads"] = omp_get_max_threads();  // OpenMP's default thread count (1 without OpenMP)
    info["blas"] = std::string(scipy_openblas_get_config());
    return info;
  });
  for (auto binder : fastdyn::binders()) binder(m);
}
