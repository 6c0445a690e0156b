// Each kernel source file registers its Python bindings with FASTDYN_BINDINGS(name) { m.def(...); },
// so adding a kernel family never touches the module files (core_module.cpp, cuda_module.cu). Buffers cross the
// boundary as DLPack arrays checked by fastdyn::Call (buffer.hpp).
#pragma once
#include <pybind11/pybind11.h>

#include <vector>

#include "buffer.hpp"

namespace fastdyn {

using Binder = void (*)(pybind11::module_&);

// The binders of the extension module being built. Each module is its own shared library with hidden
// symbols (pybind11's default), so _core and _cuda each get their own list.
inline std::vector<Binder>& binders() {
  static std::vector<Binder> list;
  return list;
}

struct BindingRegistration {
  explicit BindingRegistration(Binder binder) { binders().push_back(binder); }
};

}  // namespace fastdyn

#define FASTDYN_BINDINGS(name)                                                      \
  static void fastdyn_bind_##name(pybind11::module_& m);                             \
  static ::fastdyn::BindingRegistration fastdyn_registration_##name(&fastdyn_bind_##name); \
  static void fastdyn_bind_##name(pybind11::module_& m)
