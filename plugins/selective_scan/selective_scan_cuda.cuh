// The scan kernel templates of EdgeqSelectiveScan, EdgeqSelectiveScanInt8 (dequantizing on
// load), EdgeqSSDScan (one A and one D per head) and EdgeqSSDScanInt8; the entry points are
// selective_scan_cuda.cu and ../ssd_scan/ssd_scan_cuda.cu. scan_kernel: one thread per (batch,
// channel); the threads of a block take consecutive channels, so with token-major [batch, L,
// dim] tensors every read of u, delta, z and write of y at a time step is coalesced, and B/C rows
// (shared by a group) are broadcasts. A channel's state stays in registers for the whole
// sequence: it is read once and written once, and a thread only touches its own state row,
// which is why state_out may alias state. split_kernel (decode, and prompts with dstate >= 32)
// splits each state row over several threads instead, and parts_kernel (prompts that leave the
// GPU idle) each sequence (below). EdgeqSSDScanInt8's fp16 state is widened on that read and
// rounded on that write.
#pragma once
#include <cstdlib>
#include <type_traits>

#include "edgeq_cuda.cuh"

namespace edgeq_cuda {

constexpr int64_t kMaxState = 256;

EDGEQ_CUDA_HD float softplus20(float x) { return x > 20.f ? x : log1pf(expf(x)); }

// int8 inputs only: per tensor (EdgeqSelectiveScanInt8), or u per channel, delta per head, B and
// C per group (EdgeqSSDScanInt8's arrays)
struct ScanScales {
  Scale u, delta, B, C, z;
};

// One channel's constants, which a kernel reads once: its index d, head h and group g, D_scan[d],
// its head's time-step bias, and the int8 scales of its inputs.
struct ScanChannel {
  int64_t d, h, g;
  float D, bias, su, sdelta, sB, sC, sz;
};

// Thread i of a grid row of the kernels that cut a channel over `parts` threads: part i % parts
// of channel i / parts, whose state row starts at srow. Threads past the last channel are not
// active: they work on the last channel's inputs (their warp's shuffles need them) and write
// nothing.
struct ScanPart {
  bool active;
  int part;
  ScanChannel ch;
  int64_t srow;
};

// T: input activations (float, __half or int8_t), Y: y (T, or float for int8); A, D and
// delta_bias are fp32. PerHead: EdgeqSSDScan's A [heads] and D [heads] (docs/ops.md:
// A_scan[h, n] = A[h], D_scan[d] = D[d / P]) instead of the selective scan's A [heads, dstate]
// and D [dim]. S: the state, fp32, or fp16 (EdgeqSSDScanInt8's cache).
template <class T, class Y = T, bool PerHead = false, class S = float>
struct ScanArgs {
  const T *u, *delta;
  const float* A;
  const T *B, *C;
  const float *D, *delta_bias;
  const S* state;  // may alias state_out
  const T* z;
  Y* y;
  S* state_out;
  int64_t batch, L, dim, heads, groups, dstate;
  int32_t delta_softplus;
  ScanScales sc = {};

  // A_scan[h, n] and D_scan[d] of channel d in head h
  EDGEQ_CUDA_HD float A_at(int64_t h, int64_t n) const {
    return PerHead ? A[h] : A[h * dstate + n];
  }
  EDGEQ_CUDA_HD float D_at(int64_t h, int64_t d) const { return PerHead ? D[h] : D[d]; }

  EDGEQ_CUDA_HD ScanChannel channel(int64_t d) const {
    const int64_t h = d / (dim / heads), g = h / (heads / groups);
    return {d,          h,           g,           D_at(h, d), delta_bias[h], sc.u.at(d),
            sc.delta.at(h), sc.B.at(g), sc.C.at(g), sc.z.at(d)};
  }
  EDGEQ_CUDA_HD ScanPart part_of(int64_t b, int64_t i, int parts) const {
    const bool active = i / parts < dim;
    const int64_t c = active ? i / parts : dim - 1;
    return {active, int(i % parts), channel(c), (b * dim + c) * dstate};
  }

