// Error checking, launch helpers and stream-ordered scratch shared by the CUDA kernel files.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "buffer.hpp"

namespace fastdyn {

inline void cuda_check(cudaError_t err, const char* what) {
  if (err != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(err));
}

// The `stream` argument of every CUDA binding: torch.cuda.current_stream(device).cuda_stream.
inline cudaStream_t as_stream(std::uintptr_t stream) { return reinterpret_cast<cudaStream_t>(stream); }

// The device of the CUDA bindings for the signatures of signatures.hpp: DLPack device type and the last argument.
struct Cuda {
  static constexpr DLDeviceType kType = kDLCUDA;
  static constexpr const char* kLast = "stream";
  using Last = std::uintptr_t;
  static cudaStream_t last(std::uintptr_t stream) { return as_stream(stream); }
};

inline unsigned blocks_for(long long n, unsigned threads) {
  return static_cast<unsigned>((n + threads - 1) / threads);
}

// Kernel scratch of `count` T on the device, allocated and freed in the order of `stream` (cudaMallocAsync from the
// device's default memory pool); the outputs of a kernel come from the caller, its scratch from here.
template <typename T>
class DeviceScratch {
 public:
  DeviceScratch(std::size_t count, cudaStream_t stream, const char* what) : stream_(stream) {
    if (count == 0) return;
    const cudaError_t err = cudaMallocAsync(reinterpret_cast<void**>(&data_), count * sizeof(T), stream);
    if (err != cudaSuccess) {
      cudaGetLastError();  // clear it, so the next launch check does not report this failure again
      throw std::runtime_error(std::string(what) + ": cannot allocate " + std::to_string(count * sizeof(T)) +
                               " bytes of scratch on the GPU (" + cudaGetErrorString(err) + ")");
    }
  }
  ~DeviceScratch() {
    if (data_ != nullptr) cudaFreeAsync(data_, stream_);
  }
  DeviceScratch(const DeviceScratch&) = delete;
  DeviceScratch& operator=(const DeviceScratch&) = delete;

  T* get() const { return data_; }

 private:
  T* data_ = nullptr;
  cudaStream_t stream_;
};

}  // namespace fastdyn
