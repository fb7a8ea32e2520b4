// What every edgeq TensorRT plugin shares: an IPluginV3 (OneCore/OneBuild/OneRuntime) and an
// IPluginCreatorV3One built from the op's row of plugins/trt/op_table.h (names, ports, fields)
// and a small Op struct per op (plugins/<op>/<op>_trt.cpp) with the parts that differ:
//   static bool supports(int32_t pos, DynamicPluginTensorDesc const* io, int32_t nbInputs);
//   static bool valid(Attrs<Op> const&);  // attribute values: a.i(attr_x), a.f(attr_y),
//                                         // a.floats(attr_z) (FLOATS; a.scales for kernels)
//   static bool shapes_ok(Attrs<Op> const&, PluginTensorDesc const* in, int32_t nbInputs);
//   static int enqueue(Attrs<Op> const&, PluginTensorDesc const* in, int32_t nbInputs,
//                      void const* const* inputs, void* const* outputs, cudaStream_t);
// Only TensorRT's interfaces are used (virtual calls, no libnvinfer symbols), so the library
// needs no libnvinfer at link time and loads through IPluginRegistry::loadLibrary.
#pragma once
#include <NvInferRuntime.h>

#include <array>
#include <cmath>
#include <cstring>
#include <initializer_list>
#include <new>
#include <string>
#include <vector>

#include "edgeq_kernels.h"
#include "op_table.h"

namespace edgeq {
namespace trt {

using namespace nvinfer1;

// Logs through the logger TensorRT handed to setLoggerFinder (plugins/trt/registry.cpp).
void log_msg(ILogger::Severity severity, std::string const& msg) noexcept;

inline bool dims_are(Dims const& d, std::initializer_list<int64_t> want) {
  if (d.nbDims != int32_t(want.size())) return false;
  int32_t i = 0;
  for (int64_t w : want)
    if (d.d[i++] != w) return false;
  return true;
}

inline bool same_dims(Dims const& a, Dims const& b) {
  if (a.nbDims != b.nbDims) return false;
  for (int32_t i = 0; i < a.nbDims; ++i)
    if (a.d[i] != b.d[i]) return false;
  return true;
}

// [..., n] as rows of n: the number of rows
inline int64_t rows_of(Dims const& d) {
  int64_t rows = 1;
  for (int32_t i = 0; i + 1 < d.nbDims; ++i) rows *= d.d[i];
  return rows;
}

// int8 scales: quantize divides by them
inline bool positive(float v) { return std::isfinite(v) && v > 0.f; }
inline bool positive(std::vector<float> const& v) {
  for (float x : v)
    if (!positive(x)) return false;
  return true;
}

// A FLOATS field's values in device memory, where the kernels read them. enqueue neither
// allocates nor copies (it may be captured into a CUDA graph from the first enqueueV3 on, where
// cudaMalloc and copies from pageable memory are not allowed), so the copy is made before it:
// in attachToContext, which TensorRT calls for each new execution context (NvInferRuntime.h
// 10.3, IPluginV3OneRuntime::attachToContext: "If the plugin needs per-context resources, it
// can be allocated here"), and at build time in onShapeChange, which IBuilder calls once per
// profile before timing enqueue (same header, onShapeChange). A copy of the object starts
// empty: each clone makes its own.
class DeviceFloats {
 public:
  DeviceFloats() = default;
  DeviceFloats(DeviceFloats const&) {}
  DeviceFloats& operator=(DeviceFloats const&) = delete;
  ~DeviceFloats() {
    if (ptr_) cudaFree(ptr_);
  }
  float const* get() const { return ptr_; }
  // synchronous: the host vector may go once it returns, and no stream is involved
  bool upload(std::vector<float> const& host) {
    if (ptr_) return true;
    size_t bytes = host.size() * sizeof(float);
    void* p = nullptr;
    if (cudaMalloc(&p, bytes) != cudaSuccess) return false;
    if (cudaMemcpy(p, host.data(), bytes, cudaMemcpyHostToDevice) != cudaSuccess) {
      cudaFree(p);
      return false;
    }
    ptr_ = static_cast<float*>(p);
    return true;
  }

