// Closed-form empirical NTK of the one-hidden-layer ReLU network on the GPU (maths in csrc/cpu/ntk.cpp):
//   Theta(x, x') = scale^2 [ sum_n A_n(x) A_n(x') + (x.x'/d + 1) sum_n beta_n^2 D_n(x) D_n(x') ].
// Own kernels, no cuBLAS, so fp32 is true fp32 (never TF32) and fp64 is fp64:
//   1. relu_tile_kernel: per neuron tile, A^T and (beta D)^T as (tile x N) arrays (points contiguous).
//   2. gemm_tn_kernel: C (M x N) (+)= alpha * At^T Bt for At (K x M), Bt (K x N): 128 x 128 block tiles, 8-deep
//      shared-memory k-slabs, 8 x 8 register blocking per thread. gridDim.z = 2 runs the A and the beta*D products in
//      one launch. Symmetric (x2 absent): blocks strictly below the diagonal return at once (upper triangle only).
//      The combine step is the same kernel over X1^T X2 with the epilogue out = s^2 (S1 + (g/d + 1) S2).
//   3. mirror_kernel: copies the upper triangle into the lower one so the result is exactly symmetric.
// The caller allocates the result; the scratch (S2 = the beta*D sums, the activation tiles, X^T) is stream-ordered
// (DeviceScratch) on the caller's stream.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>

#include "cuda/check.cuh"
#include "registry.hpp"
#include "signatures.hpp"

