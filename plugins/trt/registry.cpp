// The two C entry points TensorRT's IPluginRegistry::loadLibrary (and trtexec
// --dynamicPlugins) looks for; plugins/trt/exports.map exports nothing else.
#include <atomic>

#include "edgeq_trt.h"
#include "op_creators.h"  // generated from the op table

namespace edgeq {
namespace trt {

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
  return edgeq::trt::creators(nbCreators);
}

extern "C" __attribute__((visibility("default"))) void setLoggerFinder(
    nvinfer1::ILoggerFinder* finder) {
  edgeq::trt::logger_finder.store(finder);
}
