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

// The ops' signatures: one header per plugins/ folder (FOLDER_abi.h), all of them listed in
// edgeq_op_abi.h, which tools/gen_op_table_h.py generates from the op table.
// int8 variants (docs/ops.md "Int8 conventions"): scales by value (per tensor) or as
// edgeq_scales; fp32 SSM state, but an fp16 one in the SSD scan.
// fp16-activation variants (`_f16`), CUDA library only: the same ops with the activations (u,
// delta, B, C, z, y; SSD: x, dt, B, C, y; conv: every tensor) in fp16. A, D, delta_bias
// (dt_bias) and the SSM state stay fp32, and all math is fp32 (docs/ops.md, Precision).
// CUDA limits: dstate <= 256, width <= 32, batch <= 65535; beyond them EDGEQ_BAD_SHAPE.
#include "edgeq_op_abi.h"

// How the CPU library was compiled: "optimised" or "unoptimised", then the widest vector
// instruction set it may use (e.g. "optimised avx512f"), for benchmark records and tests.
EDGEQ_API const char* edgeq_cpu_build(void);

#ifdef __cplusplus
}
#endif