namespace fastdyn {
namespace {

constexpr int kBlock = 128;             // block tile edge (rows and columns of C)
constexpr int kDepth = 8;               // k-slab depth held in shared memory
constexpr int kThreadsPerSide = 16;     // 16 x 16 threads, each owns 8 x 8 outputs
constexpr int kPerThread = kBlock / kThreadsPerSide;
constexpr int kGemmThreads = kThreadsPerSide * kThreadsPerSide;
constexpr int kActThreads = 256;
constexpr int kMirrorTile = 32;
constexpr long kMaxTile = 65535;  // neurons per tile: gridDim.y of the activations launch

// at[n][i] = relu(pre_in), bt[n][i] = beta_n [pre_in > 0] for neurons n0 + n, n < nt; at, bt are (nt x p).
template <typename T>
__global__ void relu_tile_kernel(const T* __restrict__ x, long p, long d, const T* __restrict__ omega,
                                 const T* __restrict__ b, const T* __restrict__ beta, long n0, T inv_sqrt_d,
                                 T* __restrict__ at, T* __restrict__ bt) {
  const long i = static_cast<long>(blockIdx.x) * blockDim.x + threadIdx.x;
  const long n = blockIdx.y;  // neuron within the tile: the whole block reads the same omega row (broadcast)
  if (i >= p) return;
  const T* w = omega + (n0 + n) * d;
  const T* xi = x + i * d;
  T pre = 0;
  for (long k = 0; k < d; ++k) pre += w[k] * xi[k];
  pre = pre * inv_sqrt_d + b[n0 + n];
  const bool on = pre > T(0);
  at[n * p + i] = on ? pre : T(0);
  bt[n * p + i] = on ? beta[n0 + n] : T(0);
}

// xt (d x p) = x^T for x (p x d): one thread per output, so the writes (points contiguous) coalesce.
template <typename T>
__global__ void transpose_kernel(const T* __restrict__ x, long p, long d, T* __restrict__ xt) {
  const long total = p * d;
  for (long e = static_cast<long>(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += static_cast<long>(gridDim.x) * blockDim.x) {
    const long k = e / p, i = e % p;
    xt[e] = x[i * d + k];
  }
}

enum class Epilogue { kStore, kAccumulate, kCombine };

// Launch arguments; blockIdx.z = p computes c[p] (+)= alpha a[p]^T b[p] (p = 0 only for the combine).
template <typename T>
struct GemmArgs {
  const T* a[2];  // (k x m), leading dimension m
  const T* b[2];  // (k x n), leading dimension n
  T* c[2];        // (m x n)
  long m, n, k;
  T alpha;
  bool symmetric;
  // kCombine: c[0] holds S1 and receives the result, s2 holds S2, scale2 = scale^2.
  const T* s2;
  T scale2;
};

template <typename T, Epilogue kMode>
__global__ void __launch_bounds__(kGemmThreads) gemm_tn_kernel(GemmArgs<T> args) {
  const int row_block = blockIdx.y, col_block = blockIdx.x;
  if (args.symmetric && row_block > col_block) return;  // strictly below the diagonal: mirrored later
  const bool second = blockIdx.z == 1;  // selects without dynamic indexing, which would copy args to local memory
  const T* __restrict__ a = second ? args.a[1] : args.a[0];
  const T* __restrict__ b = second ? args.b[1] : args.b[0];
  T* __restrict__ c = second ? args.c[1] : args.c[0];
  const long m = args.m, n = args.n, k = args.k;
  const long row0 = static_cast<long>(row_block) * kBlock, col0 = static_cast<long>(col_block) * kBlock;

  __shared__ T a_slab[kDepth][kBlock];
  __shared__ T b_slab[kDepth][kBlock];
  const int tx = threadIdx.x % kThreadsPerSide, ty = threadIdx.x / kThreadsPerSide;

  T acc[kPerThread][kPerThread];
#pragma unroll
  for (int r = 0; r < kPerThread; ++r)
#pragma unroll
    for (int q = 0; q < kPerThread; ++q) acc[r][q] = T(0);

  for (long k0 = 0; k0 < k; k0 += kDepth) {
    // Each slab is kDepth x kBlock = 1024 values, 4 per thread; consecutive threads read consecutive points.
#pragma unroll
    for (int e = threadIdx.x; e < kDepth * kBlock; e += kGemmThreads) {
      const int kk = e / kBlock, col = e % kBlock;
      const long kg = k0 + kk;
      a_slab[kk][col] = (kg < k && row0 + col < m) ? a[kg * m + row0 + col] : T(0);
      b_slab[kk][col] = (kg < k && col0 + col < n) ? b[kg * n + col0 + col] : T(0);
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kDepth; ++kk) {
      T a_frag[kPerThread], b_frag[kPerThread];
      // Strided ownership (rows ty + 16 r, columns tx + 16 q): conflict-free shared loads, coalesced stores.
#pragma unroll
      for (int r = 0; r < kPerThread; ++r) a_frag[r] = a_slab[kk][ty + kThreadsPerSide * r];
#pragma unroll
      for (int q = 0; q < kPerThread; ++q) b_frag[q] = b_slab[kk][tx + kThreadsPerSide * q];
#pragma unroll
      for (int r = 0; r < kPerThread; ++r)
#pragma unroll
        for (int q = 0; q < kPerThread; ++q) acc[r][q] = fma(a_frag[r], b_frag[q], acc[r][q]);
    }
    __syncthreads();
  }

#pragma unroll
  for (int r = 0; r < kPerThread; ++r) {
    const long i = row0 + ty + kThreadsPerSide * r;
    if (i >= m) continue;
#pragma unroll
    for (int q = 0; q < kPerThread; ++q) {
      const long j = col0 + tx + kThreadsPerSide * q;
      if (j >= n) continue;
      const long at = i * n + j;
      const T value = args.alpha * acc[r][q];
      if (kMode == Epilogue::kStore) {
        c[at] = value;
      } else if (kMode == Epilogue::kAccumulate) {
        c[at] += value;
      } else {
        c[at] = args.scale2 * (c[at] + (value + T(1)) * args.s2[at]);
      }
    }
  }
}

// out[i][j] = out[j][i] for i > j, through a shared tile so reads and writes stay coalesced.
template <typename T>
__global__ void mirror_kernel(T* out, long n) {
  const int bi = blockIdx.y, bj = blockIdx.x;  // destination tile (rows bi, columns bj), lower part only
  if (bj > bi) return;
  __shared__ T tile[kMirrorTile][kMirrorTile + 1];
  const long src_row = static_cast<long>(bj) * kMirrorTile + threadIdx.y;  // read the transposed (upper) tile
  const long src_col = static_cast<long>(bi) * kMirrorTile + threadIdx.x;
  for (int s = 0; s < kMirrorTile; s += blockDim.y)
    if (src_row + s < n && src_col < n) tile[threadIdx.y + s][threadIdx.x] = out[(src_row + s) * n + src_col];
  __syncthreads();
  const long dst_row = static_cast<long>(bi) * kMirrorTile + threadIdx.y;
  const long dst_col = static_cast<long>(bj) * kMirrorTile + threadIdx.x;
  for (int s = 0; s < kMirrorTile; s += blockDim.y)
    if (dst_row + s < n && dst_col < n && dst_col < dst_row + s)
      out[(dst_row + s) * n + dst_col] = tile[threadIdx.x][threadIdx.y + s];
}

template <typename T, Epilogue kMode>
void launch_gemm(const GemmArgs<T>& args, int products, cudaStream_t stream) {
  const dim3 grid(blocks_for(args.n, kBlock), blocks_for(args.m, kBlock), products);
  gemm_tn_kernel<T, kMode><<<grid, kGemmThreads, 0, stream>>>(args);
  cuda_check(cudaGetLastError(), "onehidden_ntk gemm launch");
}

constexpr unsigned kTransposeThreads = 256, kMaxTransposeBlocks = 4096;

// x^T of x (p x d) into new scratch on `stream`.
template <typename T>
void transpose(const T* x, long p, long d, DeviceScratch<T>& xt, cudaStream_t stream) {
  const unsigned blocks = std::min(blocks_for(p * d, kTransposeThreads), kMaxTransposeBlocks);
  transpose_kernel<T><<<blocks, kTransposeThreads, 0, stream>>>(x, p, d, xt.get());
  cuda_check(cudaGetLastError(), "onehidden_ntk transpose launch");
}

// Device buffers: x1 (n1 x d), x2 (n2 x d) or nullptr for Theta(x1, x1); omega (h x d), b, beta (h,); out (n1 x n2).
template <typename T>
void onehidden_relu_ntk(const T* x1, long n1, const T* x2, long n2, const T* omega, const T* b, const T* beta, long d,
                        long h, T scale, T* out, long tile, cudaStream_t stream) {
  const bool symmetric = x2 == nullptr;
  if (symmetric) n2 = n1;
  if (n1 == 0 || n2 == 0) return;
  tile = std::max(1L, std::min({tile, h, kMaxTile}));
  const char* what = "onehidden_ntk";
  const auto count = [](long rows, long cols) { return static_cast<std::size_t>(rows) * static_cast<std::size_t>(cols); };
  DeviceScratch<T> s2(count(n1, n2), stream, what);  // sum_n beta_n^2 D_n D_n'; `out` holds sum_n A_n A_n'
  DeviceScratch<T> at1(count(tile, n1), stream, what), bt1(count(tile, n1), stream, what);
  DeviceScratch<T> at2(symmetric ? 0 : count(tile, n2), stream, what), bt2(symmetric ? 0 : count(tile, n2), stream, what);
  DeviceScratch<T> xt1(count(d, n1), stream, what), xt2(symmetric ? 0 : count(d, n2), stream, what);
  transpose(x1, n1, d, xt1, stream);
  if (!symmetric) transpose(x2, n2, d, xt2, stream);
  T* const act2 = symmetric ? at1.get() : at2.get();
  T* const beta_d2 = symmetric ? bt1.get() : bt2.get();
  const T* const x2t = symmetric ? xt1.get() : xt2.get();
  const T inv_sqrt_d = T(1) / std::sqrt(T(d));
  for (long n0 = 0; n0 < h; n0 += tile) {
    const long nt = std::min(tile, h - n0);
    relu_tile_kernel<T><<<dim3(blocks_for(n1, kActThreads), static_cast<unsigned>(nt)), kActThreads, 0, stream>>>(
        x1, n1, d, omega, b, beta, n0, inv_sqrt_d, at1.get(), bt1.get());
    cuda_check(cudaGetLastError(), "onehidden_ntk activations launch");
    if (!symmetric) {
      relu_tile_kernel<T><<<dim3(blocks_for(n2, kActThreads), static_cast<unsigned>(nt)), kActThreads, 0, stream>>>(
          x2, n2, d, omega, b, beta, n0, inv_sqrt_d, act2, beta_d2);
      cuda_check(cudaGetLastError(), "onehidden_ntk activations launch");
    }
    GemmArgs<T> args{{at1.get(), bt1.get()}, {act2, beta_d2}, {out, s2.get()}, n1, n2, nt, T(1), symmetric,
                     nullptr, T(0)};
    if (n0 == 0)
      launch_gemm<T, Epilogue::kStore>(args, 2, stream);
    else
      launch_gemm<T, Epilogue::kAccumulate>(args, 2, stream);
  }
  GemmArgs<T> combine{{xt1.get(), xt1.get()}, {x2t, x2t}, {out, out}, n1, n2, d, T(1) / T(d), symmetric, s2.get(),
                      scale * scale};
  launch_gemm<T, Epilogue::kCombine>(combine, 1, stream);
  if (symmetric) {
    const unsigned tiles = blocks_for(n1, kMirrorTile);
    mirror_kernel<T><<<dim3(tiles, tiles), dim3(kMirrorTile, 8), 0, stream>>>(out, n1);
    cuda_check(cudaGetLastError(), "onehidden_ntk mirror launch");
  }
}

}  // namespace
}  // namespace fastdyn

FASTDYN_BINDINGS(ntk) {
  fastdyn::bind_onehidden_ntk<fastdyn::Cuda>(m, [](auto... args) { fastdyn::onehidden_relu_ntk(args...); });
}
