"""Orthonormal Walsh-Hadamard transforms for every width Mamba uses: n = K * 2^m with
K in {1, 12, 20, 28} (40 * 2^m = 20 * 2^(m+1)). docs/ops.md (EdgeqHadamardInt8) fixes the
matrices, so every backend builds the same ones from the constructions below."""
from __future__ import annotations

import functools

import numpy as np
import torch

BASES = {12: ("paley1", 11), 20: ("paley1", 19), 28: ("paley2", 13)}


def _legendre(q: int) -> np.ndarray:
    chi = -np.ones(q, dtype=np.int64)
    chi[0] = 0
    chi[[(i * i) % q for i in range(1, q)]] = 1
    return chi


def _jacobsthal(q: int) -> np.ndarray:
    chi = _legendre(q)
    i = np.arange(q)
    return chi[(i[None, :] - i[:, None]) % q]  # Q[i, j] = chi(j - i)


@functools.cache
def base_matrix(K: int) -> np.ndarray:
    """The K x K +-1 Hadamard matrix: Paley I (q = 11, 19) or Paley II (q = 13)."""
    if K == 1:
        return np.ones((1, 1), dtype=np.int64)
    kind, q = BASES[K]
    Q = _jacobsthal(q)
    ones = np.ones((1, q), dtype=np.int64)
    if kind == "paley1":  # H = I + S, S = [[0, 1], [-1, Q]]
        S = np.block([[np.zeros((1, 1), np.int64), ones], [-ones.T, Q]])
        return np.eye(q + 1, dtype=np.int64) + S
    C = np.block([[np.zeros((1, 1), np.int64), ones], [ones.T, Q]])  # Paley II
    zero = np.array([[1, -1], [-1, -1]])
    one = np.array([[1, 1], [1, -1]])
    return np.block([[zero if c == 0 else c * one for c in row] for row in C])


def split(n: int) -> tuple[int, int]:
    """n -> (K, M) with n = K * M, M a power of two and K in {1, 12, 20, 28}."""
    for K in (1, 12, 20, 28):
        M = n // K
        if n % K == 0 and M > 0 and M & (M - 1) == 0:
            return K, M
    raise ValueError(f"no Hadamard transform of size {n}: edgeq supports K * 2^m with "
                     "K in 1, 12, 20, 28 (and 40 * 2^m)")


def supported(n: int) -> bool:
    try:
        split(n)
        return True
    except ValueError:
        return False


@functools.cache
def matrix(n: int) -> torch.Tensor:
    """The orthonormal n x n matrix H_K (x) H_M / sqrt(n), fp64."""
    K, M = split(n)
    sylvester = np.array([[(-1) ** bin(b & d).count("1") for d in range(M)] for b in range(M)])
    return torch.from_numpy(np.kron(base_matrix(K), sylvester) / np.sqrt(n))


def transform(x: torch.Tensor) -> torch.Tensor:
    """x @ H^T over the last axis, computed in fp32 as K x (fast Walsh-Hadamard of size M)."""
    n = x.shape[-1]
    K, M = split(n)
    y = x.float().reshape(*x.shape[:-1], K, M)
    h = 1
    while h < M:  # butterflies of the Sylvester transform
        y = y.reshape(*y.shape[:-1], M // (2 * h), 2, h)
        a, b = y[..., 0, :], y[..., 1, :]
        y = torch.stack([a + b, a - b], dim=-2).reshape(*x.shape[:-1], K, M)
        h *= 2
    if K > 1:  # sequential over k, as the kernels sum (bit-exact int8 outputs need one order)
        H = base_matrix(K)
        y = torch.stack([sum(float(H[a, k]) * y[..., k, :] for k in range(K)) for a in range(K)], -2)
    norm = torch.tensor(1.0 / np.sqrt(n), dtype=torch.float32)  # 1/sqrt(n) rounded once to fp32
    return (y * norm).reshape(x.shape).to(x.dtype)
