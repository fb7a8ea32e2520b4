// Runs the CUDA kernels' per-thread, per-lane and per-row code (scan_channel, split_thread and
// parts_thread, which EdgeqSSDScan shares, its chunk_block, conv_channel, w4a8_lane, w4a8_tile,
// hadamard_part, the add + RMSNorm rows and parts, embedding_w4_pair) on the CPU behind the C ABI with host pointers (symbols
// emu_edgeq_*): one "thread", lane or row after another, except the kernels written against a
// Thread (the scans' split-state, time-parallel and chunked kernels, the tiled W4A8 linear),
// whose threads cooperate through shared memory, barriers and warp collectives (shuffles, mma):
// they run as real threads. CI has nvcc but no GPU: this checks the kernels' indexing, window,
// state, unpacking, tiling, scan, butterfly and quantization code against edgeq.ops.reference.
// GPU-only parts (launch geometry, memory, the row kernels' barriers and reductions, the dp4a,
// byte_perm, shuffle and mma instructions) are left to the GPU (tests/test_backend_ops_gpu.py).
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "../../plugins/add_rmsnorm/add_rmsnorm_cuda.cu"
#include "../../plugins/causal_conv1d/causal_conv1d_cuda.cu"
#include "../../plugins/embedding_w4/embedding_w4_cuda.cu"
#include "../../plugins/hadamard/hadamard_cuda.cu"
#include "../../plugins/linear_w4a8/linear_w4a8_cuda.cu"
#include "../../plugins/selective_scan/selective_scan_cuda.cu"
#include "../../plugins/ssd_scan/ssd_scan_cuda.cu"

using namespace edgeq_cuda;
using H = __half;

// C++17 has no std::barrier.
class Barrier {
 public:
  explicit Barrier(int count) : count_(count) {}
  void wait() {
    std::unique_lock<std::mutex> lock(mutex_);
    const uint64_t generation = generation_;
    if (++waiting_ == count_) {
      waiting_ = 0;
      ++generation_;
      done_.notify_all();
    } else {
      done_.wait(lock, [&] { return generation != generation_; });
    }
  }

 private:
  std::mutex mutex_;
  std::condition_variable done_;
  const int count_;
  int waiting_ = 0;
  uint64_t generation_ = 0;
};

// A block of the kernels written against a Thread (edgeq_cuda.cuh) on the CPU: its threads
// are real threads, sync() is a barrier of all of them, and a warp's collective is a barrier of
// its 32 around a table where they put their operands.
class HostThreads {
 public:
  explicit HostThreads(int count) : count_(count), block_(count), warps_(count / 32) {}

  // body(thread) on each of the block's threads; a body runs the blocks of a grid in order
  template <class F> void run(F body);

  struct Warp {
    Barrier barrier{32};
    uint32_t a[32][4], b[32][2];
    float v[32];
  };

 private:
  friend struct HostThread;
  const int count_;
  Barrier block_;
  std::vector<Warp> warps_;
};

// GpuThread's members on the CPU; the mma instructions through warp_mma.
struct HostThread {
  HostThreads* threads;
  int t;

  int index() const { return t; }
  void sync() const { threads->block_.wait(); }
  float shfl(float v, int src_lane) const {
    HostThreads::Warp& w = warp();
    w.v[t % 32] = v;
    w.barrier.wait();
    const float r = w.v[src_lane];
    w.barrier.wait();
    return r;
  }
  float shfl_xor(float v, int lane_mask) const { return shfl(v, (t % 32) ^ lane_mask); }
  void mma(int32_t (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) const {
    warp_mma<4>(d, a, b, [](uint32_t word, int e) { return int32_t(int8_t(word >> (8 * e))); });
  }
  void mma_f16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) const {
    warp_mma<2>(d, a, b, [](uint32_t word, int e) {  // products exact in fp32
      const uint16_t bits = uint16_t(word >> (16 * e));
      __half h;
      std::memcpy(&h, &bits, sizeof h);
      return __half2float(h);
    });
  }

