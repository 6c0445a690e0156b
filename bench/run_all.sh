#!/usr/bin/env bash
# Every benchmark once, on a quiet machine; the raw output, headed by the machine, CPU ISA path, versions and load,
# goes to bench/results/all_cpu_<isa>_<date>.txt (and the terminal). Commit that file beside the README's figures.
#
#   bench/run_all.sh [python]          python: the venv's interpreter with fastdyn installed (default: python)
#
# Environment: FASTDYN_NT_PYTHON=<python of the neural-tangents venv> adds that peer (bench/peers); without it, its
# benchmarks skip. FASTDYN_BENCH_ROUNDS / FASTDYN_BENCH_WARMUP (default 3 / 1) set the rounds and warm-up of every
# side alike. Extra arguments for pytest go in PYTEST_ARGS, e.g. PYTEST_ARGS='-k "not 20000"'.
# Run time on the 2-core machines of this project: 14.5 minutes on Zen 4 (AVX-512), 19 minutes on Zen 3 (AVX2), with neural-tangents.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
python=$(cd "$(dirname "$(command -v "${1:-python}")")" && pwd)/$(basename "${1:-python}")  # absolute: we cd below
outside=$(mktemp -d)  # run from outside the checkout: the installed package is what runs
trap 'rm -rf "$outside"' EXIT
cd "$outside"
isa=$("$python" -c "import fastdyn._core; from fastdyn._src.backends import cpu_isa; print(cpu_isa())")
out="$root/bench/results/all_cpu_${isa}_$(date -u +%Y%m%d).txt"
{
  echo "# fastdyn benchmarks: bench/run_all.sh, $(date -u '+%Y-%m-%d %H:%M UTC'), commit" \
       "$(git -C "$root" rev-parse --short HEAD)$(git -C "$root" diff --quiet HEAD || echo ' (with uncommitted changes)')"
  echo "# machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')" \
       "(cpu family $(grep -m1 'cpu family' /proc/cpuinfo | cut -d: -f2 | tr -d ' ')," \
       "model $(grep -m1 '^model[[:space:]]*:' /proc/cpuinfo | cut -d: -f2 | tr -d ' ')), $(nproc) cores," \
       "$(awk '/MemTotal/ {printf "%.0f GiB", $2 / 2^20}' /proc/meminfo);" \
       "avx512f: $(grep -qw avx512f /proc/cpuinfo && echo yes || echo no), avx2: $(grep -qw avx2 /proc/cpuinfo && echo yes || echo no);" \
       "fastdyn CPU ISA path: $isa"
  "$python" -c "
import numpy, scipy, torch, fastdyn
print(f'# torch {torch.__version__} ({torch.get_num_threads()} threads), numpy {numpy.__version__}, scipy {scipy.__version__},',
      f'fastdyn {fastdyn.__version__}, backends {fastdyn.available_backends()}')"
  echo "# load average at the start: $(cat /proc/loadavg)"
  echo "# FASTDYN_BENCH_SMOKE=${FASTDYN_BENCH_SMOKE:-} FASTDYN_NT_PYTHON=${FASTDYN_NT_PYTHON:-} FASTDYN_BENCH_ROUNDS=${FASTDYN_BENCH_ROUNDS:-3}" \
       "FASTDYN_BENCH_WARMUP=${FASTDYN_BENCH_WARMUP:-1} PYTEST_ARGS=${PYTEST_ARGS:-}"
} | tee "$out"
status=0
eval "\"$python\" -m pytest \"$root/bench\" -c \"$root/pyproject.toml\" --rootdir \"$root\" --benchmark-only -s -q \
  -p no:cacheprovider ${PYTEST_ARGS:-}" 2>&1 | tee -a "$out" || status=$?
echo "# load average at the end: $(cat /proc/loadavg); pytest exit status $status" | tee -a "$out"
echo "raw output: $out"
exit "$status"
