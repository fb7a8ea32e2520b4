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
// against a Thread (edgeq_cuda.cuh) so that tests/cuda_host_emu.cu runs it on the CPU.
#pragma once
#include "../selective_scan/selective_scan_cuda.cuh"

namespace edgeq_cuda {

constexpr int kChunk = 64;  // tokens per chunk: a kernel choice (the op's chunk_size is not)
constexpr int kChunkThreads = 128;
constexpr int kChunkWarps = kChunkThreads / 32;
constexpr int64_t kChunkMaxP = 64, kChunkMaxN = 128;  // Mamba-2's headdim and largest dstate
static_assert(kChunkMaxP <= kChunk, "the x dt weights [P, chunk] reuse M's [chunk, chunk]");

struct ChunkSmem {
  float S[kChunkMaxP * kChunkMaxN];  // the head's state [P, N]
  float M[kChunk * kChunk];          // M [t, s]; then the x dt weights W [p, s]
  __half X[kChunk * kChunkMaxP];     // the chunk's x [t, p] (int8: its integer values)
  __half B[kChunk * kChunkMaxN], C[kChunk * kChunkMaxN];  // [t, n] (int8: integer values)
  float dt[kChunk], cum[kChunk];
  float up_m[kChunk], up_s[kChunkMaxP];  // power-of-two scales of M's (W's) and S's rows
};

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

// Two fp16 values of a fragment register: exact ones, or the hi or lo part of fp32 ones
EDGEQ_CUDA_HD uint32_t pair(float v0, float v1, bool lo) {
  const __half h0 = __float2half_rn(v0), h1 = __float2half_rn(v1);
  if (!lo) return half2_bits(h0, h1);
  return half2_bits(__float2half_rn(v0 - __half2float(h0)), __float2half_rn(v1 - __half2float(h1)));
}

// m16n8k16 fragments (PTX ISA): lane = 4 g + c; A [16, 16] row-major, register r holds row
// g + 8 (r % 2), columns 2 c + 8 (r / 2) and the next; B [16, 8] holds, in register r, column g
// and rows 2 c + 8 r and the next; the sums d[q] are row g + 8 (q / 2), column 2 c + q % 2.
// a(i, k) and b(k, j) read the operands' values (fp32 unless exact).
template <class FA>
EDGEQ_CUDA_HD void frag_a(uint32_t (&r)[4], int lane, FA a, bool lo) {
  const int g = lane / 4, c = lane % 4;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int row = g + 8 * (i % 2), col = 2 * c + 8 * (i / 2);
    r[i] = pair(a(row, col), a(row, col + 1), lo);
  }
}

template <class FB>
EDGEQ_CUDA_HD void frag_b(uint32_t (&r)[2], int lane, FB b, bool lo) {
  const int g = lane / 4, c = lane % 4;
#pragma unroll
  for (int i = 0; i < 2; ++i) r[i] = pair(b(2 * c + 8 * i, g), b(2 * c + 8 * i + 1, g), lo);
}

