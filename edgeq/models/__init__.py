from .config import MambaConfig, parse_config, read_config
from .loader import load_model, save_model
from .mamba import MambaLM

__all__ = ["MambaConfig", "MambaLM", "load_model", "save_model", "parse_config", "read_config"]
