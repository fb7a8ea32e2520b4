"""Post-training quantization (Quamba W8A8 and its naive baseline)."""