 private:
  // d += A (16 x K) B (K x 8), K = 8 E for E elements per word: each of the warp's threads
  // computes its own four sums, in k order, from the whole A and B read back from the table by
  // the PTX ISA's layout (A[i][k]: element k % E of word (i >= 8) + 2 (k >= K / 2) of lane
  // 4 (i % 8) + (k % (K / 2)) / E; B[k][j]: element k % E of word (k >= K / 2) of lane
  // 4 j + (k % (K / 2)) / E); the second barrier keeps the table until all have read.
  template <int E, class D, class F>
  void warp_mma(D (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2], F element) const {
    constexpr int K = 8 * E, H = K / 2;
    HostThreads::Warp& w = warp();
    const int lane = t % 32;
    std::memcpy(w.a[lane], a, sizeof a);
    std::memcpy(w.b[lane], b, sizeof b);
    w.barrier.wait();
    for (int q = 0; q < 4; ++q) {
      const int i = lane / 4 + q / 2 * 8, j = lane % 4 * 2 + q % 2;
      for (int k = 0; k < K; ++k)
        d[q] += element(w.a[4 * (i % 8) + k % H / E][(i >= 8) + 2 * (k >= H)], k % E) *
                element(w.b[4 * j + k % H / E][k >= H], k % E);
    }
    w.barrier.wait();
  }
  HostThreads::Warp& warp() const { return threads->warps_[t / 32]; }
};

template <class F> void HostThreads::run(F body) {
  std::vector<std::thread> threads;
  for (int t = 0; t < count_; ++t) threads.emplace_back([this, body, t] { body(HostThread{this, t}); });
  for (std::thread& th : threads) th.join();
}

// The Orin Nano's SMs, as the row kernels' splits see them; parts_kernel's wave on it: 8 SMs x
// 4 blocks (128 registers) x kPartThreads
constexpr int kOrinNanoSMs = 8;
constexpr int64_t kOrinNanoPartThreads = kOrinNanoSMs * 4 * kPartThreads;

// The scans' grids, block after block, as scan_launch chooses them (scan_dispatch); the
// time-parallel kernel's carried states in a block's shared memory.
template <class T, class Y, bool PH, class S>
static int scan_emu(const ScanArgs<T, Y, PH, S>& a) {
  return scan_dispatch(
      a, [] { return kOrinNanoPartThreads; },
      [&](auto j, int tpc) {
        HostThreads(kStepThreads).run([&](HostThread th) {
          for (int64_t b = 0; b < a.batch; ++b)
            for (int64_t i0 = 0; i0 < a.dim * tpc; i0 += kStepThreads)
              split_thread<decltype(j)::value>(a, b, i0 + th.index(), tpc, th);
        });
      },
      [&](int P) {
        std::vector<float> carry(kPartsMaxState * kPartThreads);
        HostThreads(kPartThreads).run([&](HostThread th) {
          for (int64_t b = 0; b < a.batch; ++b)
            for (int64_t i0 = 0; i0 < a.dim * P; i0 += kPartThreads)
              parts_thread(a, b, i0 + th.index(), P, carry.data() + th.index(), th);
        });
      },
      [&](auto n) {
        for (int64_t b = 0; b < a.batch; ++b)
          for (int64_t d = 0; d < a.dim; ++d) scan_channel<T, Y, decltype(n)::value>(a, b, d);
      });
}

// The SSD scans: the chunked kernel's grid block after block (its shared memory one struct),
// or the scans' kernels.
template <class T, class Y, class S>
static int ssd_emu(const ScanArgs<T, Y, true, S>& a) {
  return ssd_dispatch(
      a,
      [&]() -> int {
        std::vector<ChunkSmem> smem(1);
        HostThreads(kChunkThreads).run([&](HostThread th) {
          for (int64_t b = 0; b < a.batch; ++b)
            for (int64_t h = 0; h < a.heads; ++h) chunk_block(a, b, h, smem[0], th);
        });
        return EDGEQ_OK;
      },
      [&] { return scan_emu(a); });
}

template <class T, class Bias>
static int conv_emu(const ConvArgs<T, Bias>& a) {
  if (int rc = conv_check(a)) return rc;
  with_wmax(a.width, [&](auto w) {
    for (int64_t b = 0; b < a.batch; ++b)
      for (int64_t c = 0; c < a.channels; ++c) conv_channel<T, Bias, decltype(w)::value>(a, b, c);
  });
  return EDGEQ_OK;
}

// A block of one thread: it does every element of each step, so there is nothing to wait for
// and its own partial sum is the block's. (__host__ __device__ like the row code that calls it;
// it only runs on the host.)
struct HostBlock {
  template <class F> EDGEQ_CUDA_HD void each(int64_t count, F f) const {
    for (int64_t i = 0; i < count; ++i) f(i);
  }
  EDGEQ_CUDA_HD void sync() const {}
  EDGEQ_CUDA_HD float sum(float v) const { return v; }
};

#define EMU extern "C" EDGEQ_API int

