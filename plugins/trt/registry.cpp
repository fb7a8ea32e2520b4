// The two C entry points TensorRT's IPluginRegistry::loadLibrary (and trtexec
// --dynamicPlugins) looks for; plugins/trt/exports.map exports nothing else.
#include <atomic>

#include "edgeq_trt.h"

namespace edgeq {
namespace trt {

IPluginCreatorInterface* selective_scan_creator();
IPluginCreatorInterface* causal_conv1d_creator();
IPluginCreatorInterface* ssd_scan_creator();
IPluginCreatorInterface* selective_scan_int8_creator();
IPluginCreatorInterface* causal_conv1d_int8_creator();
IPluginCreatorInterface* hadamard_int8_creator();
IPluginCreatorInterface* add_rmsnorm_int8_creator();
IPluginCreatorInterface* linear_w4a8_creator();
IPluginCreatorInterface* ssd_scan_int8_creator();
IPluginCreatorInterface* embedding_w4_creator();

namespace {
std::atomic<ILoggerFinder*> logger_finder{nullptr};
}

void log_msg(ILogger::Severity severity, std::string const& msg) noexcept {
  ILoggerFinder* finder = logger_finder.load();
  if (ILogger* logger = finder ? finder->findLogger() : nullptr) logger->log(severity, msg.c_str());
}

}  // namespace trt
}  // namespace edgeq

extern "C" __attribute__((visibility("default"))) nvinfer1::IPluginCreatorInterface* const*
getCreators(int32_t& nbCreators) {
  // the order of the op table (edgeq/ops/table.py)
  static nvinfer1::IPluginCreatorInterface* const creators[] = {
      edgeq::trt::selective_scan_creator(),      edgeq::trt::causal_conv1d_creator(),
      edgeq::trt::ssd_scan_creator(),            edgeq::trt::selective_scan_int8_creator(),
      edgeq::trt::causal_conv1d_int8_creator(),  edgeq::trt::hadamard_int8_creator(),
      edgeq::trt::add_rmsnorm_int8_creator(),    edgeq::trt::linear_w4a8_creator(),
      edgeq::trt::ssd_scan_int8_creator(),      edgeq::trt::embedding_w4_creator()};
  nbCreators = sizeof(creators) / sizeof(creators[0]);
  return creators;
}

extern "C" __attribute__((visibility("default"))) void setLoggerFinder(
    nvinfer1::ILoggerFinder* finder) {
  edgeq::trt::logger_finder.store(finder);
}
