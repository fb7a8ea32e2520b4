// EdgeqAddRMSNormInt8 on the GPU (docs/ops.md). One block per row: the residual add is written to
// residual_out while each thread sums its squares, one block reduction gives 1/rms, and each
// thread quantizes the elements it wrote (its own writes: no barrier, no second copy of the row).
// Fewer rows than SMs (decode at batch 1: one SM of the Orin's 8 would work) split each row over
// `parts` blocks in two kernels: the add writes residual_out part by part, then each block sums
// the squares of the whole row (from L2; every block the same sum, in the one-block kernel's
// order, so the same 1/rms) and quantizes its part. Two kernels because residual_out may alias x
// or residual: no block may read the row after another wrote it. fp32 throughout; the
// reference's sum is fp64, so an int8 output may differ by one step.
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

// Blocks per row: 1 from as many rows as SMs, else enough to fill the SMs, at most one element
// per thread
inline int64_t rmsnorm_parts(int64_t rows, int64_t d, int sms) {
  if (rows >= sms) return 1;
  const int64_t want = (sms + rows - 1) / rows, most = d / kRowThreads;
  return want < most ? want : (most > 1 ? most : 1);
}

// Part p of parts of a row of d: elements [begin, end)
struct RowPart {
  int64_t begin, end;
  EDGEQ_CUDA_HD RowPart(int64_t d, int64_t p, int64_t parts)
      : begin(d * p / parts), end(d * (p + 1) / parts) {}
};

template <class Block>
EDGEQ_CUDA_HD float rmsnorm_inv(const RmsNormArgs& a, const float* s, const Block& blk) {
  float ss = 0.f;
  blk.each(a.d, [&](int64_t i) { ss += s[i] * s[i]; });
  return 1.f / sqrtf(blk.sum(ss) / float(a.d) + a.eps);
}

// The split's first kernel: residual_out = x + residual over part p of row r
template <class Block>
EDGEQ_CUDA_HD void add_row_part(const RmsNormArgs& a, int64_t r, int64_t p, int64_t parts,
                                const Block& blk) {
  const RowPart pt(a.d, p, parts);
  const int64_t o = r * a.d + pt.begin;
  blk.each(pt.end - pt.begin, [&](int64_t i) { a.residual_out[o + i] = a.x[o + i] + a.residual[o + i]; });
}

// The second: 1/rms of the whole row, y over part p
template <class Block>
EDGEQ_CUDA_HD void norm_row_part(const RmsNormArgs& a, int64_t r, int64_t p, int64_t parts,
                                 const Block& blk) {
  const float* s = a.residual_out + r * a.d;
  const float inv = rmsnorm_inv(a, s, blk);
  const RowPart pt(a.d, p, parts);
  blk.each(pt.end - pt.begin, [&](int64_t i) {
    const int64_t c = pt.begin + i;
    a.y[r * a.d + c] = quantize(s[c] * inv * a.weight[c], a.y_scale);
  });
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

__global__ void __launch_bounds__(kRowThreads) add_part_kernel(RmsNormArgs a) {
  add_row_part(a, blockIdx.x, blockIdx.y, gridDim.y, GpuBlock{});
}

__global__ void __launch_bounds__(kRowThreads) norm_part_kernel(RmsNormArgs a) {
  norm_row_part(a, blockIdx.x, blockIdx.y, gridDim.y, GpuBlock{});
}

enum NormKernel { kFused, kAddPart, kNormPart };
constexpr const char* kNormKernelNames[] = {"add_rmsnorm_kernel", "add_part_kernel",
                                            "norm_part_kernel"};

// The launches on a GPU of `sms` SMs: f(kernel, geometry) for each, in order; a block per row
// (x: up to 2^31 - 1 rows) and part (y)
template <class F>
void rmsnorm_launches(const RmsNormArgs& a, int sms, F f) {
  const int64_t parts = rmsnorm_parts(a.rows, a.d, sms);
  const Geometry g{a.rows, parts, kRowThreads, 0};
  if (parts == 1) return f(kFused, g);
  f(kAddPart, g);
  f(kNormPart, g);
}

}  // namespace edgeq_cuda

extern "C" int edgeq_add_rmsnorm_int8(const float* x, const float* residual, const float* weight,
                                      int8_t* y, float* residual_out, int64_t rows, int64_t d,
                                      float eps, float y_scale, void* stream) {
  using namespace edgeq_cuda;
  const RmsNormArgs a{x, residual, weight, y, residual_out, rows, d, eps, y_scale};
  if (int rc = rmsnorm_check(a)) return rc;
  if (rows == 0) return EDGEQ_OK;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  rmsnorm_launches(a, row_split_sms(), [&](NormKernel k, const Geometry& g) {
    if (k == kFused) add_rmsnorm_kernel<<<g.grid(), g.block, 0, s>>>(a);
    else if (k == kAddPart) add_part_kernel<<<g.grid(), g.block, 0, s>>>(a);
    else norm_part_kernel<<<g.grid(), g.block, 0, s>>>(a);
  });
  return launch_status();
}
