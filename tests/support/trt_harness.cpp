// Runs one edgeq TensorRT plugin the way TensorRT does, from the library's loading to enqueue:
// dlopen + setLoggerFinder + getCreators; at build time createPlugin from fields, clone, format
// combinations, output types and shapes, configurePlugin, workspace size, getFieldsToSerialize;
// at run time createPlugin from the serialized fields, attachToContext, onShapeChange and
// enqueue on the caller's stream, with the caller's buffers (device memory, or host memory for
// a library over the CPU emulation of the kernels). tests/support/plugin_harness.py drives it.
// A second enqueue runs on a second context without onShapeChange: what the plugin needs must come
// from its serialized fields and attachToContext. Over the emulation, the CUDA runtime calls
// (tests/support/host_cudart.cpp) are counted: none may happen inside enqueueV3 (onShapeChange and
// enqueue), which a CUDA graph may capture from its first call, where cudaMalloc and copies from
// pageable memory are not allowed.
// Needs TensorRT's headers only.
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "trt_loader.h"

using namespace nvinfer1;

namespace {

struct Logger : ILogger {
  std::string last;
  void log(Severity s, AsciiChar const* msg) noexcept override {
    if (s <= Severity::kWARNING) last = msg;
  }
};
LoggerFinder<Logger> finder;

// the CUDA runtime calls seen, in all and inside enqueueV3 (names)
int64_t cuda_calls = 0;
bool in_enqueue_v3 = false;
std::string calls_in_enqueue_v3;

// dlopen once per path, as IPluginRegistry::loadLibrary
std::string open_library(char const* path, PluginLibrary& out) {
  static std::map<std::string, PluginLibrary> loaded;
  if (auto it = loaded.find(path); it != loaded.end()) return out = it->second, "";
  PluginLibrary l;
  std::string error = load_plugin_library(path, &finder, l);
  if (error.empty()) out = loaded[path] = l;
  return error;
}

// The fields of a PluginFieldCollection, deep-copied: TensorRT writes them into the engine and
// reads them back, so nothing may point into the plugin that gave them.
struct SavedFields {
  std::vector<std::string> names;
  std::vector<std::vector<char>> data;
  std::vector<PluginField> fields;
  PluginFieldCollection collection{};
  explicit SavedFields(PluginFieldCollection const* fc) {
    for (int32_t k = 0; k < fc->nbFields; ++k) {  // edgeq fields are INT32 or FLOAT32: 4 bytes
      PluginField const& f = fc->fields[k];
      names.emplace_back(f.name);
      auto bytes = static_cast<char const*>(f.data);
      data.emplace_back(bytes, bytes + 4 * size_t(f.length));
      fields.emplace_back(nullptr, nullptr, f.type, f.length);
    }
    for (size_t k = 0; k < fields.size(); ++k) {
      fields[k].name = names[k].c_str();
      fields[k].data = data[k].data();
    }
    collection = {int32_t(fields.size()), fields.data()};
  }
};

// getOutputShapes gets a distinct fake expression per input dim; the plugins only copy them
char expr_tokens[64 * 8];
IDimensionExpr const* expr_of(int32_t input, int32_t axis) {
  return reinterpret_cast<IDimensionExpr const*>(&expr_tokens[input * 8 + axis]);
}
int64_t dim_of(IDimensionExpr const* e, std::vector<PluginTensorDesc> const& in) {
  auto k = reinterpret_cast<char const*>(e) - expr_tokens;
  if (k < 0 || k >= int64_t(sizeof(expr_tokens)) || k / 8 >= int64_t(in.size())) return -2;
  Dims const& d = in[size_t(k / 8)].dims;
  return k % 8 < d.nbDims ? d.d[k % 8] : -2;
}

using Plugin = std::unique_ptr<IPluginV3>;
template <class T>
T* cap(IPluginV3* p, PluginCapabilityType t) {
  return static_cast<T*>(p->getCapabilityInterface(t));
}

std::string run(char const* library, char const* op, PluginFieldCollection const& fc, int32_t nbIn,
                int32_t nbOut, int32_t const* types, int32_t const* ranks, int64_t const* dims,
                void* const* pointers, cudaStream_t stream, int32_t enqueues) {
  PluginLibrary lib;
  if (auto err = open_library(library, lib); !err.empty()) return err;
  IPluginCreatorV3One* creator = nullptr;
  for (int32_t c = 0; c < lib.count; ++c) {
    auto* cr = static_cast<IPluginCreatorV3One*>(lib.creators[c]);
    if (std::strcmp(cr->getPluginName(), op) == 0) creator = cr;
  }
  if (!creator) return std::string("no creator for ") + op;

  int32_t const n = nbIn + nbOut;
  std::vector<PluginTensorDesc> desc(n);
  std::vector<DynamicPluginTensorDesc> dyn(n);
  for (int32_t i = 0; i < n; ++i) {
    desc[i].type = DataType(types[i]);
    desc[i].format = TensorFormat::kLINEAR;
    desc[i].dims.nbDims = ranks[i];
    for (int32_t k = 0; k < ranks[i]; ++k) desc[i].dims.d[k] = dims[8 * i + k];
    dyn[i].desc = desc[i];
    dyn[i].min = dyn[i].opt = dyn[i].max = desc[i].dims;
  }
  std::vector<PluginTensorDesc> in(desc.begin(), desc.begin() + nbIn);

  // build time
  Plugin built(creator->createPlugin("harness", &fc, TensorRTPhase::kBUILD));
  if (!built) return "createPlugin (build) refused the fields";
  Plugin kept(built->clone());  // TensorRT keeps a clone, not the original
  built.reset();
  if (!kept) return "clone failed";
  auto* b = cap<IPluginV3OneBuild>(kept.get(), PluginCapabilityType::kBUILD);
  if (b->getNbOutputs() != nbOut) return "getNbOutputs " + std::to_string(b->getNbOutputs());
  for (int32_t pos = 0; pos < n; ++pos)
    if (!b->supportsFormatCombination(pos, dyn.data(), nbIn, nbOut))
      return "supportsFormatCombination refuses position " + std::to_string(pos);
  std::vector<DataType> inTypes(nbIn), outTypes(nbOut);
  for (int32_t i = 0; i < nbIn; ++i) inTypes[i] = desc[i].type;
  if (b->getOutputDataTypes(outTypes.data(), nbOut, inTypes.data(), nbIn) != 0)
    return "getOutputDataTypes failed";
  for (int32_t o = 0; o < nbOut; ++o)
    if (outTypes[o] != desc[nbIn + o].type) return "output type " + std::to_string(o);
  std::vector<DimsExprs> inExprs(nbIn), outExprs(nbOut);
  for (int32_t i = 0; i < nbIn; ++i) {
    inExprs[i].nbDims = in[i].dims.nbDims;
    for (int32_t k = 0; k < in[i].dims.nbDims; ++k) inExprs[i].d[k] = expr_of(i, k);
  }
  alignas(IExprBuilder) char unused[sizeof(IExprBuilder)];  // the plugins build no expressions
  if (b->getOutputShapes(inExprs.data(), nbIn, nullptr, 0, outExprs.data(), nbOut,
                         *reinterpret_cast<IExprBuilder*>(unused)) != 0)
    return "getOutputShapes failed";
  for (int32_t o = 0; o < nbOut; ++o) {
    Dims const& want = desc[nbIn + o].dims;
    bool same = outExprs[o].nbDims == want.nbDims;
    for (int32_t k = 0; same && k < want.nbDims; ++k)
      same = dim_of(outExprs[o].d[k], in) == want.d[k];
    if (!same) return "output shape " + std::to_string(o);
  }
  if (b->configurePlugin(dyn.data(), nbIn, dyn.data() + nbIn, nbOut) != 0)
    return "configurePlugin failed";
  if (size_t ws = b->getWorkspaceSize(dyn.data(), nbIn, dyn.data() + nbIn, nbOut))
    return "wants " + std::to_string(ws) + " bytes of workspace; the harness gives none";
  SavedFields saved(cap<IPluginV3OneRuntime>(kept.get(), PluginCapabilityType::kRUNTIME)
                        ->getFieldsToSerialize());
  kept.reset();

  // run time: the engine's plugin from the serialized fields, one per execution context
  Plugin engine(creator->createPlugin("harness", &saved.collection, TensorRTPhase::kRUNTIME));
  if (!engine) return "createPlugin (runtime) refused the serialized fields";
  Plugin context(cap<IPluginV3OneRuntime>(engine.get(), PluginCapabilityType::kRUNTIME)
                     ->attachToContext(nullptr));
  if (!context) return "attachToContext failed";
  Plugin second(cap<IPluginV3OneRuntime>(engine.get(), PluginCapabilityType::kRUNTIME)
                    ->attachToContext(nullptr));
  if (!second) return "attachToContext failed (second context)";
  calls_in_enqueue_v3.clear();
  in_enqueue_v3 = true;  // from here on, as inside enqueueV3
  auto* r = cap<IPluginV3OneRuntime>(context.get(), PluginCapabilityType::kRUNTIME);
  std::string err;
  if (r->onShapeChange(in.data(), nbIn, desc.data() + nbIn, nbOut) != 0)
    err = "onShapeChange refused the shapes";
  for (int32_t e = 0; err.empty() && e < enqueues; ++e) {
    auto* c = cap<IPluginV3OneRuntime>((e ? second : context).get(), PluginCapabilityType::kRUNTIME);
    if (int32_t rc = c->enqueue(in.data(), desc.data() + nbIn, pointers, pointers + nbIn, nullptr,
                                stream))
      err = "enqueue " + std::to_string(e + 1) + " returned " + std::to_string(rc);
  }
  in_enqueue_v3 = false;
  if (err.empty() && !calls_in_enqueue_v3.empty())
    err = "CUDA runtime calls inside enqueueV3:" + calls_in_enqueue_v3;
  return err;
}

}  // namespace

