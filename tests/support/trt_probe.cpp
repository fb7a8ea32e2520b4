// Loads libedgeq_trt_plugins.so the way IPluginRegistry::loadLibrary does (dlopen, getCreators,
// setLoggerFinder) and drives every creator and plugin through the calls TensorRT makes before
// enqueue, printing what it sees for tests/test_cuda_build.py to check against the op table.
// Needs TensorRT's headers only, and no GPU.
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "trt_loader.h"

using namespace nvinfer1;

struct Logger : ILogger {
  void log(Severity, AsciiChar const* msg) noexcept override { std::printf("log %s\n", msg); }
};

static char const* type_name(DataType t) {
  switch (t) {
    case DataType::kFLOAT: return "f32";
    case DataType::kHALF: return "f16";
    case DataType::kINT8: return "i8";
    case DataType::kUINT8: return "u8";
    case DataType::kINT64: return "i64";
    case DataType::kINT4: return "i4";
    default: return "?";
  }
}

// consistent input shapes of the ops, smallest input count first (docs/ops.md)
static std::vector<std::vector<int64_t>> good_shapes(std::string const& op) {
  if (op == "EdgeqSelectiveScan" || op == "EdgeqSelectiveScanInt8")  // b 2, L 5, D 8, H 4, G 2, N 3
    return {{2, 5, 8}, {2, 5, 4}, {4, 3}, {2, 5, 2, 3}, {2, 5, 2, 3}, {8}, {4}, {2, 8, 3},
            {2, 5, 8}};
  if (op == "EdgeqSSDScan" || op == "EdgeqSSDScanInt8")  // batch 2, L 5, D 8, H 4, G 2, N 3
    return {{2, 5, 8}, {2, 5, 4}, {4}, {2, 5, 2, 3}, {2, 5, 2, 3}, {4}, {4}, {2, 8, 3}};
  if (op == "EdgeqCausalConv1d" || op == "EdgeqCausalConv1dInt8")  // batch 2, L 5, C 6, W 4
    return {{2, 5, 6}, {6, 4}, {6}, {2, 3, 6}};
  if (op == "EdgeqHadamardInt8") return {{2, 5, 96}};  // 96 = 12 * 8
  if (op == "EdgeqAddRMSNormInt8") return {{2, 5, 8}, {2, 5, 8}, {8}};
  if (op == "EdgeqLinearW4A8") return {{2, 5, 256}, {6, 128}, {6, 4}};  // N 6, group_size 64
  if (op == "EdgeqEmbeddingW4") return {{2, 5}, {50, 256}, {50, 4}};  // vocab 50, group_size 64
  return {};
}

// A valid INT field value other than the default: 0 for the flags (chunk_size takes any), 64
// for group_size (even; divides good_shapes' K)
static int32_t const* good_int(char const* field) {
  static int32_t const zero = 0, group = 64;
  return std::strcmp(field, "group_size") == 0 ? &group : &zero;
}

// FLOATS fields by name, with their values
using Arrays = std::vector<std::pair<std::string, std::vector<float>>>;

// The FLOATS fields of an op and their per-channel lengths at good_shapes (C, or D, H, G, G).
static std::vector<std::pair<std::string, int32_t>> channel_fields(std::string const& op) {
  if (op == "EdgeqCausalConv1dInt8") return {{"x_scale", 6}, {"weight_scale", 6}, {"y_scale", 6}};
  if (op == "EdgeqSSDScanInt8")
    return {{"x_scale", 8}, {"dt_scale", 4}, {"B_scale", 2}, {"C_scale", 2}};
  return {};
}

// Every field the creator announces, with its announced type (swapped: kINT32 <-> kFLOAT32)
// and the value `i` (null: good_int) or `f`.
static PluginFieldCollection fields(PluginFieldCollection const* names, int32_t const* i,
                                    float const* f, std::vector<PluginField>& store,
                                    bool swap = false) {
  store.clear();
  for (int32_t k = 0; k < names->nbFields; ++k) {
    char const* name = names->fields[k].name;
    bool is_int = (names->fields[k].type == PluginFieldType::kINT32) != swap;
    store.emplace_back(name, is_int ? static_cast<void const*>(i ? i : good_int(name)) : f,
                       is_int ? PluginFieldType::kINT32 : PluginFieldType::kFLOAT32, 1);
  }
  return PluginFieldCollection{int32_t(store.size()), store.data()};
}

