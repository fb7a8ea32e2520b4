// The C ABI of this folder's ops, declared inside the extern "C" block of
// plugins/common/edgeq_kernels.h (its types and conventions), which includes this file.
#pragma once

// EdgeqEmbeddingW4: the rows of a 4-bit table at the ids. ids int64 [rows]; table uint8
// [vocab, d/2], int4 packed two per byte (ONNX's INT4 order); table_scale fp16
// [vocab, d/group_size]; y fp32 [rows, d]. group_size even and dividing d. An id outside
// [0, vocab) gives a row of zeros. CUDA: rows < 2^31.
EDGEQ_API int edgeq_embedding_w4(const int64_t* ids, const uint8_t* table,
                                 const edgeq_half* table_scale, float* y, int64_t rows,
                                 int64_t vocab, int64_t d, int64_t group_size, void* stream);