 private:
  float* ptr_ = nullptr;
};

// The serialized field that holds a plugin's input count (optional inputs, such as the scan's
// z, are left off the end): set at build time by configurePlugin, read back by createPlugin at
// run time, so enqueue knows it whether or not onShapeChange ran. getFieldNames does not
// announce it: "The set of plugin fields returned [by getFieldsToSerialize] does not
// necessarily need to match that advertised through getFieldNames()" (NvInferRuntime.h 10.3,
// IPluginV3OneRuntime::getFieldsToSerialize).
inline constexpr char const* kNbInputsField = "nb_inputs";

// The op's attribute values, and the same values as PluginFields.
template <class Row>
class Attrs {
 public:
  Attrs() {
    for (int32_t k = 0; k < Row::kNbAttrs; ++k) {
      ints_[k] = int32_t(Row::kAttrs[k].default_value);
      floats_[k] = {float(Row::kAttrs[k].default_value)};
    }
  }
  int32_t i(int32_t k) const { return ints_[k]; }
  float f(int32_t k) const { return floats_[k][0]; }
  std::vector<float> const& floats(int32_t k) const { return floats_[k]; }
  // a FLOATS field for the kernels: its device copy (after upload) and its length
  edgeq_scales scales(int32_t k) const { return {device_[k].get(), int64_t(floats_[k].size())}; }

  // Takes the fields named like attributes; others are ignored, missing ones keep the default.
  bool set(PluginFieldCollection const* fc) {
    for (int32_t n = 0; fc && n < fc->nbFields; ++n) {
      PluginField const& p = fc->fields[n];
      for (int32_t k = 0; k < Row::kNbAttrs; ++k) {
        if (!p.name || std::strcmp(p.name, Row::kAttrs[k].name) != 0) continue;
        if (!p.data || p.length < 1) return false;
        // the types getFieldNames announces, which the ONNX parser gives INT, FLOAT and FLOATS
        bool is_int = Row::kAttrs[k].type == table::AttrType::kInt;
        if (p.type != (is_int ? PluginFieldType::kINT32 : PluginFieldType::kFLOAT32)) return false;
        if (is_int) {
          ints_[k] = *static_cast<int32_t const*>(p.data);
        } else {
          auto v = static_cast<float const*>(p.data);
          bool many = Row::kAttrs[k].type == table::AttrType::kFloats;
          floats_[k].assign(v, v + (many ? p.length : 1));
        }
      }
    }
    return true;
  }

  // FLOATS lengths: 1, or the size of the axis they run along (dims: the inputs'; a size not
  // known yet, -1 or a missing axis, is not checked).
  bool lengths_ok(Dims const* dims) const {
    for (int32_t k = 0; k < Row::kNbAttrs; ++k) {
      table::AttrDef const& d = Row::kAttrs[k];
      if (d.type != table::AttrType::kFloats || floats_[k].size() == 1) continue;
      Dims const& in = dims[d.per_input];
      if (d.per_axis < in.nbDims && in.d[d.per_axis] >= 0 &&
          int64_t(floats_[k].size()) != in.d[d.per_axis])
        return false;
    }
    return true;
  }

  // Device copies of the FLOATS fields, made once (see DeviceFloats).
  bool upload() {
    for (int32_t k = 0; k < Row::kNbAttrs; ++k)
      if (Row::kAttrs[k].type == table::AttrType::kFloats && !device_[k].upload(floats_[k]))
        return false;
    return true;
  }
  bool uploaded() const {
    for (int32_t k = 0; k < Row::kNbAttrs; ++k)
      if (Row::kAttrs[k].type == table::AttrType::kFloats && !device_[k].get()) return false;
    return true;
  }

  // Rebuilt on every call: the fields point into this object, which may be a copy. With
  // nb_inputs, one more field: the input count (kNbInputsField).
  PluginFieldCollection const* fields(int32_t const* nb_inputs = nullptr) {
    for (int32_t k = 0; k < Row::kNbAttrs; ++k) {
      bool is_int = Row::kAttrs[k].type == table::AttrType::kInt;
      void const* v = is_int ? static_cast<void const*>(&ints_[k]) : floats_[k].data();
      fields_[k] = PluginField(Row::kAttrs[k].name, v,
                               is_int ? PluginFieldType::kINT32 : PluginFieldType::kFLOAT32,
                               is_int ? 1 : int32_t(floats_[k].size()));
    }
    fields_[Row::kNbAttrs] = PluginField(kNbInputsField, nb_inputs, PluginFieldType::kINT32, 1);
    collection_.nbFields = Row::kNbAttrs + (nb_inputs ? 1 : 0);
    collection_.fields = fields_.data();
    return &collection_;
  }