// Every field at good_int or 0.5 as `fields` makes them, except the FLOATS fields named in
// `arrays`, which get those values.
static PluginFieldCollection with_arrays(PluginFieldCollection const* names, Arrays const& arrays,
                                         std::vector<PluginField>& store) {
  static float const half = 0.5f;
  PluginFieldCollection fc = fields(names, nullptr, &half, store);
  for (auto& f : store)
    for (auto const& a : arrays)
      if (a.first == f.name) f = PluginField(f.name, a.second.data(), PluginFieldType::kFLOAT32,
                                             int32_t(a.second.size()));
  return fc;
}

// configurePlugin and onShapeChange at the op's good shapes, as "configure C shapes S"
static std::string at_good_shapes(IPluginV3* p, std::string const& op) {
  using Cap = PluginCapabilityType;
  auto* build = static_cast<IPluginV3OneBuild*>(p->getCapabilityInterface(Cap::kBUILD));
  auto* run = static_cast<IPluginV3OneRuntime*>(p->getCapabilityInterface(Cap::kRUNTIME));
  auto good = good_shapes(op);
  int32_t nbIn = int32_t(good.size()), nbOut = build->getNbOutputs();
  std::vector<DynamicPluginTensorDesc> dyn(nbIn), dynOut(nbOut);
  std::vector<PluginTensorDesc> descs(nbIn);
  for (int32_t i = 0; i < nbIn; ++i) {
    descs[i].dims.nbDims = int32_t(good[i].size());
    for (size_t k = 0; k < good[i].size(); ++k) descs[i].dims.d[k] = good[i][k];
    dyn[i].desc = descs[i];
  }
  int32_t configured = build->configurePlugin(dyn.data(), nbIn, dynOut.data(), nbOut);
  int32_t shaped = run->onShapeChange(descs.data(), nbIn, nullptr, nbOut);
  return "configure " + std::to_string(configured) + " shapes " + std::to_string(shaped);
}