EMU emu_edgeq_selective_scan_f32(const float* u, const float* delta, const float* A, const float* B,
                                 const float* C, const float* D, const float* delta_bias,
                                 const float* state, const float* z, float* y, float* state_out,
                                 int64_t batch, int64_t L, int64_t dim, int64_t heads,
                                 int64_t groups, int64_t dstate, int32_t delta_softplus, void*) {
  return scan_emu(ScanArgs<float>{u, delta, A, B, C, D, delta_bias, state, z, y, state_out, batch,
                                  L, dim, heads, groups, dstate, delta_softplus});
}

EMU emu_edgeq_selective_scan_f16(const H* u, const H* delta, const float* A, const H* B,
                                 const H* C, const float* D, const float* delta_bias,
                                 const float* state, const H* z, H* y, float* state_out,
                                 int64_t batch, int64_t L, int64_t dim, int64_t heads,
                                 int64_t groups, int64_t dstate, int32_t delta_softplus, void*) {
  return scan_emu(ScanArgs<H>{u, delta, A, B, C, D, delta_bias, state, z, y, state_out, batch, L,
                              dim, heads, groups, dstate, delta_softplus});
}

EMU emu_edgeq_selective_scan_int8(const int8_t* u, const int8_t* delta, const float* A,
                                  const int8_t* B, const int8_t* C, const float* D,
                                  const float* delta_bias, const float* state, const int8_t* z,
                                  float* y, float* state_out, int64_t batch, int64_t L,
                                  int64_t dim, int64_t heads, int64_t groups, int64_t dstate,
                                  float u_scale, float delta_scale, float B_scale, float C_scale,
                                  float z_scale, int32_t delta_softplus, void*) {
  return scan_emu(ScanArgs<int8_t, float>{u, delta, A, B, C, D, delta_bias, state, z, y,
                                          state_out, batch, L, dim, heads, groups, dstate,
                                          delta_softplus,
                                          {u_scale, delta_scale, B_scale, C_scale, z_scale}});
}

EMU emu_edgeq_ssd_scan_f32(const float* x, const float* dt, const float* A, const float* B,
                           const float* C, const float* D, const float* dt_bias,
                           const float* state, float* y, float* state_out, int64_t batch,
                           int64_t L, int64_t dim, int64_t heads, int64_t groups, int64_t dstate,
                           int32_t dt_softplus, int32_t, void*) {
  return scan_emu(ScanArgs<float, float, true>{x, dt, A, B, C, D, dt_bias, state, nullptr, y,
                                               state_out, batch, L, dim, heads, groups, dstate,
                                               dt_softplus});
}

EMU emu_edgeq_ssd_scan_f16(const H* x, const H* dt, const float* A, const H* B, const H* C,
                           const float* D, const float* dt_bias, const float* state, H* y,
                           float* state_out, int64_t batch, int64_t L, int64_t dim,
                           int64_t heads, int64_t groups, int64_t dstate, int32_t dt_softplus,
                           int32_t, void*) {
  return ssd_emu(ScanArgs<H, H, true>{x, dt, A, B, C, D, dt_bias, state, nullptr, y, state_out,
                                       batch, L, dim, heads, groups, dstate, dt_softplus});
}

EMU emu_edgeq_ssd_scan_int8(const int8_t* x, const int8_t* dt, const float* A, const int8_t* B,
                            const int8_t* C, const float* D, const float* dt_bias,
                            const H* state, float* y, H* state_out, int64_t batch, int64_t L,
                            int64_t dim, int64_t heads, int64_t groups, int64_t dstate,
                            edgeq_scales x_scale, edgeq_scales dt_scale, edgeq_scales B_scale,
                            edgeq_scales C_scale, int32_t dt_softplus, int32_t, void*) {
  return ssd_emu(ScanArgs<int8_t, float, true, H>{x, dt, A, B, C, D, dt_bias, state, nullptr, y,
                                                   state_out, batch, L, dim, heads, groups,
                                                   dstate, dt_softplus,
                                                   {x_scale, dt_scale, B_scale, C_scale, {}}});
}

EMU emu_edgeq_causal_conv1d_f32(const float* x, const float* weight, const float* bias,
                                const float* state, float* y, float* state_out, int64_t batch,
                                int64_t L, int64_t channels, int64_t width, int32_t activation,
                                void*) {
  return conv_emu(ConvArgs<float>{x, weight, bias, state, y, state_out, batch, L, channels, width,
                                  activation});
}

EMU emu_edgeq_causal_conv1d_f16(const H* x, const H* weight, const H* bias, const H* state, H* y,
                                H* state_out, int64_t batch, int64_t L, int64_t channels,
                                int64_t width, int32_t activation, void*) {
  return conv_emu(ConvArgs<H>{x, weight, bias, state, y, state_out, batch, L, channels, width,
                              activation});
}

