"""Quamba2's sort-and-cluster of a Mamba-2 SSM input x (the conv output's d_inner channels).

Channels are reordered so that channels of similar range sit together and share an int8 scale:
inside each SSD group (nheads / ngroups consecutive heads, which share B and C), heads are
clustered into head groups by their range profiles, and inside each head group the channel
positions (each head sorted by range) are split into dim groups. A scale group is one (SSD
group, head group, dim group). The permutation only moves heads inside their SSD group and
channels inside their head, so reorder_mamba2 can apply it to the weights offline.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..models.mamba2 import Mamba2Mixer


def _ward(profiles: Tensor, k: int) -> list[list[int]]:
    """Agglomerative Ward clustering of the rows of profiles into k clusters, deterministic:
    the cheapest merge first, ties to the lowest pair of clusters (kept in first-row order)."""
    clusters = [[i] for i in range(len(profiles))]
    cent = profiles.clone()
    size = torch.ones(len(profiles), dtype=torch.float64)
    d2 = (cent[:, None] - cent[None]).pow(2).sum(-1)  # squared centroid distances, symmetric
    while len(clusters) > k:
        cost = d2 * (size[:, None] * size[None]) / (size[:, None] + size[None])
        cost.fill_diagonal_(float("inf"))
        a, b = divmod(int(torch.argmin(cost)), len(clusters))  # a < b: the first minimum
        cent[a] = (size[a] * cent[a] + size[b] * cent[b]) / (size[a] + size[b])
        size[a] += size[b]
        clusters[a] += clusters.pop(b)
        d2[a] = d2[:, a] = (cent - cent[a]).pow(2).sum(-1)
        keep = torch.arange(len(cent)) != b
        cent, size, d2 = cent[keep], size[keep], d2[keep][:, keep]
    return clusters


def _kmeans_1d(v: Tensor, k: int) -> list[int]:
    """Optimal k-means of the sorted values v into k contiguous runs (dynamic programming over
    the split points); the run start indices, ties to the earliest split."""
    n = len(v)
    s1 = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(v, 0)])
    s2 = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(v * v, 0)])
    i, j = torch.meshgrid(torch.arange(n + 1), torch.arange(n + 1), indexing="ij")
    length = (j - i).clamp(min=1).double()
    sse = s2[j] - s2[i] - (s1[j] - s1[i]).pow(2) / length  # sse[i, j]: the run v[i:j]
    sse = torch.where(j > i, sse.clamp(min=0), torch.full_like(sse, float("inf")))
    best = sse[0]  # best[j]: the least SSE of v[:j] in the runs so far
    starts = []
    for _ in range(k - 1):
        total = best[:, None] + sse
        arg = total.argmin(0)  # then gather: min(0) is far slower on CPU (torch 2.13)
        best = total.gather(0, arg[None])[0]
        starts.append(arg)
    bounds, end = [], n
    for arg in reversed(starts):
        end = int(arg[end])
        bounds.append(end)
    return [0] + bounds[::-1]


def sort_and_cluster(amax: Tensor, nheads: int, ngroups: int, m: int = 4, n: int = 4
                     ) -> tuple[Tensor, Tensor]:
    """perm [D] (perm[new channel] = old channel) and group [D] (the scale group of each new
    channel, numbered 0.. in channel order) from the per-channel calibration absmax [D]."""
    D = amax.numel()
    if D % nheads or nheads % ngroups:
        raise ValueError(f"{D} channels are not {nheads} heads in {ngroups} SSD groups")
    if m < 1 or n < 1:
        raise ValueError(f"m={m}, n={n}: a head group and a dim group per SSD group at least")
    P, per = D // nheads, nheads // ngroups
    a = amax.detach().reshape(nheads, P).to("cpu", torch.float64)
    order = torch.argsort(a, dim=1, descending=True, stable=True)
    profile = torch.gather(a, 1, order)  # each head's channel ranges, largest first
    perm, group, gid = [], [], 0
    for g in range(ngroups):
        heads = torch.arange(g * per, (g + 1) * per)
        clusters = [sorted(int(heads[i]) for i in c) for c in _ward(profile[heads], min(m, per))]
        clusters.sort(key=lambda c: (-float(a[c].mean()), c[0]))  # widest head group first
        for c in clusters:
            starts = _kmeans_1d(profile[c].amax(0), min(n, P))
            dim_group = torch.zeros(P, dtype=torch.long)
            dim_group[starts[1:]] = 1
            dim_group = torch.cumsum(dim_group, 0) + gid
            for h in c:
                perm.append(h * P + order[h])
                group.append(dim_group)
            gid += len(starts)
    return torch.cat(perm), torch.cat(group)


def group_scales(amax: Tensor, group: Tensor) -> Tensor:
    """Per-channel int8 scales [D] fp32: each group's absmax / 127 on all of its channels."""
    gmax = torch.zeros(int(group.max()) + 1).scatter_reduce(0, group, amax.float(), "amax")
    return (gmax.clamp(min=1e-8) / 127)[group]


def _head_perm(perm: Tensor, D: int, nheads: int, ngroups: int) -> Tensor:
    P, per = D // nheads, nheads // ngroups
    ok = perm.shape == (D,) and torch.equal(torch.sort(perm).values, torch.arange(D))
    if ok:
        heads = (perm // P).reshape(nheads, P)
        head_perm = heads[:, 0]
        ok = bool((heads == head_perm[:, None]).all()) and \
            torch.equal(head_perm // per, torch.arange(nheads) // per)
    if not ok:
        raise ValueError("reorder_mamba2: perm must be a permutation of the d_inner channels "
                         "that keeps channels in their head and heads in their SSD group")
    return head_perm


@torch.no_grad()
def reorder_mamba2(mixer: Mamba2Mixer, perm: Tensor) -> None:
    """Permute the x channels of a Mamba-2 mixer in place (perm[new] = old), with z, dt, the
    conv, A, D, dt bias, the gated norm and out_proj so that the layer computes the same."""
    cfg = mixer.cfg
    di, H, GN = cfg.d_inner, cfg.nheads, cfg.ngroups * cfg.d_state
    perm = perm.to("cpu", torch.long)
    head_perm = _head_perm(perm, di, H, cfg.ngroups)
    bc = torch.arange(di, di + 2 * GN)
    rows = torch.cat([perm, di + perm, di + bc, 2 * di + 2 * GN + head_perm])  # z, x, B C, dt
    conv = torch.cat([perm, bc])

    def take(p, idx, dim=0):
        p.copy_(p.index_select(dim, idx.to(p.device)))

    take(mixer.in_proj.weight, rows)
    if mixer.in_proj.bias is not None:
        take(mixer.in_proj.bias, rows)
    take(mixer.conv1d.weight, conv)
    if mixer.conv1d.bias is not None:
        take(mixer.conv1d.bias, conv)
    for p in (mixer.A_log, mixer.D, mixer.dt_bias):
        take(p, head_perm)
    take(mixer.norm.weight, perm)
    take(mixer.out_proj.weight, perm, 1)