// Picks, position by position as TensorRT does, the first supported type starting with `first`.
static std::string combination(IPluginV3OneBuild* b, int32_t nbIn, DataType first) {
  int32_t nbOut = b->getNbOutputs();
  std::vector<DynamicPluginTensorDesc> io(nbIn + nbOut);
  std::string out;
  for (int32_t pos = 0; pos < nbIn + nbOut; ++pos) {
    bool found = false;
    for (DataType t : {first, DataType::kFLOAT, DataType::kHALF, DataType::kINT8,
                       DataType::kUINT8, DataType::kINT64, DataType::kINT4}) {
      io[pos].desc.type = t;
      io[pos].desc.format = TensorFormat::kLINEAR;
      if ((found = b->supportsFormatCombination(pos, io.data(), nbIn, nbOut))) break;
    }
    if (!found) return "none";
    out += std::string(pos == nbIn ? " | " : pos ? " " : "") + type_name(io[pos].desc.type);
  }
  // the output types TensorRT derives must be the ones just chosen
  std::vector<DataType> inTypes, outTypes(nbOut);
  for (int32_t i = 0; i < nbIn; ++i) inTypes.push_back(io[i].desc.type);
  b->getOutputDataTypes(outTypes.data(), nbOut, inTypes.data(), nbIn);
  for (int32_t o = 0; o < nbOut; ++o)
    if (outTypes[o] != io[nbIn + o].desc.type) out += " (getOutputDataTypes differs)";
  return out;
}

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  static LoggerFinder<Logger> finder;
  PluginLibrary lib;
  if (std::string error = load_plugin_library(argv[1], &finder, lib); !error.empty())
    return std::printf("%s\n", error.c_str()), 1;
  const int32_t n = lib.count;
  IPluginCreatorInterface* const* creators = lib.creators;
  for (int32_t c = 0; c < n; ++c) {
    std::printf("interface %s\n", creators[c]->getInterfaceInfo().kind);
    auto* cr = static_cast<IPluginCreatorV3One*>(creators[c]);
    std::printf("creator %s %s %s\n", cr->getPluginName(), cr->getPluginVersion(),
                cr->getPluginNamespace());
    PluginFieldCollection const* names = cr->getFieldNames();
    for (int32_t k = 0; k < names->nbFields; ++k)
      std::printf("field %s %d %d\n", names->fields[k].name, int(names->fields[k].type),
                  names->fields[k].length);

    std::vector<PluginField> store;
    int32_t bad = 5, zero = 0;        // INT fields: flags are 0 or 1, group_size even
    float bad_f = -1.f, half = 0.5f;  // FLOAT fields (scales, eps): negative is invalid
    auto verdict = [&](PluginFieldCollection fc) {
      return cr->createPlugin("p", &fc, TensorRTPhase::kBUILD) ? "accepted" : "rejected";
    };
    std::printf("bad_value %s\n", verdict(fields(names, &bad, &bad_f, store)));
    std::printf("bad_type %s\n", verdict(fields(names, &zero, &half, store, true)));
    PluginFieldCollection fc = fields(names, nullptr, &half, store);
    IPluginV3* p = cr->createPlugin("p", &fc, TensorRTPhase::kBUILD);
    if (!p) return std::printf("createPlugin failed\n"), 1;
    IPluginV3* q = p->clone();  // what TensorRT keeps; checks the copy, not the original
    delete p;
    using Cap = PluginCapabilityType;
    auto* core = static_cast<IPluginV3OneCore*>(q->getCapabilityInterface(Cap::kCORE));
    auto* build = static_cast<IPluginV3OneBuild*>(q->getCapabilityInterface(Cap::kBUILD));
    auto* run = static_cast<IPluginV3OneRuntime*>(q->getCapabilityInterface(Cap::kRUNTIME));
    std::printf("plugin %s %s %s outputs %d\n", core->getPluginName(), core->getPluginVersion(),
                core->getPluginNamespace(), build->getNbOutputs());
    PluginFieldCollection const* ser = run->getFieldsToSerialize();
    for (int32_t k = 0; k < ser->nbFields; ++k) {
      PluginField const& f = ser->fields[k];
      if (f.type == PluginFieldType::kINT32)
        std::printf("serialized %s %d\n", f.name, *static_cast<int32_t const*>(f.data));
      else
        std::printf("serialized %s %g\n", f.name, *static_cast<float const*>(f.data));
    }

    // every input count the plugin takes (optional inputs last)
    for (int32_t nbIn = 1; nbIn <= 16; ++nbIn) {
      int32_t nbOut = build->getNbOutputs();
      std::vector<DynamicPluginTensorDesc> in(nbIn), out(nbOut);
      if (build->configurePlugin(in.data(), nbIn, out.data(), nbOut) != 0) continue;
      std::printf("inputs %d\n", nbIn);
      for (DataType t : {DataType::kFLOAT, DataType::kHALF, DataType::kINT8, DataType::kUINT8})
        std::printf("combination %d %s: %s\n", nbIn, type_name(t),
                    combination(build, nbIn, t).c_str());
      // getOutputShapes copies dims of the inputs; fake, distinct expressions: dim k of input i
      std::vector<DimsExprs> ins(nbIn), outs(nbOut);
      for (int32_t i = 0; i < nbIn; ++i) {
        ins[i].nbDims = 2;
        for (int32_t k = 0; k < 2; ++k)
          ins[i].d[k] = reinterpret_cast<IDimensionExpr const*>(uintptr_t(0x1000 + 16 * i + 8 * k));
      }
      alignas(IExprBuilder) char unused[sizeof(IExprBuilder)];  // the plugins build no expressions
      build->getOutputShapes(ins.data(), nbIn, nullptr, 0, outs.data(), nbOut,
                             *reinterpret_cast<IExprBuilder*>(unused));
      for (size_t o = 0; o < outs.size(); ++o) {  // "i.k": dim k of input i
        std::printf("shape %d %zu dims", nbIn, o);
        for (int32_t k = 0; k < outs[o].nbDims; ++k) {
          uintptr_t e = reinterpret_cast<uintptr_t>(outs[o].d[k]) - 0x1000;
          std::printf(" %d.%d", int(e / 16), int(e % 16 / 8));
        }
        std::printf("\n");
      }
      std::vector<PluginTensorDesc> descs(nbIn);  // all rank 0: inconsistent
      std::printf("bad_shapes %d\n", run->onShapeChange(descs.data(), nbIn, nullptr, nbOut));
      auto good = good_shapes(core->getPluginName());
      for (int32_t i = 0; i < nbIn && i < int32_t(good.size()); ++i) {
        descs[i].dims.nbDims = int32_t(good[i].size());
        for (size_t k = 0; k < good[i].size(); ++k) descs[i].dims.d[k] = good[i][k];
      }
      std::printf("good_shapes %d\n", run->onShapeChange(descs.data(), nbIn, nullptr, nbOut));
      // the input count travels in the serialized fields: a plugin made from them at run time
      // takes that many inputs, and no other count (TensorRT never changes it)
      PluginFieldCollection const* fields = run->getFieldsToSerialize();
      IPluginV3* rt = cr->createPlugin("p", fields, TensorRTPhase::kRUNTIME);
      auto* rr = rt ? static_cast<IPluginV3OneRuntime*>(rt->getCapabilityInterface(Cap::kRUNTIME))
                    : nullptr;
      std::printf("round_trip %d %d\n", nbIn,
                  rr ? rr->onShapeChange(descs.data(), nbIn, nullptr, nbOut) : -9);
      delete rt;
    }
    {  // a serialized input count out of the op's range
      PluginFieldCollection const* good = run->getFieldsToSerialize();
      std::vector<PluginField> copy(good->fields, good->fields + good->nbFields);
      int32_t zero_inputs = 0;
      for (auto& f : copy)
        if (std::strcmp(f.name, "nb_inputs") == 0) f.data = &zero_inputs;
      PluginFieldCollection bad{int32_t(copy.size()), copy.data()};
      IPluginV3* b = cr->createPlugin("p", &bad, TensorRTPhase::kRUNTIME);
      std::printf("bad_nb_inputs %s\n", b ? "accepted" : "rejected");
      delete b;
    }
    // FLOATS fields: one value per channel at the good shapes; each in turn one value too many;
    // each in turn with a bad value among good ones
    std::string op = core->getPluginName();
    Arrays arrays;
    for (auto const& c : channel_fields(op))
      arrays.push_back({c.first, std::vector<float>(c.second, 0.5f)});
    auto create = [&](Arrays const& a) {
      PluginFieldCollection pc = with_arrays(names, a, store);
      return cr->createPlugin("p", &pc, TensorRTPhase::kBUILD);
    };
    if (IPluginV3* pp = arrays.empty() ? nullptr : create(arrays)) {
      std::printf("per_channel %s\n", at_good_shapes(pp, op).c_str());
      auto* rt = static_cast<IPluginV3OneRuntime*>(pp->getCapabilityInterface(Cap::kRUNTIME));
      PluginFieldCollection const* ser = rt->getFieldsToSerialize();
      for (int32_t k = 0; k < ser->nbFields; ++k)
        std::printf("per_channel_serialized %s %d\n", ser->fields[k].name, ser->fields[k].length);
      delete pp;
    }
    for (size_t c = 0; c < arrays.size(); ++c) {
      auto wrong = arrays, bad = arrays;
      wrong[c].second.push_back(0.5f);
      bad[c].second.back() = -1.f;
      IPluginV3* pw = create(wrong);
      std::printf("wrong_length %s %s\n", arrays[c].first.c_str(),
                  pw ? at_good_shapes(pw, op).c_str() : "rejected");
      delete pw;
      IPluginV3* pb = create(bad);
      std::printf("bad_array_value %s %s\n", arrays[c].first.c_str(), pb ? "accepted" : "rejected");
      delete pb;
    }
    IPluginV3* r = run->attachToContext(nullptr);
    std::printf("attached %s\n", r ? "yes" : "no");
    delete r;
    delete q;
  }
  return 0;
}
