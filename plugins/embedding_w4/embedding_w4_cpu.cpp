// EdgeqEmbeddingW4 on the CPU (docs/ops.md): only the rows of the given ids are read and
// dequantized, element 2j from the low nibble of byte j, times its group's fp16 scale in fp32.
#include "edgeq_kernels.h"
#include "edgeq_quant.h"

extern "C" int edgeq_embedding_w4(const int64_t* ids, const uint8_t* table,
                                  const edgeq_half* table_scale, float* y, int64_t rows,
                                  int64_t vocab, int64_t d, int64_t group_size, void*) {
  if (!ids || !table || !table_scale || !y) return EDGEQ_NULL_POINTER;
  if (rows < 0 || vocab < 0 || d < 2 || group_size < 2 || group_size % 2 || d % group_size)
    return EDGEQ_BAD_SHAPE;
  const int64_t groups = d / group_size;
  for (int64_t r = 0; r < rows; ++r) {
    float* out = y + r * d;
    const int64_t id = ids[r];
    if (id < 0 || id >= vocab) {
      for (int64_t k = 0; k < d; ++k) out[k] = 0.f;
      continue;
    }
    const uint8_t* packed = table + id * (d / 2);
    const edgeq_half* scale = table_scale + id * groups;
    for (int64_t k = 0; k < d; ++k) {
      const int nibble = k % 2 ? packed[k / 2] >> 4 : packed[k / 2] & 15;
      out[k] = float((nibble ^ 8) - 8) * edgeq_half_to_float(scale[k / group_size]);
    }
  }
  return EDGEQ_OK;
}
