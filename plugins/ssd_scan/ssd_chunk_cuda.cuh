// EdgeqSSDScan (fp16) and EdgeqSSDScanInt8 prompts on tensor cores: the chunked SSD algorithm
// (mamba_ssm's ssd_minimal) in one block per (batch, head), over chunks of kChunk tokens in
// order, the head's state [P, N] carried in shared memory in fp32. Per chunk, with
// cum[t] = sum of dt A over the chunk's tokens up to t:
//   M[t, s] = (C[t] . B[s]) exp(cum[t] - cum[s]) dt[s] for s <= t      (C B^T: an mma)
//   y[t, p] = sum_s M[t, s] x[s, p] + exp(cum[t]) sum_n C[t, n] S[p, n] + D x[t, p]
//   S[p, n] <- exp(cum[end]) S[p, n] + sum_s x[s, p] exp(cum[end] - cum[s]) dt[s] B[s, n]
// The mma operands are fp16 with fp32 sums: x, B and C are exact in fp16 (fp16 tensors, or
// int8 values whose scales are applied to the fp32 sums); M, the state and the x dt weights
// are fp32, so each goes in as two fp16 parts, hi = fp16(v) and lo = fp16(v - hi), after a
// power-of-two scale per row (per output row or column of the product) that keeps the row's
// largest part below fp16's range and the small ones above its subnormals: about 22 bits of
// each value, so the results stay within fp32 rounding of the chunked reference. Written
// against a Thread (edgeq_cuda.cuh) so that tests/support/cuda_host_emu.cu runs it on the CPU.
#pragma once
#include "../selective_scan/selective_scan_cuda.cuh"

