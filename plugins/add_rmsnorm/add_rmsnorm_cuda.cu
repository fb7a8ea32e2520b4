// EdgeqAddRMSNormInt8 on the GPU (docs/ops.md). One block per row: the residual add is written to
// residual_out while each thread sums its squares, one block reduction gives 1/rms, and each
// thread quantizes the elements it wrote (its own writes: no barrier, no second copy of the row).
// fp32 throughout; the reference's sum is fp64, so an int8 output may differ by one step.
#include "edgeq_cuda.cuh"

namespace edgeq_cuda {

struct RmsNormArgs {
  const float *x, *residual, *weight;
  int8_t* y;
  float* residual_out;  // may alias x or residual
  int64_t rows, d;
  float eps, y_scale;
};

inline int rmsnorm_check(const RmsNormArgs& a) {
  if (!a.x || !a.residual || !a.weight || !a.y || !a.residual_out) return EDGEQ_NULL_POINTER;
  if (a.rows < 0 || a.rows > INT32_MAX || a.d < 1) return EDGEQ_BAD_SHAPE;
  return EDGEQ_OK;
}

template <class Block>
EDGEQ_CUDA_HD void add_rmsnorm_row(const RmsNormArgs& a, int64_t r, const Block& blk) {
  const float* x = a.x + r * a.d;
  const float* res = a.residual + r * a.d;
  float* s = a.residual_out + r * a.d;
  float ss = 0.f;
  blk.each(a.d, [&](int64_t i) {
    const float v = x[i] + res[i];  // read before the write: residual_out may alias them
    s[i] = v;
    ss += v * v;
  });
  const float inv = 1.f / sqrtf(blk.sum(ss) / float(a.d) + a.eps);
  blk.each(a.d, [&](int64_t i) {
    a.y[r * a.d + i] = quantize(s[i] * inv * a.weight[i], a.y_scale);
  });
}

__global__ void __launch_bounds__(kRowThreads) add_rmsnorm_kernel(RmsNormArgs a) {
  add_rmsnorm_row(a, blockIdx.x, GpuBlock{});
}

}  // namespace edgeq_cuda

extern "C" int edgeq_add_rmsnorm_int8(const float* x, const float* residual, const float* weight,
                                      int8_t* y, float* residual_out, int64_t rows, int64_t d,
                                      float eps, float y_scale, void* stream) {
  using namespace edgeq_cuda;
  const RmsNormArgs a{x, residual, weight, y, residual_out, rows, d, eps, y_scale};
  if (int rc = rmsnorm_check(a)) return rc;
  if (rows == 0) return EDGEQ_OK;
  add_rmsnorm_kernel<<<unsigned(rows), kRowThreads, 0, static_cast<cudaStream_t>(stream)>>>(a);
  return launch_status();
}