#pragma nv_exec_check_disable  // Thread decides where it runs (the emulator's is host-only)
template <class T, class Y, class S, class Thread>
EDGEQ_CUDA_HD void chunk_block(const ScanArgs<T, Y, true, S>& a, int64_t b, int64_t h,
                               ChunkSmem& sm, const Thread& th) {
  const int i = th.index(), warp = i / 32, lane = i % 32, g = lane / 4, c = lane % 4;
  const int64_t P = a.dim / a.heads, N = a.dstate, d0 = h * P;
  const ScanChannel ch = a.channel(d0);  // the head's: its bias, A, D, dt, B and C scales
  const float A = a.A_at(h, 0), sBC = ch.sB * ch.sC;
  auto raw = [](T v) { return to_f(v, 1.f); };  // int8: the integer value, exact in fp16
  auto hf = [](__half v) { return __half2float(v); };
  for (int64_t k = i; k < P * N; k += kChunkThreads)
    sm.S[k] = to_f(a.state[(b * a.dim + d0) * N + k]);
  for (int64_t t0 = 0; t0 < a.L; t0 += kChunk) {
    const int64_t row0 = b * a.L + t0;
    const int Q = int(a.L - t0 < kChunk ? a.L - t0 : kChunk);  // past Q: zeros, dt 0
    th.sync();  // the chunk before is done with the tiles
    for (int64_t k = i; k < kChunk * P; k += kChunkThreads) {
      const int64_t t = k / P, p = k % P;
      sm.X[k] = __float2half_rn(t < Q ? raw(a.u[(row0 + t) * a.dim + d0 + p]) : 0.f);
    }
    for (int64_t k = i; k < kChunk * N; k += kChunkThreads) {
      const int64_t t = k / N, at = a.bc_at(row0 + t, ch) + k % N;
      sm.B[k] = __float2half_rn(t < Q ? raw(a.B[at]) : 0.f);
      sm.C[k] = __float2half_rn(t < Q ? raw(a.C[at]) : 0.f);
    }
    if (i < kChunk) sm.dt[i] = i < Q ? a.dt_at(row0 + i, ch) : 0.f;
    th.sync();
    if (i == 0) {  // 64 adds: not worth a parallel scan
      float sum = 0.f;
      for (int t = 0; t < kChunk; ++t) sm.cum[t] = sum += sm.dt[t] * A;
    }
    th.sync();
    // M = C B^T, masked and decayed: 4 x 8 tiles of 16 x 8, those on or below the diagonal
    for (int tile = warp; tile < (kChunk / 16) * (kChunk / 8); tile += kChunkWarps) {
      const int tm = tile / (kChunk / 8) * 16, tn = tile % (kChunk / 8) * 8;
      float d[4] = {};
      if (tn <= tm + 15)
        for (int64_t k0 = 0; k0 < N; k0 += 16) {
          uint32_t fa[4], fb[2];
          frag_a(fa, lane, [&](int r, int k) { return hf(sm.C[(tm + r) * N + k0 + k]); }, false);
          frag_b(fb, lane, [&](int k, int j) { return hf(sm.B[(tn + j) * N + k0 + k]); }, false);
          th.mma_f16(d, fa, fb);
        }
      for (int q = 0; q < 4; ++q) {
        const int t = tm + g + 8 * (q / 2), s = tn + 2 * c + q % 2;
        sm.M[t * kChunk + s] = s <= t ? d[q] * sBC * expf(sm.cum[t] - sm.cum[s]) * sm.dt[s] : 0.f;
      }
    }
    th.sync();
    auto row_max = [](const float* v, int64_t n) {
      float m = 0.f;
      for (int64_t k = 0; k < n; ++k) m = fmaxf(m, fabsf(v[k]));
      return m;
    };
    if (i < kChunk) sm.up_m[i] = row_up(row_max(sm.M + i * kChunk, kChunk));
    else if (i - kChunk < P) sm.up_s[i - kChunk] = row_up(row_max(sm.S + (i - kChunk) * N, N));
    th.sync();
    // y: 4 x (P / 8) tiles of 16 x 8 over (t, p)
    for (int tile = warp; tile < (kChunk / 16) * int(P / 8); tile += kChunkWarps) {
      const int tm = tile / int(P / 8) * 16, tn = tile % int(P / 8) * 8;
      float dy[4] = {}, ds[4] = {};  // M x, and C S^T
      for (int k0 = 0; k0 <= tm; k0 += 16) {  // M is zero above the diagonal
        uint32_t fb[2];
        frag_b(fb, lane, [&](int k, int j) { return hf(sm.X[(k0 + k) * P + tn + j]); }, false);
        for (int lo = 0; lo < 2; ++lo) {
          uint32_t fa[4];
          frag_a(fa, lane, [&](int r, int k) {
            return sm.M[(tm + r) * kChunk + k0 + k] * sm.up_m[tm + r]; }, lo);
          th.mma_f16(dy, fa, fb);
        }
      }
      for (int64_t k0 = 0; k0 < N; k0 += 16) {
        uint32_t fa[4];
        frag_a(fa, lane, [&](int r, int k) { return hf(sm.C[(tm + r) * N + k0 + k]); }, false);
        for (int lo = 0; lo < 2; ++lo) {
          uint32_t fb[2];
          frag_b(fb, lane, [&](int k, int j) {
            return sm.S[(tn + j) * N + k0 + k] * sm.up_s[tn + j]; }, lo);
          th.mma_f16(ds, fa, fb);
        }
      }
      for (int q = 0; q < 4; ++q) {
        const int t = tm + g + 8 * (q / 2), p = tn + 2 * c + q % 2;
        if (t >= Q) continue;
        const ScanChannel cp = a.channel(d0 + p);
        const float x = __half2float(sm.X[t * P + p]) * cp.su;
        const float diag = dy[q] / sm.up_m[t] * cp.su;
        a.write_y(row0 + t, cp, diag + ds[q] * ch.sC * expf(sm.cum[t]) / sm.up_s[p], x);
      }
    }
    th.sync();  // M and S read: W takes M's place, S is updated
    const float end = sm.cum[kChunk - 1];
    float* W = sm.M;
    for (int64_t k = i; k < P * kChunk; k += kChunkThreads) {
      const int64_t p = k / kChunk, s = k % kChunk;
      W[k] = __half2float(sm.X[s * P + p]) * expf(end - sm.cum[s]) * sm.dt[s];
    }
    th.sync();
    if (i < P) sm.up_m[i] = row_up(row_max(W + i * kChunk, kChunk));
    th.sync();
    // S: (P / 16) x (N / 8) tiles of 16 x 8 over (p, n); a thread owns its tiles' states
    const float decay = expf(end);
    for (int tile = warp; tile < int(P / 16) * int(N / 8); tile += kChunkWarps) {
      const int tm = tile / int(N / 8) * 16, tn = tile % int(N / 8) * 8;
      float d[4] = {};
      for (int k0 = 0; k0 < kChunk; k0 += 16) {
        uint32_t fb[2];
        frag_b(fb, lane, [&](int k, int j) { return hf(sm.B[(k0 + k) * N + tn + j]); }, false);
        for (int lo = 0; lo < 2; ++lo) {
          uint32_t fa[4];
          frag_a(fa, lane, [&](int r, int k) {
            return W[(tm + r) * kChunk + k0 + k] * sm.up_m[tm + r]; }, lo);
          th.mma_f16(d, fa, fb);
        }
      }
      for (int q = 0; q < 4; ++q) {
        const int p = tm + g + 8 * (q / 2), n = tn + 2 * c + q % 2;
        float& s = sm.S[p * N + n];
        s = decay * s + d[q] / sm.up_m[p] * a.sc.u.at(d0 + p) * ch.sB;
      }
    }
  }
  th.sync();
  for (int64_t k = i; k < P * N; k += kChunkThreads)
    a.state_out[(b * a.dim + d0) * N + k] = from_f<S>(sm.S[k]);
}

template <class T, class Y, class S>
__global__ void __launch_bounds__(kChunkThreads) chunk_kernel(ScanArgs<T, Y, true, S> a) {
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

template <class T, class Y, class S>
int ssd_launch(const ScanArgs<T, Y, true, S>& a, void* stream) {
  return ssd_dispatch(
      a,
      [&]() -> int {
        const int bytes = int(sizeof(ChunkSmem));  // above the 48 KB default: opted in
        if (cudaFuncSetAttribute(chunk_kernel<T, Y, S>,
                                 cudaFuncAttributeMaxDynamicSharedMemorySize,
                                 bytes) != cudaSuccess) {
          cudaGetLastError();  // not left to the next launch's status
          return EDGEQ_CUDA_ERROR;
        }
        chunk_kernel<<<dim3(unsigned(a.heads), unsigned(a.batch)), kChunkThreads, bytes,
                       static_cast<cudaStream_t>(stream)>>>(a);
        return launch_status();
      },
      [&] { return scan_launch(a, stream); });
}

}  // namespace edgeq_cuda
