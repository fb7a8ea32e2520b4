// The CPU kernels' thread policy. They run inside ONNX Runtime, whose intra-op pool already
// runs the graph's other ops on every core: a kernel opens an OpenMP team only for work big
// enough (a prompt) that waking the team costs little beside it. Decode-sized work (one token:
// a few thousand elements, microseconds on one core) runs on the calling thread, so no OpenMP
// team ever wakes up, spins or contends with ORT's threads at decode.
#pragma once
#include <cstdint>

// elements of work (inner-loop iterations) below which a kernel stays on the calling thread
constexpr int64_t kEdgeqParallelMinWork = int64_t(1) << 17;

// Whether a call opens an OpenMP team: more than one unit the team splits (tokens, or sequences
// where a kernel splits by sequence) and at least kEdgeqParallelMinWork of work. So one token
// stays on the calling thread at any width, even a decode GEMV (docs/cpu-runtime.md).
constexpr bool edgeq_team(int64_t units, int64_t work) {
  return units > 1 && work >= kEdgeqParallelMinWork;
}
