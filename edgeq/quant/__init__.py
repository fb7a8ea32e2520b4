"""Post-training quantization: Quamba W8A8 and its naive baseline, Quamba2 W8A8/W4A8/W4A16."""
