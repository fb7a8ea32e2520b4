// EdgeqLinearW4A8 on the GPU (docs/ops.md), two kernels:
// - decode (up to kW4A8Tokens tokens) is a GEMV whose time is reading the packed weights once:
//   one warp per output channel, its lanes taking consecutive 16-byte chunks of the row (512
//   contiguous bytes per warp step), each chunk's 32 int4 weights unpacked in registers into
//   eight words of four int8 and multiplied with x by dp4a. Group sizes that are not a multiple
//   of 32 (or unaligned pointers) take one byte per chunk; such shapes take it for prompts too.
// - prompts take a tiled kernel on the int8 tensor cores (mma.m16n8k32, sm_80+), which reads
//   each weight once per kTileM tokens instead of once per kW4A8Tokens.
// Numerics: an int32 sum within a group is exact; it is multiplied, in fp32, by the group's
// scale and these fp32 partials are added in fp32, so y differs from the reference's fp64 sum
// over groups by fp32 rounding only (no fp64: slow on Orin).
#include <algorithm>
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

// The two intrinsics, with their definitions for tests/support/cuda_host_emu.cu.
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

// Four nibbles, one in the low half of each byte, sign-extended to four int8: 8..15 get 0xF0.
EDGEQ_CUDA_HD uint32_t sext4(uint32_t v) { return v | (v & 0x08080808u) * 0x1Eu; }

// 32 weights from 16 packed bytes, as eight words of four int8 in k order.
struct Chunk16 {
  static constexpr int kBytes = 16;
  int32_t w[8];

