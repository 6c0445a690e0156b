// The buffer boundary of every kernel binding: arrays cross from Python as objects with __dlpack__ (torch tensors,
// numpy arrays) and are checked here, in one place, before any kernel runs.
//
//   m.def("kernel", [](Buffer x, Buffer out, double scale, int threads) {
//     Call call("kernel", kDLCPU);
//     call.check("x", x, {"p", "d"});           // dims named once, agreed on by every buffer of the call
//     call.check("out", out, {"p"});            // float32/float64, the same for every float buffer
//     call.check("stats", stats, {"p", "4"}, Dtype::kFloat64);  // a fixed dtype; a digit string is a constant
//     call.dispatch([&](auto zero) { using T = decltype(zero); ... kernel<T>(x.data<T>(), ...); });
//   }, py::arg("x"), py::arg("out"), py::kw_only(), py::arg("scale"), py::arg("threads"));
//
// A Buffer holds the producer's DLPack capsule for the call without consuming it, so the producer's deleter runs
// when the capsule dies (after the call); the memory stays owned by the tensor / array it came from.
#pragma once
#include <pybind11/pybind11.h>

#include <pybind11/stl.h>  // std::optional<Buffer>: None or an array

#include <cctype>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace fastdyn {

// ---- DLPack (stable ABI, https://dmlc.github.io/dlpack/latest/c_api.html): the structs a consumer reads ----
enum DLDeviceType : int32_t { kDLCPU = 1, kDLCUDA = 2, kDLCUDAHost = 3, kDLCUDAManaged = 13 };
enum DLDataTypeCode : uint8_t { kDLInt = 0, kDLUInt = 1, kDLFloat = 2, kDLBfloat = 4, kDLComplex = 5, kDLBool = 6 };

struct DLDevice {
  int32_t device_type;  // DLDeviceType
  int32_t device_id;
};

struct DLDataType {
  uint8_t code;  // DLDataTypeCode
  uint8_t bits;
  uint16_t lanes;
};

struct DLTensor {
  void* data;
  DLDevice device;
  int32_t ndim;
  DLDataType dtype;
  int64_t* shape;    // (ndim,)
  int64_t* strides;  // (ndim,) in elements, or null for a compact row-major tensor
  uint64_t byte_offset;
};

struct DLManagedTensor {
  DLTensor dl_tensor;
  void* manager_ctx;
  void (*deleter)(DLManagedTensor* self);
};

// ---- Buffer: one array argument of a kernel binding ----
class Buffer {
 public:
  Buffer() = default;
  explicit Buffer(pybind11::object source) : source_(std::move(source)) {}

  const pybind11::object& source() const { return source_; }

  // The first element, typed; T must be the dtype Call::check accepted.
  template <typename T>
  T* data() const {
    return reinterpret_cast<T*>(static_cast<char*>(tensor_->data) + tensor_->byte_offset);
  }

 private:
  friend class Call;
  pybind11::object source_;   // the Python array
  pybind11::object capsule_;  // its DLPack capsule, alive until the Buffer dies
  const DLTensor* tensor_ = nullptr;
};

enum class Dtype { kFloat, kFloat64, kInt32, kUInt64 };  // kFloat: float32 or float64, shared by the call

// The checks of one kernel call: device, dtype, shape and layout of every buffer, and their agreement.
class Call {
 public:
  Call(const char* kernel, DLDeviceType device) : kernel_(kernel), device_type_(device) {}

  // Export `buffer` through __dlpack__ and require: the call's device type (and one device id), `dtype`, the
  // dims `shape` (names bound by their first use, digit strings constants) and C-contiguity.
  void check(const char* name, Buffer& buffer, std::initializer_list<const char*> shape, Dtype dtype = Dtype::kFloat) {
    namespace py = pybind11;
    try {
      buffer.capsule_ = export_dlpack(buffer.source_);
    } catch (py::error_already_set& error) {
      throw py::type_error(where(name) + "cannot be exported through __dlpack__ (" + std::string(error.what()) + ")");
    }
    auto* managed = static_cast<DLManagedTensor*>(PyCapsule_GetPointer(buffer.capsule_.ptr(), "dltensor"));
    if (managed == nullptr) {
      PyErr_Clear();
      throw py::type_error(where(name) + "__dlpack__ did not return a 'dltensor' capsule");
    }
    const DLTensor& t = managed->dl_tensor;
    buffer.tensor_ = &t;
    check_device(name, t.device);
    check_dtype(name, t.dtype, dtype);
    check_shape(name, t, shape);
  }

