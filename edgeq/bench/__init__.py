"""Generation benchmarks: TTFT, TPOT, tokens/s, memory and (on a Jetson) energy."""
