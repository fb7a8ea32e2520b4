"""The names of a bundle's files, relative to its folder: written by `edgeq build` and `edgeq
engine`, read by verify, the runtimes and bench."""

MANIFEST = "bundle.json"  # what the bundle is, and every file's sha256
GRAPH = "model.onnx"
QUANT = "quant.json"  # the scales and calibration of a quantized bundle
TOKENIZER = "tokenizer.json"
PLUGINS = "plugins"  # the built plugin library's folder
PLUGIN_LIB = "libedgeq_trt_plugins.so"
PLUGIN_LIBRARY = f"{PLUGINS}/{PLUGIN_LIB}"
SOURCES = "plugins-src"  # the plugin sources, when the library is built on the device
SCRIPT = f"{SOURCES}/build_plugins.sh"
ENGINE = "model.engine"
CACHE = "timing.cache"
LOG = "engine_build.log"
LAYERS = "engine_layers.json"  # the engine's layer information
