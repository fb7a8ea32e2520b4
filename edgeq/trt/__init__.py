"""TensorRT: engine building and running on the device. `tensorrt` is imported lazily: it
exists only where TensorRT is installed (JetPack, or a workstation with TensorRT)."""