 private:
  std::array<int32_t, Row::kNbAttrs> ints_{};
  std::array<std::vector<float>, Row::kNbAttrs> floats_{};  // FLOAT: one value
  std::array<DeviceFloats, Row::kNbAttrs> device_{};  // FLOATS only
  std::array<PluginField, Row::kNbAttrs + 1> fields_{};
  PluginFieldCollection collection_{};
};

template <class Op>
class Plugin final : public IPluginV3, public IPluginV3OneCore, public IPluginV3OneBuild,
                     public IPluginV3OneRuntime {
 public:
  explicit Plugin(Attrs<Op> const& attrs, int32_t nb_inputs = Op::kNbInputs)
      : attrs_(attrs), nb_inputs_(nb_inputs) {}

  // IPluginV3
  IPluginCapability* getCapabilityInterface(PluginCapabilityType type) noexcept override {
    switch (type) {
      case PluginCapabilityType::kCORE: return static_cast<IPluginV3OneCore*>(this);
      case PluginCapabilityType::kBUILD: return static_cast<IPluginV3OneBuild*>(this);
      case PluginCapabilityType::kRUNTIME: return static_cast<IPluginV3OneRuntime*>(this);
    }
    return nullptr;
  }
  IPluginV3* clone() noexcept override { return new (std::nothrow) Plugin(attrs_, nb_inputs_); }

  // IPluginV3OneCore
  AsciiChar const* getPluginName() const noexcept override { return Op::kName; }
  AsciiChar const* getPluginVersion() const noexcept override { return Op::kVersion; }
  AsciiChar const* getPluginNamespace() const noexcept override { return Op::kNamespace; }

  // IPluginV3OneBuild. Outputs have the shape of their table `like` input (with the first dim of
  // its `last_from` input as the last one, or the last dim of its `append_from` input added,
  // where the table names one), and its dtype unless the
  // table fixes one; no workspace (the default getWorkspaceSize returns 0).
  int32_t getNbOutputs() const noexcept override { return Op::kNbOutputs; }
  int32_t configurePlugin(DynamicPluginTensorDesc const* in, int32_t nbInputs,
                          DynamicPluginTensorDesc const*, int32_t nbOutputs) noexcept override {
    if (!counts_ok(nbInputs, nbOutputs) || !lengths_ok(in, nbInputs)) return -1;
    nb_inputs_ = nbInputs;  // serialized (kNbInputsField): enqueue is not told
    return 0;
  }
  int32_t getOutputDataTypes(DataType* outputTypes, int32_t nbOutputs, DataType const* inputTypes,
                             int32_t nbInputs) const noexcept override {
    if (!counts_ok(nbInputs, nbOutputs)) return -1;
    for (int32_t o = 0; o < nbOutputs; ++o) {
      table::Dtype t = Op::kOutputDtype[o];
      outputTypes[o] = t == table::Dtype::kFloat  ? DataType::kFLOAT
                       : t == table::Dtype::kInt8 ? DataType::kINT8
                                                  : inputTypes[Op::kOutputLike[o]];
    }
    return 0;
  }
  int32_t getOutputShapes(DimsExprs const* inputs, int32_t nbInputs, DimsExprs const*, int32_t,
                          DimsExprs* outputs, int32_t nbOutputs, IExprBuilder&) noexcept override {
    if (!counts_ok(nbInputs, nbOutputs)) return -1;
    for (int32_t o = 0; o < nbOutputs; ++o) {
      outputs[o] = inputs[Op::kOutputLike[o]];
      if (int32_t last = Op::kOutputLast[o]; last >= 0) {
        if (outputs[o].nbDims < 1 || inputs[last].nbDims < 1) return -1;
        outputs[o].d[outputs[o].nbDims - 1] = inputs[last].d[0];
      }
      if (int32_t app = Op::kOutputAppend[o]; app >= 0) {
        if (outputs[o].nbDims >= Dims::MAX_DIMS || inputs[app].nbDims < 1) return -1;
        outputs[o].d[outputs[o].nbDims++] = inputs[app].d[inputs[app].nbDims - 1];
      }
    }
    return 0;
  }
  bool supportsFormatCombination(int32_t pos, DynamicPluginTensorDesc const* inOut,
                                 int32_t nbInputs, int32_t nbOutputs) noexcept override {
    return counts_ok(nbInputs, nbOutputs) && inOut[pos].desc.format == TensorFormat::kLINEAR &&
           Op::supports(pos, inOut, nbInputs);
  }

  // IPluginV3OneRuntime. At run time onShapeChange may run inside an enqueueV3 that a CUDA graph
  // captures (NvInferRuntime.h 10.3: "IExecutionContext will call this during the next
  // subsequent instance of enqueueV3()"), so there it only checks: attachToContext made the
  // device copies. At build time (no context) it makes them.
  int32_t onShapeChange(PluginTensorDesc const* in, int32_t nbInputs, PluginTensorDesc const*,
                        int32_t nbOutputs) noexcept override {
    if (!counts_ok(nbInputs, nbOutputs) || nbInputs != nb_inputs_ ||
        !Op::shapes_ok(attrs_, in, nbInputs) || !lengths_ok(in, nbInputs)) {
      log_msg(ILogger::Severity::kERROR, std::string(Op::kName) + ": inconsistent input shapes");
      return -1;
    }
    return upload() ? 0 : -1;
  }
  // No allocation or copy here (see DeviceFloats): only the kernels, on TensorRT's stream.
  int32_t enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const*,
                  void const* const* inputs, void* const* outputs, void*,
                  cudaStream_t stream) noexcept override {
    int rc = attrs_.uploaded()
                 ? Op::enqueue(attrs_, inputDesc, nb_inputs_, inputs, outputs, stream)
                 : EDGEQ_CUDA_ERROR;
    if (rc != EDGEQ_OK)
      log_msg(ILogger::Severity::kERROR,
          std::string(Op::kName) + (attrs_.uploaded() ? ": kernel status " + std::to_string(rc)
                                                      : ": enqueue before attachToContext"));
    return rc;
  }
  IPluginV3* attachToContext(IPluginResourceContext*) noexcept override {
    auto* attached = new (std::nothrow) Plugin(attrs_, nb_inputs_);
    if (attached && !attached->upload()) {
      delete attached;
      return nullptr;
    }
    return attached;
  }
  PluginFieldCollection const* getFieldsToSerialize() noexcept override {
    return attrs_.fields(&nb_inputs_);
  }