EMU emu_edgeq_causal_conv1d_int8(const int8_t* x, const int8_t* weight, const float* bias,
                                 const int8_t* state, int8_t* y, int8_t* state_out, int64_t batch,
                                 int64_t L, int64_t channels, int64_t width, edgeq_scales x_scale,
                                 edgeq_scales weight_scale, edgeq_scales y_scale,
                                 int32_t activation, void*) {
  return conv_emu(ConvArgs<int8_t, float>{x, weight, bias, state, y, state_out, batch, L,
                                          channels, width, activation, x_scale, weight_scale,
                                          y_scale});
}

EMU emu_edgeq_hadamard_int8(const float* x, int8_t* y, int64_t rows, int64_t n, float y_scale,
                            void*) {
  HadamardArgs a{x, y, rows, n, y_scale};
  if (int rc = hadamard_setup(a)) return rc;
  const Geometry g = hadamard_geometry(a, kOrinNanoSMs);
  std::vector<float> v(g.smem / sizeof(float));  // a block's shared memory
  with_parts(g.y, [&](auto s) {
    for (int64_t r = 0; r < g.x; ++r)
      for (int64_t b = 0; b < g.y; ++b) hadamard_part<decltype(s)::value>(a, r, b, v.data(), HostBlock{});
  });
  return EDGEQ_OK;
}

EMU emu_edgeq_add_rmsnorm_int8(const float* x, const float* residual, const float* weight,
                               int8_t* y, float* residual_out, int64_t rows, int64_t d, float eps,
                               float y_scale, void*) {
  const RmsNormArgs a{x, residual, weight, y, residual_out, rows, d, eps, y_scale};
  if (int rc = rmsnorm_check(a)) return rc;
  rmsnorm_launches(a, kOrinNanoSMs, [&](NormKernel k, const Geometry& g) {
    for (int64_t r = 0; r < g.x; ++r)
      for (int64_t p = 0; p < g.y; ++p)
        if (k == kFused) add_rmsnorm_row(a, r, HostBlock{});
        else if (k == kAddPart) add_row_part(a, r, p, g.y, HostBlock{});
        else norm_row_part(a, r, p, g.y, HostBlock{});
  });
  return EDGEQ_OK;
}

// The tiled W4A8 kernel's grid, block after block.
static void w4a8_tiled_emu(const W4A8Args& a) {
  W4A8Smem sm;
  HostThreads(kTileThreads).run([&](HostThread th) {
    for (int64_t m0 = 0; m0 < a.rows; m0 += kTileM)
      for (int64_t n0 = 0; n0 < a.N; n0 += kTileN) w4a8_tile(a, m0, n0, sm, th);
  });
}

// The GEMV: the 32 lanes of a warp one after another, their partial sums added in lane order.
EMU emu_edgeq_linear_w4a8(const int8_t* x, const uint8_t* weight, const float* weight_scale,
                          float* y, int64_t rows, int64_t K, int64_t N, float x_scale,
                          int64_t group_size, void*) {
  const W4A8Args a{x, weight, weight_scale, y, rows, K, N, group_size, x_scale};
  return w4a8_dispatch(a, [&] { w4a8_tiled_emu(a); }, [&](auto chunk, auto tokens) {
    constexpr int T = decltype(tokens)::value;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t m0 = 0; m0 < rows; m0 += T) {
        float sum[T] = {};
        for (int lane = 0; lane < 32; ++lane) {
          float acc[T] = {};
          w4a8_lane<decltype(chunk), T>(a, n, m0, lane, acc);
          for (int t = 0; t < T; ++t) sum[t] += acc[t];
        }
        for (int t = 0; t < T; ++t) w4a8_store(a, m0 + t, n, sum[t]);
      }
  });
}

