"""Quamba2's sort-and-cluster of Mamba-2 x channels, and the weight reordering that applies it
(edgeq.quant.cluster)."""
import pytest
import torch

from edgeq.models.config import MambaConfig
from edgeq.models.mamba import MambaLM
from edgeq.quant.cluster import group_scales, reorder_mamba2, sort_and_cluster

NHEADS, NGROUPS, P = 16, 2, 8  # 8 heads per SSD group
PER = NHEADS // NGROUPS


def amax_of(seed=0):
    g = torch.Generator().manual_seed(seed)
    head_range = torch.exp(2 * torch.randn(NHEADS, 1, generator=g))  # heads over decades
    return (torch.rand(NHEADS, P, generator=g) * head_range).flatten()


def head_groups(perm, group):
    """The head groups, as sets of old heads, read back from (perm, group)."""
    by_ids = {}
    for h in range(NHEADS):
        ids = tuple(group[h * P:(h + 1) * P].tolist())
        by_ids.setdefault(ids, set()).add(int(perm[h * P]) // P)
    return list(by_ids.values())


@pytest.mark.parametrize("m, n", [(4, 4), (2, 3), (1, 1), (8, 8), (16, 16)])
def test_perm_and_group_structure(m, n):
    amax = amax_of()
    perm, group = sort_and_cluster(amax, NHEADS, NGROUPS, m, n)
    assert perm.dtype == group.dtype == torch.long
    assert torch.equal(torch.sort(perm).values, torch.arange(NHEADS * P))
    heads = (perm // P).reshape(NHEADS, P)
    assert (heads == heads[:, :1]).all()  # a new head is one old head
    assert torch.equal(heads[:, 0] // PER, torch.arange(NHEADS) // PER)  # in its SSD group
    # each head is sorted by range; its dim groups are contiguous runs, numbered in order
    assert (amax[perm].reshape(NHEADS, P).diff(dim=1) <= 0).all()
    assert (group.reshape(NHEADS, P).diff(dim=1) >= 0).all()
    assert torch.equal(torch.unique(group), torch.arange(int(group.max()) + 1))
    for s in range(NGROUPS):
        ids = group[s * PER * P:(s + 1) * PER * P]
        assert len(torch.unique(ids)) <= min(m, PER) * min(n, P)
        if s:  # SSD groups never share a scale group
            assert ids.min() > group[:s * PER * P].max()
    # heads of a head group share the dim split and sit next to each other
    hg = head_groups(perm, group)
    assert len(hg) == NGROUPS * min(m, PER)
    new_head = {int(perm[h * P]) // P: h for h in range(NHEADS)}
    for c in hg:
        pos = sorted(new_head[h] for h in c)
        assert pos == list(range(pos[0], pos[0] + len(pos)))


def test_clustering_separates_two_profiles():
    g = torch.Generator().manual_seed(1)
    wide = torch.tensor([0, 2, 5, 7, 9, 12, 13, 15])  # four wide heads in each SSD group
    scale = torch.ones(NHEADS)
    scale[wide] = 20
    amax = (scale[:, None] * (1 + 0.1 * torch.rand(NHEADS, P, generator=g))).flatten()
    perm, group = sort_and_cluster(amax, NHEADS, NGROUPS, m=2, n=2)
    assert sorted(map(sorted, head_groups(perm, group))) == \
        [[0, 2, 5, 7], [1, 3, 4, 6], [8, 10, 11, 14], [9, 12, 13, 15]]
    assert int(perm[0]) // P == 0  # the wide head group comes first
    perm, group = sort_and_cluster(amax, NHEADS, NGROUPS, m=4, n=2)
    for c in head_groups(perm, group):
        assert len({h in wide.tolist() for h in c}) == 1


def test_dim_groups_split_at_the_range_gaps():
    # one head group (m=1) whose sorted positions have ranges 9 9 9 | 3 3 | 1 1 1
    amax = torch.tensor([1., 9, 3, 1, 9, 3, 1, 9]).repeat(NHEADS)
    perm, group = sort_and_cluster(amax, NHEADS, NGROUPS, m=1, n=3)
    assert group[:P].tolist() == [0, 0, 0, 1, 1, 2, 2, 2]
    assert perm[:P].tolist() == [1, 4, 7, 2, 5, 0, 3, 6]  # stable: ties keep channel order


def test_dim_groups_are_optimal_1d_kmeans():
    from itertools import combinations
    g = torch.Generator().manual_seed(4)
    head = torch.exp(2 * torch.rand(P, generator=g))
    perm, group = sort_and_cluster(head.repeat(NHEADS), NHEADS, NGROUPS, m=1, n=3)
    v = head[perm[:P]].double()  # every head alike: the profile is the sorted head

    def sse(starts):
        return sum(float((r - r.mean()).pow(2).sum())
                   for r in torch.tensor_split(v, list(starts)) if len(r))

    assert len(torch.unique(group[:P])) == 3
    got = sse(torch.nonzero(group[:P].diff()).flatten() + 1)
    assert got <= min(sse(c) for c in combinations(range(1, P), 2)) + 1e-12


def test_group_scales_keep_range_and_beat_per_tensor():
    g = torch.Generator().manual_seed(2)
    spread = torch.exp(1.5 * torch.randn(NHEADS * P, generator=g))  # channel ranges over decades
    x = torch.randn(512, NHEADS * P, generator=g) * spread
    amax = x.abs().amax(0)
    perm, group = sort_and_cluster(amax, NHEADS, NGROUPS)
    s = group_scales(amax[perm], group)
    assert s.dtype == torch.float32 and s.shape == (NHEADS * P,)
    assert (s * 127 >= amax[perm] * (1 - 1e-6)).all()  # fp32 rounding of /127 at most
    for i in torch.unique(group):  # one scale per group
        assert len(torch.unique(s[group == i])) == 1

    def err(v, scale):
        return (v - torch.clamp(torch.round(v / scale), -127, 127) * scale).pow(2).sum()

    xr = x[:, perm]
    assert err(xr, s) < 0.2 * err(xr, amax.max() / 127)
    assert group_scales(torch.zeros(4), torch.tensor([0, 0, 1, 1])).min() > 0


def tiny_mamba2(bias):
    cfg = MambaConfig(d_model=64, n_layer=2, vocab_size=101, arch="mamba2", d_state=16,
                      headdim=16, ngroups=2, chunk_size=8, bias=bias)
    torch.manual_seed(0)
    model = MambaLM(cfg, ops="reference").eval()
    with torch.no_grad():  # make every per-head and per-channel parameter matter
        for layer in model.backbone.layers:
            m = layer.mixer
            for p in (m.A_log, m.dt_bias, m.D, m.norm.weight, m.conv1d.bias):
                p.add_(torch.randn_like(p) * 0.5)
            if bias:
                m.in_proj.bias.add_(torch.randn_like(m.in_proj.bias))
    return model


def random_perm(cfg, g):
    """A permutation that moves heads inside their SSD group and channels inside their head."""
    P, per = cfg.headdim, cfg.nheads // cfg.ngroups
    heads = torch.cat([s * per + torch.randperm(per, generator=g) for s in range(cfg.ngroups)])
    return torch.cat([h * P + torch.randperm(P, generator=g) for h in heads.tolist()])


@pytest.mark.parametrize("bias", [False, True])
def test_reorder_mamba2_keeps_logits(bias):
    model = tiny_mamba2(bias)
    cfg = model.cfg
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(0, cfg.vocab_size, (2, 21), generator=g)
    h = torch.randn(2, 21, cfg.d_model, generator=g)
    mixer = model.backbone.layers[0].mixer
    with torch.no_grad():
        ref = model(ids)[0]
        x_ref = mixer.conv(mixer.in_proj(h)[..., cfg.d_inner:cfg.d_inner + cfg.conv_dim],
                           torch.zeros(2, cfg.d_conv - 1, cfg.conv_dim))[0][..., :cfg.d_inner]
        perms = [random_perm(cfg, g),
                 sort_and_cluster(torch.rand(cfg.d_inner, generator=g), cfg.nheads, cfg.ngroups)[0]]
        for layer, perm in zip(model.backbone.layers, perms):
            reorder_mamba2(layer.mixer, perm)
        out = model(ids)[0]
        x = mixer.conv(mixer.in_proj(h)[..., cfg.d_inner:cfg.d_inner + cfg.conv_dim],
                       torch.zeros(2, cfg.d_conv - 1, cfg.conv_dim))[0][..., :cfg.d_inner]
    assert not torch.equal(perms[0], torch.arange(cfg.d_inner))
    # the same sums in another order: fp32 rounding only (logits here reach ~20)
    assert (out - ref).abs().max() < 1e-5 * ref.abs().max()
    assert torch.equal(x, x_ref[..., perms[0]])  # new channel c is old channel perm[c]


def test_reorder_mamba2_refuses_bad_perms():
    model = tiny_mamba2(False)
    cfg = model.cfg
    mixer = model.backbone.layers[0].mixer
    before = {k: v.clone() for k, v in mixer.state_dict().items()}
    P, per = cfg.headdim, cfg.nheads // cfg.ngroups
    heads = list(range(cfg.nheads))
    heads[per - 1], heads[per] = heads[per], heads[per - 1]  # across the SSD group boundary
    across = torch.cat([h * P + torch.arange(P) for h in heads])
    split = torch.arange(cfg.d_inner)
    split[[P - 1, P]] = split[[P, P - 1]]  # a channel leaves its head
    for bad in (across, split, torch.arange(cfg.d_inner - 1),
                torch.zeros(cfg.d_inner, dtype=torch.long)):
        with pytest.raises(ValueError, match="SSD group"):
            reorder_mamba2(mixer, bad)
    assert all(torch.equal(v, before[k]) for k, v in mixer.state_dict().items())