 private:
  bool upload() {
    if (attrs_.upload()) return true;
    log_msg(ILogger::Severity::kERROR, std::string(Op::kName) + ": cannot copy its scales to the "
                                       "device (cudaMalloc or cudaMemcpy failed)");
    return false;
  }
  static bool counts_ok(int32_t nbInputs, int32_t nbOutputs) {
    return nbInputs >= Op::kNbRequiredInputs && nbInputs <= Op::kNbInputs &&
           nbOutputs == Op::kNbOutputs;
  }
  static Dims const& dims_of(DynamicPluginTensorDesc const& d) { return d.desc.dims; }
  static Dims const& dims_of(PluginTensorDesc const& d) { return d.dims; }
  // the FLOATS lengths against the inputs' dims (counts_ok has passed)
  template <class Desc>
  bool lengths_ok(Desc const* in, int32_t nbInputs) const {
    std::array<Dims, Op::kNbInputs> dims{};  // rank 0 where an optional input is not given
    for (int32_t i = 0; i < nbInputs; ++i) dims[i] = dims_of(in[i]);
    return attrs_.lengths_ok(dims.data());
  }
  Attrs<Op> attrs_;
  int32_t nb_inputs_;
};

template <class Op>
class Creator final : public IPluginCreatorV3One {
 public:
  AsciiChar const* getPluginName() const noexcept override { return Op::kName; }
  AsciiChar const* getPluginVersion() const noexcept override { return Op::kVersion; }
  AsciiChar const* getPluginNamespace() const noexcept override { return Op::kNamespace; }
  PluginFieldCollection const* getFieldNames() noexcept override { return defaults_.fields(); }

  IPluginV3* createPlugin(AsciiChar const*, PluginFieldCollection const* fc,
                          TensorRTPhase) noexcept override {
    Attrs<Op> attrs;
    int32_t nb_inputs = Op::kNbInputs;  // the parser's fields (kBUILD) do not have it
    if (!attrs.set(fc) || !Op::valid(attrs) || !input_count(fc, nb_inputs)) {
      log_msg(ILogger::Severity::kERROR, std::string(Op::kName) + ": bad plugin fields");
      return nullptr;
    }
    return new (std::nothrow) Plugin<Op>(attrs, nb_inputs);
  }

 private:
  // the serialized kNbInputsField, if there is one, into nb_inputs: false if it is malformed
  static bool input_count(PluginFieldCollection const* fc, int32_t& nb_inputs) {
    for (int32_t n = 0; fc && n < fc->nbFields; ++n) {
      PluginField const& p = fc->fields[n];
      if (!p.name || std::strcmp(p.name, kNbInputsField) != 0) continue;
      if (p.type != PluginFieldType::kINT32 || p.length != 1 || !p.data) return false;
      nb_inputs = *static_cast<int32_t const*>(p.data);
      return nb_inputs >= Op::kNbRequiredInputs && nb_inputs <= Op::kNbInputs;
    }
    return true;
  }
  Attrs<Op> defaults_;
};

}  // namespace trt
}  // namespace edgeq
