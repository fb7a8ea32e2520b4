// EdgeqHadamardInt8 on the GPU (docs/ops.md). One block per row: the row goes to shared memory
// (coalesced), the butterflies of the K blocks of size M run stage by stage, then each output sums
// its column of H_K over the blocks in k order, times 1/sqrt(n), quantized. Fewer rows than SMs
// (decode at batch 1) split each row over S blocks by residue (hadamard_part). Every step is an
// exact fp32 add, or a product with +-1, in the reference's order, so the result is bit for bit
// the reference's.
#include <cmath>
#include <type_traits>
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

// Blocks per row S: 1 from as many rows as SMs, else a power of two dividing M that fills the
// SMs, while each block keeps at least one output per thread (at most kMaxParts)
constexpr int64_t kMaxParts = 32;

inline int64_t hadamard_parts(const HadamardArgs& a, int sms) {
  int64_t S = 1;
  while (a.rows * S < sms && 2 * S <= a.M && 2 * S <= kMaxParts && a.n / (2 * S) >= kRowThreads)
    S *= 2;
  return S;
}

// Part b of S of row r: the outputs whose position in their size-M block is b mod S, with
// v[n / S] in shared memory. The butterflies' first log2(S) stages pair positions within runs of
// S: a thread takes its run of x (all the part's blocks read the whole row, from L2) and keeps
// the one value those stages leave at position b of the run, by the same adds and subtractions
// in the same order; the later stages pair positions of the same residue, so they run on the
// part's n / S values alone. S = 1 is the one-block-per-row transform.
template <int S, class Block>
EDGEQ_CUDA_HD void hadamard_part(const HadamardArgs& a, int64_t r, int64_t b, float* v,
                                 const Block& blk) {
  const int64_t n = a.n / S, M = a.M / S, K = a.K;  // the part's values, per block of H_K
  const float* x = a.x + r * a.n;
  blk.each(n, [&](int64_t q) {
    float t[S];
#pragma unroll
    for (int j = 0; j < S; ++j) t[j] = x[q * S + j];
#pragma unroll
    for (int h = 1, c = S; h < S; h *= 2, c /= 2)  // the stage of bit h: t by the bits above
#pragma unroll
      for (int u = 0; u < c / 2; ++u) t[u] = b & h ? t[2 * u] - t[2 * u + 1] : t[2 * u] + t[2 * u + 1];
    v[q] = t[0];
  });
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
  int32_t log2M = a.log2M;  // of the part's M
  for (int s = S; s > 1; s /= 2) --log2M;
  blk.each(n, [&](int64_t q) {
    const int64_t row = q >> log2M, m = q & (M - 1);
    float acc = 0.f;
    for (int64_t k = 0; k < K; ++k) acc += float(a.hk[row * K + k]) * v[k * M + m];
    a.y[r * a.n + row * a.M + m * S + b] = quantize(acc * a.norm, a.y_scale);
  });
}

// A block per row (x: up to 2^31 - 1 rows) and part (y), with its n / S values in shared memory
inline Geometry hadamard_geometry(const HadamardArgs& a, int sms) {
  const int64_t S = hadamard_parts(a, sms);
  return {a.rows, S, kRowThreads, a.n / S * int64_t(sizeof(float))};
}

// Calls f(std::integral_constant<int, S>{}) for S in 1, 2, 4, ..., kMaxParts.
template <class F>
void with_parts(int64_t S, F f) {
  if (S == 1) f(std::integral_constant<int, 1>{});
  else if (S == 2) f(std::integral_constant<int, 2>{});
  else if (S == 4) f(std::integral_constant<int, 4>{});
  else if (S == 8) f(std::integral_constant<int, 8>{});
  else if (S == 16) f(std::integral_constant<int, 16>{});
  else f(std::integral_constant<int, 32>{});
}

// __grid_constant__: hk is indexed at run time, and this reads it in place instead of copying
// the arguments to local memory
template <int S>
__global__ void __launch_bounds__(kRowThreads)
    hadamard_kernel(const __grid_constant__ HadamardArgs a) {
  extern __shared__ float v[];
  hadamard_part<S>(a, blockIdx.x, blockIdx.y, v, GpuBlock{});
}

}  // namespace edgeq_cuda

extern "C" int edgeq_hadamard_int8(const float* x, int8_t* y, int64_t rows, int64_t n,
                                   float y_scale, void* stream) {
  using namespace edgeq_cuda;
  HadamardArgs a{x, y, rows, n, y_scale};
  if (int rc = hadamard_setup(a)) return rc;
  if (rows == 0) return EDGEQ_OK;
  const Geometry g = hadamard_geometry(a, row_split_sms());
  with_parts(g.y, [&](auto s) {
    hadamard_kernel<decltype(s)::value>
        <<<g.grid(), g.block, g.smem, static_cast<cudaStream_t>(stream)>>>(a);
  });
  return launch_status();
}