  // As check, for an argument that may be None (then false and `buffer` stays empty).
  bool check(const char* name, std::optional<Buffer>& buffer, std::initializer_list<const char*> shape,
             Dtype dtype = Dtype::kFloat) {
    if (!buffer) return false;
    check(name, *buffer, shape, dtype);
    return true;
  }

  // Bind a dim name to a value given as a scalar argument (e.g. the number of eigenpairs k).
  void bind(const char* dim, int64_t value) { dims_.emplace_back(dim, value); }

  // The value of a dim bound by an earlier check or bind.
  long size(const char* dim) const {
    for (const auto& [name, value] : dims_)
      if (name == dim) return static_cast<long>(value);
    throw std::logic_error(std::string(kernel_) + ": dim " + dim + " was never bound");
  }

  int device_id() const { return device_id_; }

  // fn(T{}) with T = float or double, the dtype of the call's float buffers.
  template <typename Fn>
  decltype(auto) dispatch(Fn&& fn) const {
    if (float_bits_ == 64) return fn(double{});
    if (float_bits_ == 32) return fn(float{});
    throw std::logic_error(std::string(kernel_) + ": no float buffer was checked");
  }

 private:
  // source.__dlpack__(), the producer's default stream handling (torch: none, the kernels launch on its current
  // stream). A plain torch.Tensor that needs no gradient goes straight to torch._C._to_dlpack, which is what its
  // __dlpack__ calls after ~5 us of Python-level checks that do not apply here.
  static pybind11::object export_dlpack(const pybind11::object& source) {
    namespace py = pybind11;
    static PyObject* tensor_type = nullptr;  // torch.Tensor and torch._C._to_dlpack, looked up once, never released
    static PyObject* to_dlpack = nullptr;
    static bool looked_up = false;
    if (!looked_up) {
      looked_up = true;
      try {
        py::object torch = py::module_::import("torch");
        py::object fast = py::getattr(torch.attr("_C"), "_to_dlpack", py::none());
        if (!fast.is_none()) {
          tensor_type = py::object(torch.attr("Tensor")).release().ptr();
          to_dlpack = fast.release().ptr();
        }
      } catch (py::error_already_set&) {  // no torch: every producer takes the __dlpack__ path
      }
    }
    if (to_dlpack != nullptr && Py_TYPE(source.ptr()) == reinterpret_cast<PyTypeObject*>(tensor_type) &&
        !source.attr("requires_grad").cast<bool>())
      return py::reinterpret_borrow<py::function>(to_dlpack)(source);
    return source.attr("__dlpack__")();
  }

  std::string where(const char* name) const { return std::string(kernel_) + ": " + name + " "; }

  void check_device(const char* name, DLDevice device) {
    const char* expected = device_type_ == kDLCUDA ? "a CUDA device" : "the CPU";
    if (device.device_type != device_type_)
      throw pybind11::value_error(where(name) + "must be on " + expected + " (DLPack device type " +
                                  std::to_string(device_type_) + "), got device type " +
                                  std::to_string(device.device_type));
    if (device_id_ < 0) {
      device_id_ = device.device_id;
      first_ = name;
    } else if (device.device_id != device_id_) {
      throw pybind11::value_error(where(name) + "is on device " + std::to_string(device.device_id) + " but " +
                                  first_ + " is on device " + std::to_string(device_id_));
    }
  }

