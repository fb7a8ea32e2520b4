// Loads a TensorRT plugin library the way IPluginRegistry::loadLibrary does: dlopen, then
// setLoggerFinder and getCreators. Shared by tests/support/trt_harness.cpp and
// tests/support/trt_probe.cpp.
#pragma once
#include <NvInferRuntime.h>
#include <dlfcn.h>

#include <string>

struct PluginLibrary {
  nvinfer1::IPluginCreatorInterface* const* creators = nullptr;
  int32_t count = 0;
};

// An ILoggerFinder that hands out its one logger.
template <class Logger>
struct LoggerFinder : nvinfer1::ILoggerFinder {
  Logger logger;
  nvinfer1::ILogger* findLogger() noexcept override { return &logger; }
};

// "" when loaded into `out`, else what failed.
inline std::string load_plugin_library(char const* path, nvinfer1::ILoggerFinder* finder,
                                       PluginLibrary& out) {
  void* lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!lib) return std::string("dlopen: ") + dlerror();
  auto get = reinterpret_cast<nvinfer1::IPluginCreatorInterface* const* (*)(int32_t&)>(
      dlsym(lib, "getCreators"));
  auto set = reinterpret_cast<void (*)(nvinfer1::ILoggerFinder*)>(dlsym(lib, "setLoggerFinder"));
  if (!get || !set) return "getCreators or setLoggerFinder missing";
  set(finder);
  out.creators = get(out.count);
  return "";
}
