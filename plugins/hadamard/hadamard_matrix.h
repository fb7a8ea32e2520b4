// The Hadamard matrices of docs/ops.md (EdgeqHadamardInt8): n = K * M, M a power of two,
// K in {1, 12, 20, 28}; H_K by Paley construction I (q = 11, 19) or II (q = 13).
#pragma once
#include <cstdint>
#include <vector>

namespace edgeq {

// (K, M) for n, or K = 0 when n is not a supported size
inline void hadamard_split(int64_t n, int64_t& K, int64_t& M) {
  for (int64_t k : {1, 12, 20, 28}) {
    const int64_t m = n / k;
    if (n % k == 0 && m > 0 && (m & (m - 1)) == 0) {
      K = k;
      M = m;
      return;
    }
  }
  K = M = 0;
}

// H_K as K*K entries of +-1, row-major
inline std::vector<int8_t> hadamard_base(int64_t K) {
  if (K == 1) return {1};
  const int64_t q = K == 12 ? 11 : K == 20 ? 19 : 13;
  std::vector<int> chi(q, -1);  // Legendre symbol
  chi[0] = 0;
  for (int64_t i = 1; i < q; ++i) chi[(i * i) % q] = 1;
  auto Q = [&](int64_t i, int64_t j) { return chi[((j - i) % q + q) % q]; };
  const int64_t n = q + 1;  // the core matrix: row/column 0 is the border
  std::vector<int8_t> H(K * K);
  if (K != 28) {  // Paley I: H = I + [[0, 1], [-1, Q]]
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < n; ++j) {
        int v = i == 0 ? (j == 0 ? 0 : 1) : (j == 0 ? -1 : Q(i - 1, j - 1));
        H[i * K + j] = int8_t(v + (i == j));
      }
    return H;
  }
  // Paley II: C = [[0, 1], [1, Q]]; 0 -> [[1,-1],[-1,-1]], +-1 -> +-[[1,1],[1,-1]]
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) {
      const int c = (i == 0 || j == 0) ? (i == j ? 0 : 1) : Q(i - 1, j - 1);
      const int blk[4] = {c == 0 ? 1 : c, c == 0 ? -1 : c, c == 0 ? -1 : c, c == 0 ? -1 : -c};
      for (int a = 0; a < 2; ++a)
        for (int b = 0; b < 2; ++b) H[(2 * i + a) * K + 2 * j + b] = int8_t(blk[a * 2 + b]);
    }
  return H;
}

}  // namespace edgeq
