"""edgeq: quantized Mamba models for NVIDIA Jetson Orin Nano."""
__version__ = "0.1.0"
