// EdgeqLinearW4A8 on the GPU (docs/ops.md). Decode is a GEMV whose time is reading the packed
// weights once, so: one warp per output channel, its lanes taking consecutive 16-byte chunks of
// the row (512 contiguous bytes per warp step), each chunk's 32 int4 weights unpacked in
// registers into eight words of four int8 and multiplied with x by dp4a. A warp takes up to
// kTokens tokens per pass over its row; longer prompts re-read the row (from L2) once per pass,
// which is correct but not a tiled prefill kernel.
// Numerics: every chunk lies in one group and its int32 sum is exact; a lane multiplies it, in
// fp32, by the group's scale and the warp adds these fp32 partials, so y differs from the
// reference's fp64 sum over groups by fp32 rounding only (no fp64: slow on Orin).
// Group sizes that are not a multiple of 32 (or unaligned pointers) take one byte per chunk.
#include <algorithm>
#include <cstring>
#include <type_traits>

#include "edgeq_cuda.cuh"

namespace edgeq_cuda {

constexpr int kW4A8Warps = 4;   // output channels per block
constexpr int kW4A8Tokens = 8;  // tokens per pass when there is more than one

struct W4A8Args {
  const int8_t* x;
  const uint8_t* w;
  const float* scale;
  float* y;
  int64_t rows, K, N, group_size;
  float x_scale;
};

inline int w4a8_check(const W4A8Args& a) {
  if (!a.x || !a.w || !a.scale || !a.y) return EDGEQ_NULL_POINTER;
  if (a.rows < 0 || a.rows > INT32_MAX || a.N < 0 || a.N > INT32_MAX || a.K < 1 ||
      a.K > INT32_MAX || a.group_size < 2 || a.group_size % 2 || a.K % a.group_size)
    return EDGEQ_BAD_SHAPE;
  return EDGEQ_OK;
}

// The two intrinsics, with their definitions for tests/cuda_host_emu.cu.
// c + the sum of the products of the four int8 of a and of b
EDGEQ_CUDA_HD int32_t dp4a(int32_t a, int32_t b, int32_t c) {
#ifdef __CUDA_ARCH__
  return __dp4a(a, b, c);
#else
  for (int i = 0; i < 32; i += 8) c += int8_t(a >> i) * int8_t(b >> i);
  return c;
#endif
}

// byte i of the result: byte (s >> 4i) & 7 of the eight bytes of (y, x)
EDGEQ_CUDA_HD uint32_t byte_perm(uint32_t x, uint32_t y, uint32_t s) {
#ifdef __CUDA_ARCH__
  return __byte_perm(x, y, s);
#else
  const uint64_t v = uint64_t(y) << 32 | x;
  uint32_t r = 0;
  for (int i = 0; i < 4; ++i) r |= uint32_t(v >> (8 * ((s >> (4 * i)) & 7)) & 0xFF) << (8 * i);
  return r;
#endif
}

// 16 bytes at a 16-byte aligned address: one vector load on the GPU
EDGEQ_CUDA_HD uint4 load16(const void* p) {
#ifdef __CUDA_ARCH__
  return *static_cast<const uint4*>(p);
#else
  uint4 v;
  std::memcpy(&v, p, sizeof v);
  return v;
#endif
}

// Four nibbles, one in the low half of each byte, sign-extended to four int8: 8..15 get 0xF0.
EDGEQ_CUDA_HD uint32_t sext4(uint32_t v) { return v | (v & 0x08080808u) * 0x1Eu; }

// 32 weights from 16 packed bytes, as eight words of four int8 in k order.
struct Chunk16 {
  static constexpr int kBytes = 16;
  int32_t w[8];