  EDGEQ_CUDA_HD void load(const uint8_t* p) {
    const uint4 v = load_as<uint4>(p);
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
    const uint4 a = load_as<uint4>(x), b = load_as<uint4>(x + 16);
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

// Prompts: a block computes kTileM tokens x kTileN output channels of y; its 8 warps (4 x 2)
// take 32 x 32 each, as 2 x 4 tiles of mma.m16n8k32 (int8 x int8 -> int32). Per kTileK step
// the block copies the x tile and the weight tile, unpacked to int8, to shared memory, whose
// rows are padded to kTileStride bytes so that a warp's fragment loads hit 32 different banks;
// the next step's global loads are in flight during this step's mma. At a group's end each
// int32 sum is multiplied by its channel's scale and added to an fp32 sum.
constexpr int kTileM = 128, kTileN = 64, kTileK = 64, kTileStride = kTileK + 16;
constexpr int kTileThreads = 256;

struct W4A8Smem {
  alignas(16) int8_t x[kTileM * kTileStride];
  alignas(16) int8_t w[kTileN * kTileStride];
};

// One thread's share of a k step's tiles, held in registers between the global loads and the
// shared stores: 16 bytes of x rows t / 4 and t / 4 + 64; threads below 128 also 32 weights of
// channel t / 2. Rows past the tensors' ends (null pointers) are zeros.
struct TileShare {
  const int8_t* xrow[2];
  const uint8_t* wrow;
  uint4 x[2];
  Chunk16 w;

  EDGEQ_CUDA_HD TileShare(const W4A8Args& a, int64_t m0, int64_t n0, int t) {
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const int64_t m = m0 + t / 4 + i * (kTileThreads / 4);
      xrow[i] = m < a.rows ? a.x + m * a.K + t % 4 * 16 : nullptr;
    }
    const int64_t n = n0 + t / 2;
    wrow = t < 2 * kTileN && n < a.N ? a.w + n * (a.K / 2) + t % 2 * 16 : nullptr;
  }

  EDGEQ_CUDA_HD void load(int32_t step) {
    const int64_t k0 = int64_t(step) * kTileK;
#pragma unroll
    for (int i = 0; i < 2; ++i) x[i] = xrow[i] ? load_as<uint4>(xrow[i] + k0) : uint4{0, 0, 0, 0};
    if (wrow) w.load(wrow + k0 / 2);
    else for (int32_t& v : w.w) v = 0;
  }

  EDGEQ_CUDA_HD void store(W4A8Smem& sm, int t) const {
#pragma unroll
    for (int i = 0; i < 2; ++i)
      store_as(sm.x + (t / 4 + i * (kTileThreads / 4)) * kTileStride + t % 4 * 16, x[i]);
    if (t < 2 * kTileN) {
      int8_t* row = sm.w + t / 2 * kTileStride + t % 2 * 32;
      store_as(row, uint4{uint32_t(w.w[0]), uint32_t(w.w[1]), uint32_t(w.w[2]), uint32_t(w.w[3])});
      store_as(row + 16,
              uint4{uint32_t(w.w[4]), uint32_t(w.w[5]), uint32_t(w.w[6]), uint32_t(w.w[7])});
    }
  }
};

// Thread th's part of the block's tile at tokens m0.., channels n0... Fragments (PTX ISA,
// mma.m16n8k32 .s8): lane = 4 * gid + tig; A's words: rows gid and gid + 8, bytes tig * 4 and
// 16 + tig * 4; B's: channel gid, the same bytes; D: rows gid, gid + 8, channels 2 tig, 2 tig + 1.
#pragma nv_exec_check_disable  // Thread decides where it runs (the emulator's is host-only)
template <class Thread>
EDGEQ_CUDA_HD void w4a8_tile(const W4A8Args& a, int64_t m0, int64_t n0, W4A8Smem& sm,
                             const Thread& th) {
  const int t = th.index(), warp = t / 32, gid = t % 32 / 4, tig = t % 4;
  const int wm = warp / 2 * 32, wn = warp % 2 * 32;  // the warp's rows and channels in the tile
  const int32_t steps = int32_t(a.K / kTileK), per_group = int32_t(a.group_size / kTileK);
  const int64_t groups = a.K / a.group_size;
  int32_t acc[2][4][4] = {};
  float sum[2][4][4] = {};
  TileShare share(a, m0, n0, t);
  share.load(0);
  for (int32_t step = 0; step < steps; ++step) {
    share.store(sm, t);
    th.sync();
    if (step + 1 < steps) share.load(step + 1);
#pragma unroll
    for (int kk = 0; kk < kTileK; kk += 32) {
      uint32_t af[2][4], bf[4][2];
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        const int8_t* r = sm.x + (wm + i * 16 + gid) * kTileStride + kk + tig * 4;
        af[i][0] = load_as<uint32_t>(r);
        af[i][1] = load_as<uint32_t>(r + 8 * kTileStride);
        af[i][2] = load_as<uint32_t>(r + 16);
        af[i][3] = load_as<uint32_t>(r + 8 * kTileStride + 16);
      }
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int8_t* c = sm.w + (wn + j * 8 + gid) * kTileStride + kk + tig * 4;
        bf[j][0] = load_as<uint32_t>(c);
        bf[j][1] = load_as<uint32_t>(c + 16);
      }
#pragma unroll
      for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) th.mma(acc[i][j], af[i], bf[j]);
    }
    th.sync();  // the tiles are read: the next step may overwrite them
    if ((step + 1) % per_group) continue;
    const int64_t g = step / per_group;
#pragma unroll
    for (int j = 0; j < 4; ++j)
#pragma unroll
      for (int q = 0; q < 4; ++q) {
        const int64_t n = n0 + wn + j * 8 + tig * 2 + q % 2;
        const float scale = n < a.N ? a.scale[n * groups + g] : 0.f;
#pragma unroll
        for (int i = 0; i < 2; ++i) {
          sum[i][j][q] += float(acc[i][j][q]) * scale;
          acc[i][j][q] = 0;
        }
      }
  }
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j)
#pragma unroll
      for (int q = 0; q < 4; ++q) {
        const int64_t n = n0 + wn + j * 8 + tig * 2 + q % 2;
        if (n < a.N) w4a8_store(a, m0 + wm + i * 16 + gid + q / 2 * 8, n, sum[i][j][q]);
      }
}