// Called by tests/support/host_cudart.cpp for each CUDA runtime call of an emulated plugin library.
extern "C" void edgeq_harness_cuda_call(char const* name) {
  ++cuda_calls;
  if (in_enqueue_v3) calls_in_enqueue_v3 += std::string(" ") + name;
}

extern "C" int64_t edgeq_harness_cuda_calls() { return cuda_calls; }

// 0 and an empty message, or 1 and what failed (with the plugin's last logged error).
// Fields: names, is_int (else fp32), data, lengths. Tensors: inputs then outputs, each with a
// DataType, a rank and 8 dims.
extern "C" int edgeq_harness_run(char const* library, char const* op, int32_t nbFields,
                                 char const* const* names, int32_t const* is_int,
                                 void const* const* data, int32_t const* lengths, int32_t nbIn,
                                 int32_t nbOut, int32_t const* types, int32_t const* ranks,
                                 int64_t const* dims, void* const* pointers, void* stream,
                                 int32_t enqueues, char* message, int32_t size) {
  std::vector<PluginField> fields;
  for (int32_t k = 0; k < nbFields; ++k)
    fields.emplace_back(names[k], data[k],
                        is_int[k] ? PluginFieldType::kINT32 : PluginFieldType::kFLOAT32,
                        lengths[k]);
  PluginFieldCollection fc{nbFields, fields.data()};
  finder.logger.last.clear();
  std::string err = run(library, op, fc, nbIn, nbOut, types, ranks, dims, pointers,
                        static_cast<cudaStream_t>(stream), enqueues);
  if (!err.empty() && !finder.logger.last.empty()) err += " (" + finder.logger.last + ")";
  std::snprintf(message, size_t(size), "%s", err.c_str());
  return err.empty() ? 0 : 1;
}
