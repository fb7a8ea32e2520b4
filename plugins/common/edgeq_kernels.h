// The C ABI of edgeq's kernels: one signature per op, shared by the CPU library
// (libedgeq_cpu) and the CUDA library (libedgeq_cuda), which differ only in where the pointers
// live. The CPU kernels ignore `stream`. The CUDA kernels take device pointers and a
// cudaStream_t as `stream`, and return once the kernel is queued on it. Semantics:
// docs/ops.md. All functions return 0 on success and a nonzero edgeq_status on bad arguments
// (or, CUDA, a failed launch). `state_out` may alias `state` (in-place update).
// Arguments: the op's inputs, its outputs, shape ints, its attributes in the op table's order
// (edgeq/ops/table.py), `stream`; an absent optional input is a null pointer.
#pragma once
#include <stdint.h>

// libraries build with hidden visibility; only the ABI is exported
#define EDGEQ_API __attribute__((visibility("default")))

#ifdef __cplusplus
extern "C" {
#endif

enum edgeq_status { EDGEQ_OK = 0, EDGEQ_BAD_SHAPE = 1, EDGEQ_NULL_POINTER = 2, EDGEQ_CUDA_ERROR = 3 };

// An IEEE fp16 value as its 16 bits (the CUDA library reads it as __half).
typedef uint16_t edgeq_half;

// The scales of an int8 tensor, a FLOATS attribute (docs/ops.md, "Int8 conventions"): `count`
// fp32 values, where the other pointers live; 1 (per tensor) or one per channel, head or group,
// so value i is values[count == 1 ? 0 : i].
typedef struct {
  const float* values;
  int64_t count;
} edgeq_scales;

// EDGEQ_OK when `s` has 1 or n values.
static inline int edgeq_scales_check(edgeq_scales s, int64_t n) {
  if (!s.values) return EDGEQ_NULL_POINTER;
  return s.count == 1 || s.count == n ? EDGEQ_OK : EDGEQ_BAD_SHAPE;
}

// EdgeqSelectiveScan. u, z, y: [batch, L, dim]; delta: [batch, L, heads]; A: [heads, dstate];
// B, C: [batch, L, groups, dstate]; D: [dim]; delta_bias: [heads];
// state, state_out: [batch, dim, dstate] fp32. z may be NULL (no gate).
EDGEQ_API int edgeq_selective_scan_f32(const float* u, const float* delta, const float* A, const float* B,
                                       const float* C, const float* D, const float* delta_bias,
                                       const float* state, const float* z, float* y, float* state_out,
                                       int64_t batch, int64_t L, int64_t dim, int64_t heads,
                                       int64_t groups, int64_t dstate, int32_t delta_softplus,
                                       void* stream);

// EdgeqCausalConv1d. x, y: [batch, L, channels]; weight: [channels, width]; bias: [channels];
// state, state_out: [batch, width-1, channels].
EDGEQ_API int edgeq_causal_conv1d_f32(const float* x, const float* weight, const float* bias,
                                      const float* state, float* y, float* state_out, int64_t batch,
                                      int64_t L, int64_t channels, int64_t width, int32_t activation,
                                      void* stream);

// EdgeqSSDScan. x, y: [batch, L, dim]; dt: [batch, L, heads]; A, D, dt_bias: [heads];
// B, C: [batch, L, groups, dstate]; state, state_out: [batch, dim, dstate] fp32.
EDGEQ_API int edgeq_ssd_scan_f32(const float* x, const float* dt, const float* A, const float* B,
                                 const float* C, const float* D, const float* dt_bias,
                                 const float* state, float* y, float* state_out, int64_t batch,
                                 int64_t L, int64_t dim, int64_t heads, int64_t groups,
                                 int64_t dstate, int32_t dt_softplus, int32_t chunk_size,
                                 void* stream);

// ---- int8 variants (docs/ops.md "Int8 conventions"): scales by value (per tensor) or as
// edgeq_scales; fp32 SSM state, but an fp16 one in the SSD scan ----

// EdgeqSelectiveScanInt8. u, z: int8 [batch, L, dim]; delta: int8 [batch, L, heads];
// B, C: int8 [batch, L, groups, dstate]; y: fp32; the rest as edgeq_selective_scan_f32.
EDGEQ_API int edgeq_selective_scan_int8(const int8_t* u, const int8_t* delta, const float* A,
                                        const int8_t* B, const int8_t* C, const float* D,
                                        const float* delta_bias, const float* state,
                                        const int8_t* z, float* y, float* state_out,
                                        int64_t batch, int64_t L, int64_t dim, int64_t heads,
                                        int64_t groups, int64_t dstate, float u_scale,
                                        float delta_scale, float B_scale, float C_scale,
                                        float z_scale, int32_t delta_softplus, void* stream);

// EdgeqCausalConv1dInt8. x, y: int8 [batch, L, channels]; weight: int8 [channels, width];
// bias: fp32; state, state_out: int8 [batch, width-1, channels]; each scale 1 or `channels`
// values.
EDGEQ_API int edgeq_causal_conv1d_int8(const int8_t* x, const int8_t* weight, const float* bias,
                                       const int8_t* state, int8_t* y, int8_t* state_out,
                                       int64_t batch, int64_t L, int64_t channels, int64_t width,
                                       edgeq_scales x_scale, edgeq_scales weight_scale,
                                       edgeq_scales y_scale, int32_t activation, void* stream);

// EdgeqSSDScanInt8. x: int8 [batch, L, dim]; dt: int8 [batch, L, heads]; B, C: int8
// [batch, L, groups, dstate]; state, state_out: fp16 [batch, dim, dstate] (may alias); y: fp32;
// the rest as edgeq_ssd_scan_f32. x_scale: 1 or dim values, dt_scale: 1 or heads, B_scale and
// C_scale: 1 or groups.
EDGEQ_API int edgeq_ssd_scan_int8(const int8_t* x, const int8_t* dt, const float* A,
                                  const int8_t* B, const int8_t* C, const float* D,
                                  const float* dt_bias, const edgeq_half* state, float* y,
                                  edgeq_half* state_out, int64_t batch, int64_t L, int64_t dim,
                                  int64_t heads, int64_t groups, int64_t dstate,
                                  edgeq_scales x_scale, edgeq_scales dt_scale,
                                  edgeq_scales B_scale, edgeq_scales C_scale, int32_t dt_softplus,
                                  int32_t chunk_size, void* stream);

// EdgeqHadamardInt8 over rows of n: x fp32 [rows, n], y int8 [rows, n].
EDGEQ_API int edgeq_hadamard_int8(const float* x, int8_t* y, int64_t rows, int64_t n,
                                  float y_scale, void* stream);

// EdgeqAddRMSNormInt8 over rows of d: x, residual, residual_out fp32 [rows, d]; y int8.
EDGEQ_API int edgeq_add_rmsnorm_int8(const float* x, const float* residual, const float* weight,
                                     int8_t* y, float* residual_out, int64_t rows, int64_t d,
                                     float eps, float y_scale, void* stream);

// EdgeqLinearW4A8: x int8 [rows, K] times int4 weights packed two per byte, weight uint8
// [N, K/2] (ONNX's INT4 order), with weight_scale fp32 [N, K/group_size]; y fp32 [rows, N].
// group_size even and dividing K. CUDA: rows, N < 2^31.
EDGEQ_API int edgeq_linear_w4a8(const int8_t* x, const uint8_t* weight, const float* weight_scale,
                                float* y, int64_t rows, int64_t K, int64_t N, float x_scale,
                                int64_t group_size, void* stream);

// EdgeqEmbeddingW4: the rows of a 4-bit table at the ids. ids int64 [rows]; table uint8
// [vocab, d/2], int4 packed two per byte (ONNX's INT4 order); table_scale fp16
// [vocab, d/group_size]; y fp32 [rows, d]. group_size even and dividing d. An id outside
// [0, vocab) gives a row of zeros. CUDA: rows < 2^31.
EDGEQ_API int edgeq_embedding_w4(const int64_t* ids, const uint8_t* table,
                                 const edgeq_half* table_scale, float* y, int64_t rows,
                                 int64_t vocab, int64_t d, int64_t group_size, void* stream);

// fp16-activation variants, CUDA library only: the same ops with the activations (u, delta, B,
// C, z, y; SSD: x, dt, B, C, y; conv: every tensor) in fp16. A, D, delta_bias (dt_bias) and the
// SSM state stay fp32, and all math is fp32 (docs/ops.md, Precision).
// CUDA limits: dstate <= 256, width <= 32, batch <= 65535; beyond them EDGEQ_BAD_SHAPE.
EDGEQ_API int edgeq_selective_scan_f16(const edgeq_half* u, const edgeq_half* delta, const float* A,
                                       const edgeq_half* B, const edgeq_half* C, const float* D,
                                       const float* delta_bias, const float* state,
                                       const edgeq_half* z, edgeq_half* y, float* state_out,
                                       int64_t batch, int64_t L, int64_t dim, int64_t heads,
                                       int64_t groups, int64_t dstate, int32_t delta_softplus,
                                       void* stream);

EDGEQ_API int edgeq_ssd_scan_f16(const edgeq_half* x, const edgeq_half* dt, const float* A,
                                 const edgeq_half* B, const edgeq_half* C, const float* D,
                                 const float* dt_bias, const float* state, edgeq_half* y,
                                 float* state_out, int64_t batch, int64_t L, int64_t dim,
                                 int64_t heads, int64_t groups, int64_t dstate,
                                 int32_t dt_softplus, int32_t chunk_size, void* stream);

EDGEQ_API int edgeq_causal_conv1d_f16(const edgeq_half* x, const edgeq_half* weight,
                                      const edgeq_half* bias, const edgeq_half* state, edgeq_half* y,
                                      edgeq_half* state_out, int64_t batch, int64_t L,
                                      int64_t channels, int64_t width, int32_t activation,
                                      void* stream);

// How the CPU library was compiled: "optimised" or "unoptimised", then the widest vector
// instruction set it may use (e.g. "optimised avx512f"), for benchmark records and tests.
EDGEQ_API const char* edgeq_cpu_build(void);

#ifdef __cplusplus
}
#endif
