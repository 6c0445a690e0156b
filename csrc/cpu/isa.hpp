// The instruction-set path of the dispatched CPU kernels (csrc/cpu/isa/): "baseline" (SSE2 on x86-64; NEON or
// scalar code elsewhere), "avx2" (AVX2 + FMA) or "avx512" (AVX-512 F/DQ/BW/VL). One build carries every path its
// target can run; on first use the best one this CPU supports is chosen (__builtin_cpu_supports, x86 only), or
// the one the environment variable FASTDYN_CPU_ISA names.
#pragma once
#include <string>
#include <vector>

namespace fastdyn::cpu {

enum class Isa { kBaseline, kAvx2, kAvx512 };

// The path in use; std::invalid_argument when FASTDYN_CPU_ISA names one this CPU (or build) cannot run.
Isa isa();
// Its name.
const char* cpu_isa();
// The names of the paths this CPU runs, baseline first.
std::vector<std::string> cpu_isas();
// Use path `name` from now on (every thread); std::invalid_argument naming the available ones otherwise.
void set_cpu_isa(const std::string& name);

}  // namespace fastdyn::cpu
