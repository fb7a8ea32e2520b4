// EdgeqEmbeddingW4 on the GPU (docs/ops.md). One thread per packed byte of the output rows: it
// reads one byte of the id's table row and that group's fp16 scale and writes two fp32 values
// (a float2 store). Only the rows of the ids are read; a batch-1 decode step reads d/2 bytes.
#include "edgeq_cuda.cuh"

namespace edgeq_cuda {

struct EmbeddingW4Args {
  const int64_t* ids;
  const uint8_t* table;
  const __half* scale;
  float* y;
  int64_t rows, vocab, d, group_size;
};

inline int embedding_w4_check(const EmbeddingW4Args& a) {
  if (!a.ids || !a.table || !a.scale || !a.y) return EDGEQ_NULL_POINTER;
  if (a.rows < 0 || a.rows > INT32_MAX || a.vocab < 0 || a.d < 2 || a.group_size < 2 ||
      a.group_size % 2 || a.d % a.group_size)
    return EDGEQ_BAD_SHAPE;
  return EDGEQ_OK;
}

// Byte i of the output rows (row i / (d/2), elements 2j and 2j+1 of it, j = i % (d/2)).
EDGEQ_CUDA_HD void embedding_w4_pair(const EmbeddingW4Args& a, int64_t i) {
  const int64_t half = a.d / 2, r = i / half, j = i % half, id = a.ids[r];
  float lo = 0.f, hi = 0.f;
  if (id >= 0 && id < a.vocab) {  // a row of zeros otherwise: a kernel cannot report
    const int b = a.table[id * half + j];
    const float s = to_f(a.scale[id * (a.d / a.group_size) + 2 * j / a.group_size]);
    lo = float(((b & 15) ^ 8) - 8) * s;  // 2j and 2j+1 share a group: group_size is even
    hi = float(((b >> 4) ^ 8) - 8) * s;
  }
  a.y[r * a.d + 2 * j] = lo;
  a.y[r * a.d + 2 * j + 1] = hi;
}

__global__ void __launch_bounds__(kRowThreads) embedding_w4_kernel(const EmbeddingW4Args a) {
  const int64_t total = a.rows * (a.d / 2);
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x)
    embedding_w4_pair(a, i);
}

}  // namespace edgeq_cuda

extern "C" int edgeq_embedding_w4(const int64_t* ids, const uint8_t* table,
                                  const edgeq_half* table_scale, float* y, int64_t rows,
                                  int64_t vocab, int64_t d, int64_t group_size, void* stream) {
  using namespace edgeq_cuda;
  const EmbeddingW4Args a{ids, table, reinterpret_cast<const __half*>(table_scale), y, rows,
                          vocab, d, group_size};
  if (int rc = embedding_w4_check(a)) return rc;
  const int64_t total = rows * (d / 2);
  if (total == 0) return EDGEQ_OK;
  // enough blocks for every SM at decode (d/2 threads: 5 blocks of 256 for d = 2560), capped
  const int64_t blocks = (total + kRowThreads - 1) / kRowThreads;
  embedding_w4_kernel<<<unsigned(blocks < 65535 ? blocks : 65535), kRowThreads, 0,
                        static_cast<cudaStream_t>(stream)>>>(a);
  return launch_status();
}