// The launches an op makes for a shape on a GPU of `sms` SMs, from the functions its launcher
// uses (the *_geometry and dispatch functions; the time-parallel scan's wave taken as 4 blocks
// per SM, its __launch_bounds__): one line "kernel grid_x grid_y block smem" each, into out.
// dims: add_rmsnorm rows, d; hadamard rows, n; causal_conv1d batch, L, channels, width;
// selective_scan (int8) batch, L, dim, dstate; ssd_scan (int8) batch, L, dim, heads, groups,
// dstate; linear_w4a8 rows, K, N, group_size. For tools/launch_table.py.
EMU emu_edgeq_launches(const char* op, const int64_t* d, int32_t sms, char* out, int64_t cap) {
  alignas(16) static float none[4];  // never read: the dispatch looks at shapes and alignment
  const auto p = [](auto* q) { return reinterpret_cast<decltype(q)>(none); };
  const int8_t* i8 = p((const int8_t*)nullptr);
  int8_t* o8 = p((int8_t*)nullptr);
  float* f = none;
  const edgeq_scales one{none, 1};
  std::string text;
  const auto line = [&](std::string kernel, const Geometry& g) {
    text += kernel + " " + std::to_string(g.x) + " " + std::to_string(g.y) + " " +
            std::to_string(g.block) + " " + std::to_string(g.smem) + "\n";
  };
  const std::string name = op;
  int rc = EDGEQ_OK;
  if (name == "add_rmsnorm") {
    const RmsNormArgs a{f, f, f, o8, f, d[0], d[1], 1e-5f, 1.f};
    rc = rmsnorm_check(a);
    if (!rc) rmsnorm_launches(a, sms, [&](NormKernel k, const Geometry& g) { line(kNormKernelNames[k], g); });
  } else if (name == "hadamard") {
    HadamardArgs a{f, o8, d[0], d[1], 1.f};
    rc = hadamard_setup(a);
    if (!rc) line("hadamard_kernel<S=" + std::to_string(hadamard_geometry(a, sms).y) + ">", hadamard_geometry(a, sms));
  } else if (name == "causal_conv1d") {
    const ConvArgs<int8_t, float> a{i8, i8, f, i8, o8, o8, d[0], d[1], d[2], d[3], 1, one, one, one};
    rc = conv_check(a);
    if (!rc) line("conv_kernel", conv_geometry(a));
  } else if (name == "selective_scan" || name == "ssd_scan") {
    const bool ssd = name == "ssd_scan";
    const int64_t dim = d[2], heads = ssd ? d[3] : dim, groups = ssd ? d[4] : 1, N = ssd ? d[5] : d[3];
    const auto scans = [&](const auto& a) {
      return scan_dispatch(
          a, [&] { return int64_t(sms) * 4 * kPartThreads; },
          [&](auto j, int tpc) {
            line("split_kernel<J=" + std::to_string(decltype(j)::value) + ">(tpc " + std::to_string(tpc) + ")",
                 split_geometry(a, tpc));
          },
          [&](int P) { line("parts_kernel(P " + std::to_string(P) + ")", parts_geometry(a, P)); },
          [&](auto n) { line("scan_kernel<NMAX=" + std::to_string(decltype(n)::value) + ">", scan_geometry(a)); });
    };
    if (ssd) {
      const H* h = p((const H*)nullptr);
      const ScanArgs<int8_t, float, true, H> a{i8, i8, f, i8, i8, f, f, h, nullptr, f, p((H*)nullptr),
                                               d[0], d[1], dim, heads, groups, N, 1,
                                               {one, one, one, one, {}}};
      rc = ssd_dispatch(a, [&] { line("chunk_kernel", chunk_geometry(a)); return EDGEQ_OK; },
                        [&] { return scans(a); });
    } else {
      const ScanArgs<int8_t, float> a{i8, i8, f, i8, i8, f, f, f, i8, f, f, d[0], d[1], dim, heads,
                                      groups, N, 1, {1.f, 1.f, 1.f, 1.f, 1.f}};
      rc = scans(a);
    }
  } else if (name == "linear_w4a8") {
    const W4A8Args a{i8, p((const uint8_t*)nullptr), f, f, d[0], d[1], d[2], d[3], 1.f};
    rc = w4a8_dispatch(a, [&] { line("w4a8_tiled_kernel", w4a8_tiled_geometry(a)); },
                       [&](auto, auto tokens) {
                         constexpr int T = decltype(tokens)::value;
                         line("w4a8_kernel<T=" + std::to_string(T) + ">", w4a8_gemv_geometry(a, T));
                       });
  } else {
    rc = EDGEQ_BAD_SHAPE;
  }
  if (rc) return rc;
  if (int64_t(text.size()) >= cap) return EDGEQ_BAD_SHAPE;
  std::memcpy(out, text.c_str(), text.size() + 1);
  return EDGEQ_OK;
}

// One "thread" per packed output byte, in order.
EMU emu_edgeq_embedding_w4(const int64_t* ids, const uint8_t* table, const edgeq_half* table_scale,
                           float* y, int64_t rows, int64_t vocab, int64_t d, int64_t group_size,
                           void*) {
  const EmbeddingW4Args a{ids, table, reinterpret_cast<const H*>(table_scale), y, rows, vocab, d,
                          group_size};
  if (int rc = embedding_w4_check(a)) return rc;
  for (int64_t i = 0; i < rows * (d / 2); ++i) embedding_w4_pair(a, i);
  return EDGEQ_OK;
}
