// EdgeqHadamardInt8 on the GPU (docs/ops.md). One block per row: the row goes to shared memory
// (coalesced), the butterflies of the K blocks of size M run stage by stage, then each output sums
// its column of H_K over the blocks in k order, times 1/sqrt(n), quantized. Every step is an exact
// fp32 add, or a product with +-1, in the reference's order, so the result is bit for bit the
// reference's.
#include <cmath>
#include <vector>

#include "edgeq_cuda.cuh"
#include "hadamard_matrix.h"

namespace edgeq_cuda {

constexpr int64_t kMaxHadamard = 48 * 1024 / sizeof(float);  // the row in 48 KiB (no opt-in)
constexpr int64_t kMaxK = 28;

struct HadamardArgs {
  const float* x;
  int8_t* y;
  int64_t rows, n;
  float y_scale;
  // from hadamard_setup
  int64_t K, M;
  int32_t log2M;  // M is a power of two: shifts and masks, no 64-bit divisions on the GPU
  float norm;  // 1/sqrt(n) rounded once to fp32, as the reference
  int8_t hk[kMaxK * kMaxK];  // H_K row-major, built on the host: kernel arguments are constant
};

inline int hadamard_setup(HadamardArgs& a) {
  if (!a.x || !a.y) return EDGEQ_NULL_POINTER;
  edgeq::hadamard_split(a.n, a.K, a.M);
  if (a.rows < 0 || a.rows > INT32_MAX || a.K == 0 || a.n > kMaxHadamard) return EDGEQ_BAD_SHAPE;
  const std::vector<int8_t> hk = edgeq::hadamard_base(a.K);
  for (size_t i = 0; i < hk.size(); ++i) a.hk[i] = hk[i];
  while ((int64_t(1) << a.log2M) < a.M) ++a.log2M;
  a.norm = float(1.0 / std::sqrt(double(a.n)));
  return EDGEQ_OK;
}

// Row r, with v[n] in shared memory.
template <class Block>
EDGEQ_CUDA_HD void hadamard_row(const HadamardArgs& a, int64_t r, float* v, const Block& blk) {
  const int64_t n = a.n, M = a.M, K = a.K;
  blk.each(n, [&](int64_t i) { v[i] = a.x[r * n + i]; });
  blk.sync();
  for (int64_t h = 1; h < M; h *= 2) {  // one stage of every block's butterflies
    blk.each(n / 2, [&](int64_t p) {   // pair p: (i, i + h); 2h divides M, so no pair straddles
      const int64_t i = 2 * p - (p & (h - 1));  // (p / h) * 2h + p % h
      const float x0 = v[i], x1 = v[i + h];
      v[i] = x0 + x1;
      v[i + h] = x0 - x1;
    });
    blk.sync();
  }
  blk.each(n, [&](int64_t i) {
    const int64_t row = i >> a.log2M, m = i & (M - 1);
    float acc = 0.f;
    for (int64_t k = 0; k < K; ++k) acc += float(a.hk[row * K + k]) * v[k * M + m];
    a.y[r * n + i] = quantize(acc * a.norm, a.y_scale);
  });
}

// __grid_constant__: hk is indexed at run time, and this reads it in place instead of copying
// the arguments to local memory
__global__ void __launch_bounds__(kRowThreads)
    hadamard_kernel(const __grid_constant__ HadamardArgs a) {
  extern __shared__ float v[];
  hadamard_row(a, blockIdx.x, v, GpuBlock{});
}

}  // namespace edgeq_cuda

extern "C" int edgeq_hadamard_int8(const float* x, int8_t* y, int64_t rows, int64_t n,
                                   float y_scale, void* stream) {
  using namespace edgeq_cuda;
  HadamardArgs a{x, y, rows, n, y_scale};
  if (int rc = hadamard_setup(a)) return rc;
  if (rows == 0) return EDGEQ_OK;
  hadamard_kernel<<<unsigned(rows), kRowThreads, n * sizeof(float),
                    static_cast<cudaStream_t>(stream)>>>(a);
  return launch_status();
}
