// Run-time choice of the CPU kernels' instruction-set path (isa.hpp) and its bindings cpu_isa, cpu_isas,
// set_cpu_isa.
#include "cpu/isa.hpp"

#include <pybind11/stl.h>

#include <atomic>
#include <cstdlib>
#include <stdexcept>

#include "registry.hpp"

namespace fastdyn::cpu {
namespace {

constexpr const char* kNames[] = {"baseline", "avx2", "avx512"};

bool supported(Isa path) {
#if FASTDYN_X86_ISAS
  __builtin_cpu_init();
  switch (path) {
    case Isa::kBaseline:
      return true;
    case Isa::kAvx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case Isa::kAvx512:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
             __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
  }
  return false;
#else
  return path == Isa::kBaseline;  // this build has no other path
#endif
}

std::string available() {
  std::string list;
  for (const std::string& name : cpu_isas()) list += (list.empty() ? "" : ", ") + name;
  return list;
}

// The path named `name`; std::invalid_argument (what: "`what` ...") when unknown or not runnable here.
Isa parse(const std::string& name, const std::string& what) {
  for (int i = 0; i < 3; ++i) {
    if (name != kNames[i]) continue;
    if (!supported(static_cast<Isa>(i)))
      throw std::invalid_argument(what + " = '" + name + "': this CPU cannot run that path; available here: " +
                                  available());
    return static_cast<Isa>(i);
  }
  throw std::invalid_argument(what + " must be one of baseline, avx2, avx512 (available here: " + available() +
                              "), got '" + name + "'");
}

std::atomic<int> current{-1};  // the chosen path, -1 until the first use

}  // namespace

Isa isa() {
  const int chosen = current.load(std::memory_order_relaxed);
  if (chosen >= 0) return static_cast<Isa>(chosen);
  Isa path = Isa::kBaseline;
  const char* forced = std::getenv("FASTDYN_CPU_ISA");
  if (forced != nullptr && forced[0] != '\0') {
    path = parse(forced, "the environment variable FASTDYN_CPU_ISA");
  } else {
    for (Isa best : {Isa::kAvx512, Isa::kAvx2})
      if (supported(best)) {
        path = best;
        break;
      }
  }
  current.store(static_cast<int>(path), std::memory_order_relaxed);
  return path;
}

const char* cpu_isa() { return kNames[static_cast<int>(isa())]; }

std::vector<std::string> cpu_isas() {
  std::vector<std::string> names;
  for (int i = 0; i < 3; ++i)
    if (supported(static_cast<Isa>(i))) names.push_back(kNames[i]);
  return names;
}

void set_cpu_isa(const std::string& name) {
  current.store(static_cast<int>(parse(name, "set_cpu_isa: name")), std::memory_order_relaxed);
}

}  // namespace fastdyn::cpu

FASTDYN_BINDINGS(isa) {
  namespace py = pybind11;
  m.def(
      "cpu_isa", [] { return std::string(fastdyn::cpu::cpu_isa()); },
      "The instruction-set path of the dispatched CPU kernels: 'baseline', 'avx2' or 'avx512' (FASTDYN_CPU_ISA "
      "or the best this CPU runs)");
  m.def("cpu_isas", &fastdyn::cpu::cpu_isas, "The instruction-set paths this CPU runs, baseline first");
  m.def("set_cpu_isa", &fastdyn::cpu::set_cpu_isa,
        "Use instruction-set path `name` ('baseline', 'avx2' or 'avx512', one this CPU runs) from now on",
        py::arg("name"));
}