  // The per-token math the kernels share, for channel c at token row: its time step (bias,
  // softplus), its input, the rows of B and C, and y from its sum over the states (skip, gate).
  EDGEQ_CUDA_HD float dt_at(int64_t row, const ScanChannel& c) const {
    const float dt = to_f(delta[row * heads + c.h], c.sdelta) + c.bias;
    return delta_softplus ? softplus20(dt) : dt;
  }
  EDGEQ_CUDA_HD float u_at(int64_t row, const ScanChannel& c) const {
    return to_f(u[row * dim + c.d], c.su);
  }
  EDGEQ_CUDA_HD int64_t bc_at(int64_t row, const ScanChannel& c) const {
    return (row * groups + c.g) * dstate;
  }
  EDGEQ_CUDA_HD void write_y(int64_t row, const ScanChannel& c, float acc, float ud) const {
    float out = acc + c.D * ud;
    if (z) out *= silu(to_f(z[row * dim + c.d], c.sz));
    y[row * dim + c.d] = from_f<Y>(out);
  }
};

// One state's step: decayed by dA, plus the token's input dt * B[n] * u.
EDGEQ_CUDA_HD float scan_state(float s, float dA, float dt, float Bn, float ud) {
  return dA * s + dt * Bn * ud;
}

// One thread: channel d of sequence b. NMAX >= dstate sizes the register arrays; the guarded,
// fully unrolled loops index them statically, so they stay in registers for any dstate <= NMAX.
template <class T, class Y, int NMAX, bool PH, class S>
EDGEQ_CUDA_HD void scan_channel(const ScanArgs<T, Y, PH, S>& a, int64_t b, int64_t d) {
  const int64_t N = a.dstate;
  const ScanChannel ch = a.channel(d);
  const S* st = a.state + (b * a.dim + d) * N;
  float s[NMAX], Ah[NMAX];
#pragma unroll
  for (int n = 0; n < NMAX; ++n) {
    s[n] = n < N ? to_f(st[n]) : 0.f;
    Ah[n] = n < N ? a.A_at(ch.h, n) : 0.f;
  }
  for (int64_t t = 0, row = b * a.L; t < a.L; ++t, ++row) {
    const float dt = a.dt_at(row, ch), ud = a.u_at(row, ch);
    const T* Bt = a.B + a.bc_at(row, ch);
    const T* Ct = a.C + a.bc_at(row, ch);
    const float decay = PH ? expf(dt * Ah[0]) : 0.f;  // one per head: one expf, not N
    float acc = 0.f;
#pragma unroll
    for (int n = 0; n < NMAX; ++n) {
      if (n < N) {
        s[n] = scan_state(s[n], PH ? decay : expf(dt * Ah[n]), dt, to_f(Bt[n], ch.sB), ud);
        acc += s[n] * to_f(Ct[n], ch.sC);
      }
    }
    a.write_y(row, ch, acc, ud);
  }
  S* so = a.state_out + (b * a.dim + d) * N;
#pragma unroll
  for (int n = 0; n < NMAX; ++n)
    if (n < N) so[n] = from_f<S>(s[n]);
}

template <class T, class Y, int NMAX, bool PH, class S>
__global__ void __launch_bounds__(kThreads) scan_kernel(ScanArgs<T, Y, PH, S> a) {
  const int64_t d = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (d < a.dim) scan_channel<T, Y, NMAX>(a, blockIdx.y, d);
}

// Decode, and prompts with dstate >= 32 (Mamba-2's 64-128, which one thread per channel holds
// in ~250 registers): a channel's state row split over tpc consecutive threads, J 16-byte
// vectors of kStepV<S> states each (vector j of part p is vector p + j tpc of the row), so a
// warp reads and writes runs of tpc x 16 bytes of the state (decode: 512 bytes; scan_channel's
// threads read their own rows, which lie a row apart). The states stay in registers for all L
// tokens; per token, each thread updates its states and sums their C-weighted values, and the
// channel's tpc partial sums meet by shuffles (a tolerance against the reference's in-order
// sum). Thread i of the grid row is part i % tpc of channel i / tpc; in a warp that straddles
// the last channel, the threads past it shuffle on zeros and the last channel's inputs and
// write nothing. A thread reads and writes only its own vectors, so state_out may alias state.
template <class S> constexpr int kStepV = 16 / int(sizeof(S));
constexpr int kStepThreads = 128;

#pragma nv_exec_check_disable  // Thread decides where it runs (the emulator's is host-only)
template <int J, class T, class Y, bool PH, class S, class Thread>
EDGEQ_CUDA_HD void split_thread(const ScanArgs<T, Y, PH, S>& a, int64_t b, int64_t i, int tpc,
                                const Thread& th) {
  constexpr int V = kStepV<S>;
  const int64_t N = a.dstate;
  if ((i - i % 32) / tpc >= a.dim) return;  // the whole warp is past the last channel
  const auto [active, part, ch, srow] = a.part_of(b, i, tpc);
  float s[J][V], An[J][V];  // An: A[h, n] (PerHead: unused, A[h] is Ah)
  const float Ah = a.A_at(ch.h, 0);
#pragma unroll
  for (int j = 0; j < J; ++j) {
    S st[V] = {};
    if (active) {
      const uint4 raw = load_as<uint4>(a.state + srow + (part + int64_t(j) * tpc) * V);
      memcpy(st, &raw, sizeof raw);
    }
#pragma unroll
    for (int v = 0; v < V; ++v) {
      s[j][v] = to_f(st[v]);
      An[j][v] = PH ? 0.f : a.A_at(ch.h, (part + int64_t(j) * tpc) * V + v);
    }
  }
  for (int64_t t = 0, row = b * a.L; t < a.L; ++t, ++row) {
    const float dt = a.dt_at(row, ch), ud = a.u_at(row, ch);
    const float decay = PH ? expf(dt * Ah) : 0.f;  // one per head: one expf, not N
    const T* Bt = a.B + a.bc_at(row, ch);
    const T* Ct = a.C + a.bc_at(row, ch);
    float acc = 0.f;
#pragma unroll
    for (int j = 0; j < J; ++j) {
#pragma unroll
      for (int v = 0; v < V; ++v) {
        const int64_t n = (part + int64_t(j) * tpc) * V + v;
        s[j][v] = scan_state(s[j][v], PH ? decay : expf(dt * An[j][v]), dt, to_f(Bt[n], ch.sB),
                             ud);
        acc += s[j][v] * to_f(Ct[n], ch.sC);
      }
    }
    for (int o = tpc / 2; o > 0; o /= 2) acc += th.shfl_xor(acc, o);
    if (active && !part) a.write_y(row, ch, acc, ud);
  }
  if (!active) return;
#pragma unroll
  for (int j = 0; j < J; ++j) {
    S st[V];
#pragma unroll
    for (int v = 0; v < V; ++v) st[v] = from_f<S>(s[j][v]);
    uint4 out;
    memcpy(&out, st, sizeof out);
    store_as(a.state_out + srow + (part + int64_t(j) * tpc) * V, out);
  }
}

template <int J, class T, class Y, bool PH, class S>
__global__ void __launch_bounds__(kStepThreads) split_kernel(ScanArgs<T, Y, PH, S> a, int tpc) {
  split_thread<J>(a, blockIdx.y, int64_t(blockIdx.x) * kStepThreads + threadIdx.x, tpc,
                  GpuThread{});
}

// The most threads a prompt's channel is cut over, in time (parts_kernel) or in states
// (split_kernel): EDGEQ_SCAN_MAX_PARTS, default (or not a number) 32; 1 keeps prompts on the
// sequential kernel, for side-by-side benchmarks. Read at each launch: set it before launching
// from other threads.
inline int64_t max_prompt_parts() {
  const char* env = std::getenv("EDGEQ_SCAN_MAX_PARTS");
  char* end = nullptr;
  const long v = env ? std::strtol(env, &end, 10) : 0;
  return env && *env && !*end && v > 0 ? v : 32;
}

// The split kernel's threads per channel (tpc) and vectors per thread (J); tpc = 0 where it does
// not apply: dstate V times a power of two and 16-byte aligned states. Decode: one vector per
// thread, up to 32 threads (J = 2 for dstate 256 in fp32); prompts: 16 states per thread, from
// dstate 32 (below that a thread holds the whole row: the sequential or time-parallel kernels).
struct Split {
  int tpc, J;
};

template <class T, class Y, bool PH, class S>
Split split_shape(const ScanArgs<T, Y, PH, S>& a) {
  constexpr int V = kStepV<S>;
  const int64_t vectors = a.dstate / V;
  if (a.dstate % V || vectors & (vectors - 1) || !aligned16(a.state, a.state_out)) return {0, 0};
  const int64_t J = a.L == 1 ? (vectors > 32 ? vectors / 32 : 1) : 16 / V;
  if (a.L > 1 && (vectors <= J || vectors / J > max_prompt_parts())) return {0, 0};
  return {int(vectors / J), int(J)};
}

// Calls f(std::integral_constant<int, J>{}) for the split kernel's J: 1 or 2, or 4 (fp32
// states' prompts: 16 / kStepV<S>).
template <class S, class F>
void with_j(int J, F f) {
  if (J == 1) f(std::integral_constant<int, 1>{});
  else if (J == 2) f(std::integral_constant<int, 2>{});
  else if constexpr (kStepV<S> == 4) f(std::integral_constant<int, 4>{});
}

// Prompts that one thread per (batch, channel) leaves mostly idle (batch 1 of a small model:
// Mamba-130m's 1536 channels are 6 warps per SM of the Orin Nano's 8) take parts_kernel, which
// cuts each channel's sequence over P consecutive lanes of a warp (P a power of two, 2..32), in
// chunks of P x kItems tokens, kItems per lane: mamba_ssm's parallel scan. Per state, a lane
// composes its tokens' steps s -> dA s + dt B u into one map s -> m_a s + m_b (part 0 applies
// its map to the state carried into the chunk, so it becomes a constant), the lanes scan their
// maps by shuffles (Hillis-Steele), which leaves each lane the state after its tokens; a lane
// starts from the one before it and redoes its tokens from registers for y, and the last
// lane's state is carried into the next chunk. Part 0 keeps the carried states in shared memory
// and is the only lane that reads and writes the state row, so state_out may alias state.
// Products are reassociated: within fp32 rounding of the sequential scan, where the decays are
// at most 1 (softplus time steps, A <= 0 as Mamba's -exp(A_log)); a growing map could overflow
// where the sequential scan does not, so scan_parts requires delta_softplus. dstate <=
// kPartsMaxState (Mamba-1's 16) bounds the shared memory.
constexpr int kItems = 8;  // tokens per lane and chunk
constexpr int kPartThreads = 128;
constexpr int64_t kPartsMaxState = 16;

#pragma nv_exec_check_disable  // Thread decides where it runs (the emulator's is host-only)
template <class T, class Y, bool PH, class S, class Thread>
EDGEQ_CUDA_HD void parts_thread(const ScanArgs<T, Y, PH, S>& a, int64_t b, int64_t i, int P,
                                float* carry, const Thread& th) {
  const int64_t N = a.dstate;
  if ((i - i % 32) / P >= a.dim) return;  // the whole warp is past the last channel
  const auto [active, part, ch, srow] = a.part_of(b, i, P);
  const int lane = int(i % 32), last = lane - part + P - 1;
  if (!part)
    for (int n = 0; n < N; ++n) carry[n * kPartThreads] = active ? to_f(a.state[srow + n]) : 0.f;
  for (int64_t t0 = int64_t(part) * kItems; t0 - part * kItems < a.L; t0 += int64_t(P) * kItems) {
    float dt[kItems], ud[kItems], decay[kItems], acc[kItems];
#pragma unroll
    for (int k = 0; k < kItems; ++k) {  // past the end: dA = 1, dt = 0, the identity step
      const int64_t row = b * a.L + t0 + k;
      dt[k] = t0 + k < a.L ? a.dt_at(row, ch) : 0.f;
      ud[k] = t0 + k < a.L ? a.u_at(row, ch) : 0.f;
      decay[k] = PH && t0 + k < a.L ? expf(dt[k] * a.A_at(ch.h, 0)) : 1.f;  // one expf per head
      acc[k] = 0.f;
    }
#pragma unroll 1
    for (int n = 0; n < N; ++n) {
      const float An = a.A_at(ch.h, n);
      const int64_t at = a.bc_at(b * a.L + t0, ch) + n, step = a.groups * N;
      float dA[kItems], ma = 1.f, mb = 0.f;
#pragma unroll
      for (int k = 0; k < kItems; ++k) {
        dA[k] = PH || t0 + k >= a.L ? decay[k] : expf(dt[k] * An);
        mb = scan_state(mb, dA[k], dt[k], t0 + k < a.L ? to_f(a.B[at + k * step], ch.sB) : 0.f,
                        ud[k]);
        ma *= dA[k];
      }
      float in = 0.f;  // part 0's: the state entering the chunk
      if (!part) {  // part 0's map applied to it: a constant, so the scan below yields states
        in = carry[n * kPartThreads];
        mb = ma * in + mb;
        ma = 0.f;
      }
      for (int o = 1; o < P; o *= 2) {  // inclusive scan: the maps of this part and those before
        const int src = part >= o ? lane - o : lane;
        const float pa = th.shfl(ma, src), pb = th.shfl(mb, src);
        if (part >= o) {
          mb = ma * pb + mb;
          ma *= pa;
        }
      }
      float s = th.shfl(mb, part ? lane - 1 : lane);  // the state after the parts before
      const float end = th.shfl(mb, last);
      if (!part) {
        s = in;
        carry[n * kPartThreads] = end;
      }
#pragma unroll
      for (int k = 0; k < kItems; ++k) {
        if (t0 + k < a.L) {  // B again, from L1
          s = scan_state(s, dA[k], dt[k], to_f(a.B[at + k * step], ch.sB), ud[k]);
          acc[k] += s * to_f(a.C[at + k * step], ch.sC);
        }
      }
    }
#pragma unroll
    for (int k = 0; k < kItems; ++k)
      if (active && t0 + k < a.L) a.write_y(b * a.L + t0 + k, ch, acc[k], ud[k]);
  }
  if (active && !part)
    for (int n = 0; n < N; ++n) a.state_out[srow + n] = from_f<S>(carry[n * kPartThreads]);
}

template <class T, class Y, bool PH, class S>
__global__ void __launch_bounds__(kPartThreads, 4)  // 128 registers: 16 warps per SM
    parts_kernel(ScanArgs<T, Y, PH, S> a, int P) {
  __shared__ float carry[kPartsMaxState * kPartThreads];
  parts_thread(a, blockIdx.y, int64_t(blockIdx.x) * kPartThreads + threadIdx.x, P,
               carry + threadIdx.x, GpuThread{});
}

// parts_kernel's lanes per channel, or 1 for the sequential kernels: P doubles to 2P while batch
// x channels x 2P threads fit in one wave of parts_kernel (resident(): the blocks the GPU holds
// at once x kPartThreads, 0 if unknown) and 2P parts of kItems tokens fit in L, up to
// max_prompt_parts(); softplus time steps only (above).
template <class T, class Y, bool PH, class S, class F>
int scan_parts(const ScanArgs<T, Y, PH, S>& a, F resident) {
  if (!a.delta_softplus || a.dstate > kPartsMaxState || a.L < 2 * kItems) return 1;
  const int64_t cap = max_prompt_parts(), threads = resident();
  int P = 1;
  while (P < 32 && 2 * P <= cap && a.batch * a.dim * 2 * P <= threads && 2 * P * kItems <= a.L)
    P *= 2;
  return P;
}

template <class T, class Y, bool PH, class S>
int scan_check(const ScanArgs<T, Y, PH, S>& a) {
  constexpr bool int8 = std::is_same<T, int8_t>::value;
  if (!a.u || !a.delta || !a.A || !a.B || !a.C || !a.D || !a.delta_bias || !a.state || !a.y ||
      !a.state_out || (int8 && !PH && !a.z))  // EdgeqSelectiveScanInt8's gate is required
    return EDGEQ_NULL_POINTER;
  if (a.batch < 1 || a.L < 1 || a.dim < 1 || a.heads < 1 || a.groups < 1 || a.dstate < 1 ||
      a.dim % a.heads || a.heads % a.groups || a.dstate > kMaxState || a.batch > 65535)
    return EDGEQ_BAD_SHAPE;
  if (int8 && PH) {  // EdgeqSSDScanInt8's scales come as arrays
    const edgeq_scales scales[] = {a.sc.u.array, a.sc.delta.array, a.sc.B.array, a.sc.C.array};
    const int64_t counts[] = {a.dim, a.heads, a.groups, a.groups};
    for (int i = 0; i < 4; ++i)
      if (int rc = edgeq_scales_check(scales[i], counts[i])) return rc;
  }
  return EDGEQ_OK;
}

// Calls f(std::integral_constant<int, NMAX>{}) with the NMAX that serves dstate.
template <class F>
void with_nmax(int64_t dstate, F f) {
  if (dstate <= 16) f(std::integral_constant<int, 16>{});  // Mamba-1
  else if (dstate <= 64) f(std::integral_constant<int, 64>{});
  else if (dstate <= 128) f(std::integral_constant<int, 128>{});
  else f(std::integral_constant<int, 256>{});  // spills to local memory, still exact
}

// The scans' choice of kernel, shared by scan_launch and the CPU emulation: after scan_check,
// split(j, tpc) (j: std::integral_constant of J), parts(P) or sequential(nmax) (the same for
// NMAX) runs the kernel that applies; returns scan_check's status.
template <class T, class Y, bool PH, class S, class R, class FSplit, class FParts, class FSeq>
int scan_dispatch(const ScanArgs<T, Y, PH, S>& a, R resident, FSplit split, FParts parts,
                  FSeq sequential) {
  if (int rc = scan_check(a)) return rc;
  if (const Split sp = split_shape(a); sp.tpc)
    with_j<S>(sp.J, [&](auto j) { split(j, sp.tpc); });
  else if (const int P = scan_parts(a, resident); P > 1)
    parts(P);
  else
    with_nmax(a.dstate, sequential);
  return EDGEQ_OK;
}

// The three kernels' launches: tpc threads per channel, P lanes per channel, one thread
template <class A> Geometry split_geometry(const A& a, int tpc) {
  return threads_over(a.dim * tpc, kStepThreads, a.batch);
}
template <class A> Geometry parts_geometry(const A& a, int P) {
  return threads_over(a.dim * P, kPartThreads, a.batch);
}
template <class A> Geometry scan_geometry(const A& a) { return threads_over(a.dim, kThreads, a.batch); }

template <class T, class Y, bool PH, class S>
int scan_launch(const ScanArgs<T, Y, PH, S>& a, void* stream) {
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  const auto resident = [] {  // parts_kernel's threads in one wave; 0 (no parts) if unknown
    int device = 0, sms = 0, blocks = 0;
    if (cudaGetDevice(&device) != cudaSuccess ||
        cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device) != cudaSuccess ||
        cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, parts_kernel<T, Y, PH, S>,
                                                      kPartThreads, 0) != cudaSuccess) {
      cudaGetLastError();  // not this launch's error
      return int64_t(0);
    }
    return int64_t(sms) * blocks * kPartThreads;
  };
  const int rc = scan_dispatch(
      a, resident,
      [&](auto j, int tpc) {
        const Geometry g = split_geometry(a, tpc);
        split_kernel<decltype(j)::value><<<g.grid(), g.block, 0, s>>>(a, tpc);
      },
      [&](int P) {
        const Geometry g = parts_geometry(a, P);
        parts_kernel<<<g.grid(), g.block, 0, s>>>(a, P);
      },
      [&](auto n) {
        const Geometry g = scan_geometry(a);
        scan_kernel<T, Y, decltype(n)::value, PH, S><<<g.grid(), g.block, 0, s>>>(a);
      });
  return rc ? rc : launch_status();
}

}  // namespace edgeq_cuda