// Channel tiles fastest: the blocks of one token tile run together, so its x stays in L2 while
// the weights stream by, once per kTileM tokens. Two blocks per SM: 128 registers a thread
// (ptxas spills about 20 bytes for sm_87), so one block's barrier does not idle the SM.
__global__ void __launch_bounds__(kTileThreads, 2) w4a8_tiled_kernel(const W4A8Args a) {
  __shared__ W4A8Smem sm;
  for (int64_t m0 = int64_t(blockIdx.y) * kTileM; m0 < a.rows; m0 += int64_t(gridDim.y) * kTileM)
    w4a8_tile(a, m0, int64_t(blockIdx.x) * kTileN, sm, GpuThread{});
}

// group_size % 32 == 0 makes K/2 a multiple of 16: every row of x and w is as aligned as row 0
inline bool w4a8_aligned(const W4A8Args& a) {
  return a.group_size % 32 == 0 && aligned16(a.x, a.w);
}

// The tiled kernel takes more tokens than a GEMV pass, in groups of whole k steps.
inline bool w4a8_tiled(const W4A8Args& a) {
  return a.rows > kW4A8Tokens && a.group_size % kTileK == 0 && w4a8_aligned(a);
}

// Calls f(Chunk{}, std::integral_constant<int, T>{}) with the GEMV's chunk and tokens per pass.
template <class F>
void with_w4a8_variant(const W4A8Args& a, F f) {
  auto tokens = [&](auto chunk) {
    if (a.rows == 1) f(chunk, std::integral_constant<int, 1>{});
    else f(chunk, std::integral_constant<int, kW4A8Tokens>{});
  };
  if (w4a8_aligned(a)) tokens(Chunk16{});
  else tokens(Chunk1{});
}

// The W4A8 linear's choice of kernel, shared by edgeq_linear_w4a8 and the CPU emulation: after
// w4a8_check, tiled() or gemv(chunk, tokens) (with_w4a8_variant's), nothing for an empty output;
// returns w4a8_check's status.
// The tiled kernel: a block per kTileM tokens x kTileN channels; the GEMV: a warp per output
// channel, a block row per T tokens (grid y at most 65535: the kernels loop over the rest)
inline Geometry w4a8_tiled_geometry(const W4A8Args& a) {
  return {(a.N + kTileN - 1) / kTileN, std::min<int64_t>((a.rows + kTileM - 1) / kTileM, 65535),
          kTileThreads, 0};
}
inline Geometry w4a8_gemv_geometry(const W4A8Args& a, int T) {
  return {(a.N + kW4A8Warps - 1) / kW4A8Warps, std::min<int64_t>((a.rows + T - 1) / T, 65535),
          kW4A8Warps * 32, 0};
}

template <class FTiled, class FGemv>
int w4a8_dispatch(const W4A8Args& a, FTiled tiled, FGemv gemv) {
  if (int rc = w4a8_check(a)) return rc;
  if (a.rows == 0 || a.N == 0) return EDGEQ_OK;
  if (w4a8_tiled(a)) tiled();
  else with_w4a8_variant(a, gemv);
  return EDGEQ_OK;
}

}  // namespace edgeq_cuda

extern "C" int edgeq_linear_w4a8(const int8_t* x, const uint8_t* weight, const float* weight_scale,
                                 float* y, int64_t rows, int64_t K, int64_t N, float x_scale,
                                 int64_t group_size, void* stream) {
  using namespace edgeq_cuda;
  const W4A8Args a{x, weight, weight_scale, y, rows, K, N, group_size, x_scale};
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  const int rc = w4a8_dispatch(
      a,
      [&] {
        const Geometry g = w4a8_tiled_geometry(a);
        w4a8_tiled_kernel<<<g.grid(), g.block, 0, s>>>(a);
      },
      [&](auto chunk, auto tokens) {
        constexpr int T = decltype(tokens)::value;
        const Geometry g = w4a8_gemv_geometry(a, T);
        w4a8_kernel<decltype(chunk), T><<<g.grid(), g.block, 0, s>>>(a);
      });
  return rc || rows == 0 || N == 0 ? rc : launch_status();
}