namespace edgeq_cuda {

constexpr int kChunk = 64;  // tokens per chunk: a kernel choice (the op's chunk_size is not)
constexpr int kChunkThreads = 128;
constexpr int kChunkWarps = kChunkThreads / 32;
constexpr int64_t kChunkMaxP = 64, kChunkMaxN = 128;  // Mamba-2's headdim and largest dstate
static_assert(kChunkMaxP <= kChunk, "the x dt weights [P, chunk] reuse M's [chunk, chunk]");

constexpr int kPad = 8;  // elements after each shared row: conflict-free fragment loads

struct ChunkSmem {
  float S[kChunkMaxP * (kChunkMaxN + kPad)];  // the head's state [P, N]
  float M[kChunk * (kChunk + kPad)];          // M [t, s]; then the x dt weights W [p, s]
  __half X[kChunk * (kChunkMaxP + kPad)];     // the chunk's x [t, p] (int8: its integer values)
  __half B[kChunk * (kChunkMaxN + kPad)], C[kChunk * (kChunkMaxN + kPad)];  // [t, n] (int8: integers)
  float dt[kChunk], cum[kChunk];
  float up_m[kChunk], up_s[kChunkMaxP];  // power-of-two scales of M's (W's) and S's rows
};
static_assert(sizeof(ChunkSmem) <= 99 * 1024, "sm_86/89's opt-in limit of shared memory per block");
static_assert(kChunk == 64, "cum's scan: two tokens per lane of a warp");

// The chunked kernel takes fp16 and int8 prompts of at least two chunks whose head fits the
// shared state and the mma tiles, with softplus time steps (decays at most 1, as the
// time-parallel kernel requires). For side-by-side benchmarks, EDGEQ_SSD_CHUNKED=0 leaves
// them to the split-state kernel and EDGEQ_SCAN_MAX_PARTS=1 to the sequential one.
template <class T, class Y, class S>
bool chunk_fits(const ScanArgs<T, Y, true, S>& a) {
  const char* env = std::getenv("EDGEQ_SSD_CHUNKED");
  const int64_t P = a.dim / a.heads;
  return !std::is_same<T, float>::value && a.delta_softplus && a.L >= 2 * kChunk &&
         P % 16 == 0 && P <= kChunkMaxP && a.dstate % 16 == 0 && a.dstate <= kChunkMaxN &&
         !(env && env[0] == '0' && !env[1]) && max_prompt_parts() > 1;
}

EDGEQ_CUDA_HD uint32_t half2_bits(__half lo, __half hi) {
  uint16_t l, h;
  memcpy(&l, &lo, 2);
  memcpy(&h, &hi, 2);
  return uint32_t(l) | uint32_t(h) << 16;
}

// A power of two that brings a row whose largest magnitude is m to [2^14, 2^15), at most 2^127:
// a row below 2^-113 would otherwise scale by inf (and its zeros to NaN); it stays small, exactly
EDGEQ_CUDA_HD float row_up(float m) {
  const int e = m > 0.f ? 14 - ilogbf(m) : 0;
  return ldexpf(1.f, e < 127 ? e : 127);
}

// m16n8k16 fragments (PTX ISA), lane = 4 g + c: A [16, 16] row-major, register r holds row
// g + 8 (r % 2) at k = 2 c + 8 (r / 2) and the next k; B [16, 8] holds, in register r, column g
// at k = 2 c + 8 r and the next; the sums d[q] are row g + 8 (q / 2), column 2 c + q % 2.
// frag_at gives register r's row (A, R = 4) or column (B, R = 2) and first k.
template <int R>
EDGEQ_CUDA_HD void frag_at(int r, int lane, int& mn, int& k) {
  mn = lane / 4 + (R == 4 ? 8 * (r % 2) : 0);
  k = 2 * (lane % 4) + 8 * (R == 4 ? r / 2 : r);
}

// Rows padded by kPad (N + 8, P + 8, 64 + 8: odd multiples of 8 elements, for P and N
// multiples of 16) make every fragment load below conflict-free: lane 4 g + c reads the word
// at g (N + 8) / 2 + c of a row-major fp16 tile (banks 4 g + c times an odd number), the
// halves at 2 c (P + 8) + g down a column, or the fp32 pair at g (N + 8) + 2 c (64-bit loads,
// a half warp at a time).

// A fragment of exact fp16 values: f(row or column, k) gives the register (two values' bits).
template <int R, class F>
EDGEQ_CUDA_HD void frag(uint32_t (&reg)[R], int lane, F f) {
#pragma unroll
  for (int r = 0; r < R; ++r) {
    int mn, k;
    frag_at<R>(r, lane, mn, k);
    reg[r] = f(mn, k);
  }
}

// A fragment of fp32 values, f giving the two as a float2: hi = fp16(v) and lo = fp16(v - hi)
template <int R, class F>
EDGEQ_CUDA_HD void frag_split(uint32_t (&hi)[R], uint32_t (&lo)[R], int lane, F f) {
#pragma unroll
  for (int r = 0; r < R; ++r) {
    int mn, k;
    frag_at<R>(r, lane, mn, k);
    const float2 v = f(mn, k);
    const __half h0 = __float2half_rn(v.x), h1 = __float2half_rn(v.y);
    hi[r] = half2_bits(h0, h1);
    lo[r] = half2_bits(__float2half_rn(v.x - __half2float(h0)),
                       __float2half_rn(v.y - __half2float(h1)));
  }
}

#pragma nv_exec_check_disable  // Thread decides where it runs (the emulator's is host-only)
template <class T, class Y, class S, class Thread>
EDGEQ_CUDA_HD void chunk_block(const ScanArgs<T, Y, true, S>& a, int64_t b, int64_t h,
                               ChunkSmem& sm, const Thread& th) {
  const int i = th.index(), warp = i / 32, lane = i % 32, g = lane / 4, c = lane % 4;
  const int64_t P = a.dim / a.heads, N = a.dstate, d0 = h * P;
  const int64_t ls = N + kPad, lx = P + kPad;  // row strides of S, B, C and of X
  constexpr int lm = kChunk + kPad;             // of M and W
  const ScanChannel ch = a.channel(d0);  // the head's: its bias, A, D, dt, B and C scales
  const float A = a.A_at(h, 0), sBC = ch.sB * ch.sC;
  auto raw = [](T v) { return to_f(v, 1.f); };  // int8: the integer value, exact in fp16
  auto word = [](const __half* v) { return load_as<uint32_t>(v); };  // two values along a row
  auto column = [](const __half* v, int64_t ld) { return half2_bits(v[0], v[ld]); };
  auto scaled = [](const float* v, float up) {
    const float2 u = load_as<float2>(v);
    return make_float2(u.x * up, u.y * up);
  };
  auto warp_max = [&](const float* v, int64_t n) {  // |v|'s largest, in every lane of the warp
    float m = 0.f;
    for (int64_t k = lane; k < n; k += 32) m = fmaxf(m, fabsf(v[k]));
    for (int o = 16; o > 0; o /= 2) m = fmaxf(m, th.shfl_xor(m, o));
    return m;
  };
  for (int64_t k = i; k < P * N; k += kChunkThreads)
    sm.S[k / N * ls + k % N] = to_f(a.state[(b * a.dim + d0) * N + k]);
  for (int64_t t0 = 0; t0 < a.L; t0 += kChunk) {
    const int64_t row0 = b * a.L + t0;
    const int Q = int(a.L - t0 < kChunk ? a.L - t0 : kChunk);  // past Q: zeros, dt 0
    th.sync();  // the chunk before is done with the tiles
    for (int64_t k = i; k < kChunk * P; k += kChunkThreads) {
      const int64_t t = k / P, p = k % P;
      sm.X[t * lx + p] = __float2half_rn(t < Q ? raw(a.u[(row0 + t) * a.dim + d0 + p]) : 0.f);
    }
    for (int64_t k = i; k < kChunk * N; k += kChunkThreads) {
      const int64_t t = k / N, n = k % N, at = a.bc_at(row0 + t, ch) + n;
      sm.B[t * ls + n] = __float2half_rn(t < Q ? raw(a.B[at]) : 0.f);
      sm.C[t * ls + n] = __float2half_rn(t < Q ? raw(a.C[at]) : 0.f);
    }
    if (i < kChunk) sm.dt[i] = i < Q ? a.dt_at(row0 + i, ch) : 0.f;
    th.sync();
    if (warp == 0) {  // cum: a scan over the warp's lanes, two tokens each
      const float a0 = sm.dt[2 * lane] * A, a1 = a0 + sm.dt[2 * lane + 1] * A;
      float s = a1;
      for (int o = 1; o < 32; o *= 2) {
        const float v = th.shfl(s, lane >= o ? lane - o : lane);
        if (lane >= o) s += v;
      }
      const float before = th.shfl(s, lane > 0 ? lane - 1 : 0);
      sm.cum[2 * lane] = (lane > 0 ? before : 0.f) + a0;
      sm.cum[2 * lane + 1] = (lane > 0 ? before : 0.f) + a1;
    }
    th.sync();
    // M = C B^T, masked and decayed: 4 x 8 tiles of 16 x 8, those on or below the diagonal
    for (int tile = warp; tile < (kChunk / 16) * (kChunk / 8); tile += kChunkWarps) {
      const int tm = tile / (kChunk / 8) * 16, tn = tile % (kChunk / 8) * 8;
      float d[4] = {};
      if (tn <= tm + 15)
        for (int64_t k0 = 0; k0 < N; k0 += 16) {
          uint32_t fa[4], fb[2];
          frag(fa, lane, [&](int r, int k) { return word(&sm.C[(tm + r) * ls + k0 + k]); });
          frag(fb, lane, [&](int j, int k) { return word(&sm.B[(tn + j) * ls + k0 + k]); });
          th.mma_f16(d, fa, fb);
        }
      for (int q = 0; q < 4; ++q) {
        const int t = tm + g + 8 * (q / 2), s = tn + 2 * c + q % 2;
        sm.M[t * lm + s] = s <= t ? d[q] * sBC * expf(sm.cum[t] - sm.cum[s]) * sm.dt[s] : 0.f;
      }
    }
    th.sync();
    for (int r = warp; r < kChunk + P; r += kChunkWarps) {  // a warp per row of M, then of S
      const float m = r < kChunk ? warp_max(sm.M + r * lm, kChunk) : warp_max(sm.S + (r - kChunk) * ls, N);
      if (lane == 0) (r < kChunk ? sm.up_m[r] : sm.up_s[r - kChunk]) = row_up(m);
    }
    th.sync();
    // y: 4 x (P / 8) tiles of 16 x 8 over (t, p)
    for (int tile = warp; tile < (kChunk / 16) * int(P / 8); tile += kChunkWarps) {
      const int tm = tile / int(P / 8) * 16, tn = tile % int(P / 8) * 8;
      float dy[4] = {}, ds[4] = {};  // M x, and C S^T
      for (int k0 = 0; k0 <= tm; k0 += 16) {  // M is zero above the diagonal
        uint32_t hi[4], lo[4], fb[2];
        frag(fb, lane, [&](int j, int k) { return column(&sm.X[(k0 + k) * lx + tn + j], lx); });
        frag_split(hi, lo, lane, [&](int r, int k) {
          return scaled(&sm.M[(tm + r) * lm + k0 + k], sm.up_m[tm + r]); });
        th.mma_f16(dy, hi, fb);
        th.mma_f16(dy, lo, fb);
      }
      for (int64_t k0 = 0; k0 < N; k0 += 16) {
        uint32_t fa[4], hi[2], lo[2];
        frag(fa, lane, [&](int r, int k) { return word(&sm.C[(tm + r) * ls + k0 + k]); });
        frag_split(hi, lo, lane, [&](int j, int k) {
          return scaled(&sm.S[(tn + j) * ls + k0 + k], sm.up_s[tn + j]); });
        th.mma_f16(ds, fa, hi);
        th.mma_f16(ds, fa, lo);
      }
      for (int q = 0; q < 4; ++q) {
        const int t = tm + g + 8 * (q / 2), p = tn + 2 * c + q % 2;
        if (t >= Q) continue;
        const ScanChannel cp = a.channel(d0 + p);
        const float x = __half2float(sm.X[t * lx + p]) * cp.su;
        const float diag = dy[q] / sm.up_m[t] * cp.su;
        a.write_y(row0 + t, cp, diag + ds[q] * ch.sC * expf(sm.cum[t]) / sm.up_s[p], x);
      }
    }
    th.sync();  // M and S read: W takes M's place, S is updated
    const float end = sm.cum[kChunk - 1];
    float* W = sm.M;
    for (int64_t k = i; k < P * kChunk; k += kChunkThreads) {
      const int64_t p = k / kChunk, s = k % kChunk;
      W[p * lm + s] = __half2float(sm.X[s * lx + p]) * expf(end - sm.cum[s]) * sm.dt[s];
    }
    th.sync();
    for (int r = warp; r < P; r += kChunkWarps) {
      const float m = warp_max(W + r * lm, kChunk);
      if (lane == 0) sm.up_m[r] = row_up(m);
    }
    th.sync();
    // S: (P / 16) x (N / 8) tiles of 16 x 8 over (p, n); a thread owns its tiles' states
    const float decay = expf(end);
    for (int tile = warp; tile < int(P / 16) * int(N / 8); tile += kChunkWarps) {
      const int tm = tile / int(N / 8) * 16, tn = tile % int(N / 8) * 8;
      float d[4] = {};
      for (int k0 = 0; k0 < kChunk; k0 += 16) {
        uint32_t hi[4], lo[4], fb[2];
        frag(fb, lane, [&](int j, int k) { return column(&sm.B[(k0 + k) * ls + tn + j], ls); });
        frag_split(hi, lo, lane, [&](int r, int k) {
          return scaled(&W[(tm + r) * lm + k0 + k], sm.up_m[tm + r]); });
        th.mma_f16(d, hi, fb);
        th.mma_f16(d, lo, fb);
      }
      for (int q = 0; q < 4; ++q) {
        const int p = tm + g + 8 * (q / 2), n = tn + 2 * c + q % 2;
        float& s = sm.S[p * ls + n];
        s = decay * s + d[q] / sm.up_m[p] * a.sc.u.at(d0 + p) * ch.sB;
      }
    }
  }
  th.sync();
  for (int64_t k = i; k < P * N; k += kChunkThreads)
    a.state_out[(b * a.dim + d0) * N + k] = from_f<S>(sm.S[k / N * ls + k % N]);
}

// One block per SM is what its shared memory allows on sm_86/87/89: the registers it frees let
// ptxas keep the fragments without spilling (it spilled up to 28 B at its default target)
template <class T, class Y, class S>
__global__ void __launch_bounds__(kChunkThreads, 1) chunk_kernel(ScanArgs<T, Y, true, S> a) {
  extern __shared__ __align__(16) unsigned char smem[];
  chunk_block(a, blockIdx.y, blockIdx.x, *reinterpret_cast<ChunkSmem*>(smem), GpuThread{});
}

// EdgeqSSDScan's and EdgeqSSDScanInt8's choice of kernel, shared by ssd_launch and the CPU
// emulation: after scan_check, chunked() where chunk_fits, else other(); returns their status.
template <class T, class Y, class S, class FChunk, class FOther>
int ssd_dispatch(const ScanArgs<T, Y, true, S>& a, FChunk chunked, FOther other) {
  if (int rc = scan_check(a)) return rc;
  return chunk_fits(a) ? chunked() : other();
}

// one block per (batch, head), its ChunkSmem above the 48 KB default (opted in)
template <class A> Geometry chunk_geometry(const A& a) {
  return {a.heads, a.batch, kChunkThreads, int64_t(sizeof(ChunkSmem))};
}

template <class T, class Y, class S>
int ssd_launch(const ScanArgs<T, Y, true, S>& a, void* stream) {
  return ssd_dispatch(
      a,
      [&]() -> int {
        const Geometry g = chunk_geometry(a);
        if (cudaFuncSetAttribute(chunk_kernel<T, Y, S>,
                                 cudaFuncAttributeMaxDynamicSharedMemorySize,
                                 int(g.smem)) != cudaSuccess) {
          cudaGetLastError();  // not left to the next launch's status
          return EDGEQ_CUDA_ERROR;
        }
        chunk_kernel<<<g.grid(), g.block, g.smem, static_cast<cudaStream_t>(stream)>>>(a);
        return launch_status();
      },
      [&] { return scan_launch(a, stream); });
}

}  // namespace edgeq_cuda
