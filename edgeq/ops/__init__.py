"""edgeq ops: the op table, the plain-torch references and the torch custom ops."""
from . import custom, reference
from .table import BY_NAME, OPS, OpDef

__all__ = ["custom", "reference", "OPS", "BY_NAME", "OpDef"]
