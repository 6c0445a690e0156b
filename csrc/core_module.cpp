// fastdyn._core: the C++/OpenMP kernels. Kernel families live in csrc/cpu/*.cpp and register
// their bindings through FASTDYN_BINDINGS (registry.hpp).
#include <omp.h>

#include "registry.hpp"

extern "C" char* scipy_openblas_get_config(void);

PYBIND11_MODULE(_core, m) {
  m.doc() = "fastdyn compiled CPU kernels (C++17, OpenMP, OpenBLAS)";
  m.def("build_info", [] {
    pybind11::dict info;
    info["compiler"] = std::string(__VERSION__);
    info["openmp"] = _OPENMP;
    info["max_threads"] = omp_get_max_threads();
    info["blas"] = std::string(scipy_openblas_get_config());
    return info;
  });
  for (auto binder : fastdyn::binders()) binder(m);
}