  void check_dtype(const char* name, DLDataType dtype, Dtype expected) {
    const auto is = [&](uint8_t code, uint8_t bits) { return dtype.code == code && dtype.bits == bits && dtype.lanes == 1; };
    const std::string got = describe(dtype);
    switch (expected) {
      case Dtype::kFloat:
        if (!is(kDLFloat, 32) && !is(kDLFloat, 64))
          throw pybind11::type_error(where(name) + "must have dtype float32 or float64, got " + got);
        if (float_bits_ == 0) {
          float_bits_ = dtype.bits;
          float_first_ = name;
        } else if (dtype.bits != float_bits_) {
          throw pybind11::type_error(where(name) + "has dtype " + got + " but " + float_first_ + " has float" +
                                     std::to_string(float_bits_) + "; give all of them one dtype");
        }
        return;
      case Dtype::kFloat64:
        if (!is(kDLFloat, 64)) throw pybind11::type_error(where(name) + "must have dtype float64, got " + got);
        return;
      case Dtype::kInt32:
        if (!is(kDLInt, 32)) throw pybind11::type_error(where(name) + "must have dtype int32, got " + got);
        return;
      case Dtype::kUInt64:
        if (!is(kDLUInt, 64)) throw pybind11::type_error(where(name) + "must have dtype uint64, got " + got);
        return;
    }
  }

  void check_shape(const char* name, const DLTensor& t, std::initializer_list<const char*> shape) {
    std::string expected = "(", got = "(";
    for (const char* dim : shape) expected += std::string(expected.size() > 1 ? ", " : "") + dim;
    for (int axis = 0; axis < t.ndim; ++axis) got += (axis ? ", " : "") + std::to_string(t.shape[axis]);
    expected += ")", got += ")";
    if (t.ndim != static_cast<int32_t>(shape.size()))
      throw pybind11::value_error(where(name) + "must have shape " + expected + ", got " + got);
    int axis = 0;
    for (const char* dim : shape) {
      const int64_t extent = t.shape[axis++];
      if (std::isdigit(static_cast<unsigned char>(dim[0]))) {
        if (extent != std::stoll(dim))
          throw pybind11::value_error(where(name) + "must have shape " + expected + ", got " + got);
        continue;
      }
      bool bound = false;
      for (const auto& [bound_name, value] : dims_) {
        if (bound_name != dim) continue;
        bound = true;
        if (extent != value)
          throw pybind11::value_error(where(name) + "must have shape " + expected + " with " + dim + " = " +
                                      std::to_string(value) + ", got " + got);
      }
      if (!bound) dims_.emplace_back(dim, extent);
    }
    if (t.strides == nullptr) return;
    int64_t step = 1;  // row-major: the last axis is contiguous; axes of extent 1 may carry any stride
    for (int a = t.ndim - 1; a >= 0; --a) {
      if (t.shape[a] != 1 && t.strides[a] != step)
        throw pybind11::value_error(where(name) + "must be C-contiguous (row-major); pass .contiguous()");
      step *= t.shape[a];
    }
  }

  static std::string describe(DLDataType dtype) {
    static const char* const names[] = {"int", "uint", "float", "opaque", "bfloat", "complex", "bool"};
    std::string text = dtype.code < 7 ? names[dtype.code] : "code" + std::to_string(dtype.code);
    text += std::to_string(dtype.bits);
    if (dtype.lanes != 1) text += "x" + std::to_string(dtype.lanes);
    return text;
  }

  const char* kernel_;
  DLDeviceType device_type_;
  int device_id_ = -1;
  const char* first_ = "";
  uint8_t float_bits_ = 0;
  const char* float_first_ = "";
  std::vector<std::pair<std::string, int64_t>> dims_;
};

}  // namespace fastdyn

// Buffer arguments: any object with __dlpack__ (exported by Call::check, which can name the argument).
namespace pybind11::detail {
template <>
struct type_caster<fastdyn::Buffer> {
  PYBIND11_TYPE_CASTER(fastdyn::Buffer, const_name("Array"));
  bool load(handle source, bool) {
    if (!hasattr(source, "__dlpack__")) return false;
    value = fastdyn::Buffer(reinterpret_borrow<object>(source));
    return true;
  }
  static handle cast(const fastdyn::Buffer& buffer, return_value_policy, handle) {
    return buffer.source().inc_ref();
  }
};
}  // namespace pybind11::detail