  EDGEQ_CUDA_HD void load(const uint8_t* p) {
    const uint4 v = load16(p);
    const uint32_t packed[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {  // bytes: (w0 | w1 << 4), (w2 | w3 << 4), ...
      const uint32_t even = sext4(packed[i] & 0x0F0F0F0Fu);         // w0 w2 w4 w6
      const uint32_t odd = sext4((packed[i] >> 4) & 0x0F0F0F0Fu);   // w1 w3 w5 w7
      w[2 * i] = int32_t(byte_perm(even, odd, 0x5140));      // w0 w1 w2 w3
      w[2 * i + 1] = int32_t(byte_perm(even, odd, 0x7362));  // w4 w5 w6 w7
    }
  }

  EDGEQ_CUDA_HD int32_t dot(const int8_t* x) const {  // x: 32 values, 16-byte aligned
    const uint4 a = load16(x), b = load16(x + 16);
    const uint32_t xs[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
    int32_t acc = 0;
#pragma unroll
    for (int i = 0; i < 8; ++i) acc = dp4a(w[i], int32_t(xs[i]), acc);
    return acc;
  }
};

// 2 weights from one byte: any even group size, any alignment.
struct Chunk1 {
  static constexpr int kBytes = 1;
  int32_t w0, w1;

  EDGEQ_CUDA_HD void load(const uint8_t* p) {
    w0 = ((p[0] & 15) ^ 8) - 8;
    w1 = ((p[0] >> 4) ^ 8) - 8;
  }
  EDGEQ_CUDA_HD int32_t dot(const int8_t* x) const { return x[0] * w0 + x[1] * w1; }
};

// One lane's share of output channel n for tokens m0 .. m0+T-1: chunks lane, lane + 32, ...
template <class Chunk, int T>
EDGEQ_CUDA_HD void w4a8_lane(const W4A8Args& a, int64_t n, int64_t m0, int lane, float (&acc)[T]) {
  constexpr int kWeights = 2 * Chunk::kBytes;
  const int32_t chunks = int32_t(a.K / kWeights), per_group = int32_t(a.group_size / kWeights);
  const uint8_t* row = a.w + n * (a.K / 2);
  const float* scale = a.scale + n * (a.K / a.group_size);
  for (int32_t c = lane; c < chunks; c += 32) {
    Chunk w;
    w.load(row + int64_t(c) * Chunk::kBytes);
    const float s = scale[c / per_group];
#pragma unroll
    for (int t = 0; t < T; ++t)
      if (m0 + t < a.rows) acc[t] += float(w.dot(a.x + (m0 + t) * a.K + int64_t(c) * kWeights)) * s;
  }
}

EDGEQ_CUDA_HD void w4a8_store(const W4A8Args& a, int64_t m, int64_t n, float sum) {
  if (m < a.rows) a.y[m * a.N + n] = sum * a.x_scale;
}

template <class Chunk, int T>
__global__ void __launch_bounds__(kW4A8Warps * 32) w4a8_kernel(const W4A8Args a) {
  const int lane = threadIdx.x % 32;
  const int64_t n = int64_t(blockIdx.x) * kW4A8Warps + threadIdx.x / 32;
  if (n >= a.N) return;  // a whole warp: the shuffles below see full warps
  for (int64_t m0 = int64_t(blockIdx.y) * T; m0 < a.rows; m0 += int64_t(gridDim.y) * T) {
    float acc[T] = {};
    w4a8_lane<Chunk, T>(a, n, m0, lane, acc);
#pragma unroll
    for (int t = 0; t < T; ++t) {
      for (int o = 16; o > 0; o /= 2) acc[t] += __shfl_xor_sync(0xffffffffu, acc[t], o);
      if (lane == 0) w4a8_store(a, m0 + t, n, acc[t]);
    }
  }
}

// Calls f(Chunk{}, std::integral_constant<int, T>{}) with the chunk and tokens per pass for a.
template <class F>
void with_w4a8_variant(const W4A8Args& a, F f) {
  auto tokens = [&](auto chunk) {
    if (a.rows == 1) f(chunk, std::integral_constant<int, 1>{});
    else f(chunk, std::integral_constant<int, kW4A8Tokens>{});
  };
  // group_size % 32 == 0 makes K/2 a multiple of 16: every row of x and w is as aligned as row 0
  const uintptr_t bases = reinterpret_cast<uintptr_t>(a.x) | reinterpret_cast<uintptr_t>(a.w);
  if (a.group_size % 32 == 0 && bases % 16 == 0) tokens(Chunk16{});
  else tokens(Chunk1{});
}

}  // namespace edgeq_cuda

extern "C" int edgeq_linear_w4a8(const int8_t* x, const uint8_t* weight, const float* weight_scale,
                                 float* y, int64_t rows, int64_t K, int64_t N, float x_scale,
                                 int64_t group_size, void* stream) {
  using namespace edgeq_cuda;
  const W4A8Args a{x, weight, weight_scale, y, rows, K, N, group_size, x_scale};
  if (int rc = w4a8_check(a)) return rc;
  if (rows == 0 || N == 0) return EDGEQ_OK;
  with_w4a8_variant(a, [&](auto chunk, auto tokens) {
    constexpr int T = decltype(tokens)::value;
    const dim3 grid(unsigned((N + kW4A8Warps - 1) / kW4A8Warps),
                    unsigned(std::min<int64_t>((rows + T - 1) / T, 65535)));
    w4a8_kernel<decltype(chunk), T>
        <<<grid, kW4A8Warps * 32, 0, static_cast<cudaStream_t>(stream)>>>(a);
  });
  return launch_status();
}
