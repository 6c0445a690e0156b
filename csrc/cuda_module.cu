// fastdyn._cuda: the CUDA kernels. Kernel families live in csrc/cuda/*.cu and register their
// bindings through FASTDYN_BINDINGS (registry.hpp). Imports on machines without a GPU:
// device_count() then reports 0 and the error text says why.
#include <cuda_runtime.h>

#include <string>

#include "registry.hpp"

PYBIND11_MODULE(_cuda, m) {
  m.doc() = "fastdyn compiled CUDA kernels";
  m.def("device_count", []() -> pybind11::tuple {
    int count = 0;
    cudaError_t err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess) {
      cudaGetLastError();  // clear the sticky error so later probes start clean
      return pybind11::make_tuple(0, std::string(cudaGetErrorString(err)));
    }
    return pybind11::make_tuple(count, std::string(""));
  });
  m.def("build_info", [] {
    pybind11::dict info;
    info["cuda_runtime"] = CUDART_VERSION;
    return info;
  });
  for (auto binder : fastdyn::binders()) binder(m);
}
