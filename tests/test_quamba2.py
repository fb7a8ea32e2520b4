"""Quamba2 recipes (W8A8, W4A8, W4A16) on Mamba-1 and Mamba-2: the fake-quant model against fp,
the ONNX graphs on ORT against the fake-quant model, the graphs' quantization forms, sizes; W4AX's
search and its mixed layers."""
import dataclasses
import itertools
import json

import numpy as np
import onnx
import pytest
import torch

from edgeq.errors import EdgeqError
from edgeq.export.onnx_export import to_onnx
from edgeq.models import MambaConfig, MambaLM
from edgeq.quant import calib_data, folder as quant_folder, mixed, pipeline
from edgeq.quant import quantize as Q, recipe as R
from edgeq.quant.gptq import Hessian
from edgeq.quant.qmodel import W4A16Layer, W4Table, layer_tensors, load_model, w4_table
from edgeq.runtime.backends import OrtBackend, TorchBackend
from edgeq.runtime.evaluate import top1_agreement

CONFIGS = {
    "mamba1": MambaConfig(d_model=64, n_layer=2, vocab_size=301),
    "mamba2": MambaConfig(d_model=64, n_layer=2, vocab_size=301, arch="mamba2", d_state=16,
                          headdim=16, ngroups=2, chunk_size=8),
}
RECIPES = ("quamba2-w8a8", "quamba2-w4a8", "quamba2-w4a16", "quamba2-w4ax")


def recipe(name: str) -> R.Recipe:
    """The recipe; W4AX with half the layers W4A16 (1 of the test models' 2)."""
    return R.load(name, a16_fraction=0.5 if R.load(name).mixed else None)


def tokens(n, seed=0):
    return np.random.default_rng(seed).integers(0, 301, n)


@pytest.fixture(scope="module")
def fp():
    models = {}
    for arch, cfg in CONFIGS.items():
        torch.manual_seed(0)
        m = MambaLM(cfg).eval()
        with torch.no_grad():  # lively dynamics and uneven channels, as trained models have
            for layer in m.backbone.layers:
                mx = layer.mixer
                mx.in_proj.weight.mul_(torch.rand(mx.in_proj.weight.shape[0], 1) * 3 + 0.2)
                if arch == "mamba2":
                    mx.dt_bias.add_(torch.randn_like(mx.dt_bias))
        models[arch] = m
    return models


@pytest.fixture(scope="module")
def quantized(fp, tmp_path_factory):
    out = {}
    for arch, model in fp.items():
        for name in RECIPES:
            rec = recipe(name)
            qfp, t, s = pipeline.run(model, calib_data.windows(tokens(4000), 16, 64, 301), rec)
            folder = tmp_path_factory.mktemp("q") / f"{arch}-{name}"
            quant_folder.save(folder, qfp, t, s, rec, {"samples": 16}, None)
            out[arch, name] = folder
    return out


def test_quamba2_recipes_cover_both_backbones():
    for name in RECIPES:
        rec = R.load(name)
        assert rec.archs == ("mamba1", "mamba2")
        assert rec.weights.w4 == (() if name == "quamba2-w8a8" else ("in_proj", "out_proj"))
    assert R.load("quamba2-w4ax").mixed.a16 == "quamba2-w4a16"
    assert R.load("quamba2-w4a16").weight_only
    with pytest.raises(EdgeqError, match="quantizes no activations"):
        R.load("quamba2-w4a16", percentile=99.9)
    assert not R.load("quamba2-w8a8").hadamard_in_proj
    assert R.load("quamba2-w8a8", residual_hadamard=True).hadamard_in_proj
    with pytest.raises(EdgeqError, match="residual-hadamard: recipe quamba-w8a8 has no such"):
        R.load("quamba-w8a8", residual_hadamard=True)


@pytest.mark.parametrize("arch", CONFIGS)
@pytest.mark.parametrize("name", RECIPES)
def test_quantized_tracks_fp_and_ort_tracks_torch(fp, quantized, arch, name):
    qm = quant_folder.load(quantized[arch, name])
    ids = tokens(513, seed=9)
    fq = TorchBackend(qm)
    assert top1_agreement(TorchBackend(fp[arch]), fq, ids, seq_len=128) > 0.8
    ob = OrtBackend(to_onnx(qm))
    # fp16 activations (W4AX: in its W4A16 layers): GEMM order and fp16 rounding differ
    fp16 = name in ("quamba2-w4a16", "quamba2-w4ax")
    if fp16:
        a, _ = fq.forward(ids[None, :64], fq.new_state(1))
        b, _ = ob.forward(ids[None, :64], ob.new_state(1))
        assert np.abs(b - a).max() <= 0.01 * np.abs(a).max()
    assert top1_agreement(fq, ob, ids, seq_len=128) >= 0.995
    # state carried across calls on ORT equals one pass (a decode step is the op at L = 1);
    # Mamba-2's int8 graphs round their fp16 SSM state cache at every call: within that
    a, _ = ob.forward(ids[None, :20], ob.new_state(1))
    b1, st = ob.forward(ids[None, :17], ob.new_state(1))
    b2, st = ob.forward(ids[None, 17:18], st)
    b3, _ = ob.forward(ids[None, 18:20], st)
    int8_first = name != "quamba2-w4a16" and not isinstance(qm.layers[0], W4A16Layer)
    fp16_cache = arch == "mamba2" and int8_first
    assert st[1].dtype == (np.float16 if fp16_cache else np.float32)
    assert [a.dtype for a in st] == [np.dtype(str(t.dtype).split(".")[1])
                                     for pair in qm.new_state(1) for t in pair]
    tol = 0.01 * np.abs(a).max() if fp16 or fp16_cache else 2e-3
    np.testing.assert_allclose(np.concatenate([b1, b2, b3], 1), a, atol=tol)


def test_w4a16_graph_is_int4_dequantize_linear_with_block_size(quantized):
    proto = to_onnx(quant_folder.load(quantized["mamba2", "quamba2-w4a16"]))
    onnx.checker.check_model(proto, full_check=True)
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 21
    inits = {i.name: i for i in proto.graph.initializer}
    dq = [n for n in proto.graph.node if n.op_type == "DequantizeLinear"]
    assert len(dq) == 2 * 2  # in_proj and out_proj of 2 layers
    for n in dq:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
        w, s = inits[n.input[0]], inits[n.input[1]]
        assert w.data_type == onnx.TensorProto.INT4 and attrs["axis"] == 0
        assert attrs["block_size"] == w.dims[0] // s.dims[0] and attrs["block_size"] in (64, 128)
    assert not any(n.op_type.startswith("Edgeq") and "Int8" in n.op_type for n in proto.graph.node)


def test_w4a8_graph_uses_the_w4a8_gemm_and_int8_ssd(quantized):
    proto = to_onnx(quant_folder.load(quantized["mamba2", "quamba2-w4a8"]))
    types = [n.op_type for n in proto.graph.node]
    assert types.count("EdgeqLinearW4A8") == 2 * 2 and types.count("EdgeqSSDScanInt8") == 2
    inits = {i.name: i for i in proto.graph.initializer}
    for n in proto.graph.node:
        if n.op_type == "EdgeqLinearW4A8":
            w = inits[n.input[1]]
            # packed bytes as INT8: TensorRT's ONNX parser would widen UINT8 to INT32
            assert w.data_type == onnx.TensorProto.INT8
    # the conv's int8 input: x, B and C quantized each with its scale, then concatenated
    producer = {o: n for n in proto.graph.node for o in n.output}
    for conv in (n for n in proto.graph.node if n.op_type == "EdgeqCausalConv1dInt8"):
        cat = producer[conv.input[0]]
        assert cat.op_type == "Concat" and len(cat.input) == 3
        assert all(producer[i].op_type == "QuantizeLinear" for i in cat.input)
    conv_in = [i for i in proto.graph.input if i.name.startswith("conv_state")]
    assert all(i.type.tensor_type.elem_type == onnx.TensorProto.INT8 for i in conv_in)


def test_mamba2_scales_per_cluster_and_state_group(fp, quantized):
    import json
    meta = json.loads((quantized["mamba2", "quamba2-w8a8"] / "quant.json").read_text())
    cfg = CONFIGS["mamba2"]
    for layer in meta["scales"]:
        x = np.array(layer["x"]).reshape(cfg.ngroups, -1)
        assert x.shape[1] == cfg.d_inner // cfg.ngroups
        # at most 4 head groups x 4 channel groups per state group, and more than one
        assert all(1 < len(set(g)) <= 16 for g in x)
        assert len(layer["B"]) == len(layer["C"]) == cfg.ngroups
    # ablations: one x scale without clustering, one B/C scale without per-state-group
    rec = dataclasses.replace(R.load("quamba2-w8a8"), cluster=None, per_state_group=False)
    windows = calib_data.windows(tokens(4000), 4, 64, 301)
    _, _, scales = pipeline.run(fp["mamba2"], windows, rec)
    for layer in scales:
        assert len(set(layer["x"])) == 1 and len(set(layer["B"])) == 1
    # the conv input: one scale per part, x, B and C, each its absmax / 127
    amax = []
    hooks = [layer.mixer.in_proj.register_forward_hook(
        lambda _, __, out: amax.append(out[..., cfg.d_inner:-cfg.nheads].abs().amax((0, 1))))
        for layer in fp["mamba2"].backbone.layers]
    with torch.no_grad():
        fp["mamba2"](windows)
    for h in hooks:
        h.remove()
    GN = cfg.ngroups * cfg.d_state
    for layer, a in zip(scales, amax):
        want = [p.max().item() / 127 for p in a.split([cfg.d_inner, GN, GN])]
        np.testing.assert_allclose(layer["xBC"], want, rtol=1e-6)


def test_4bit_linears_are_under_0p3_of_fp16(quantized, fp):
    from safetensors.torch import load_file
    for arch in CONFIGS:
        t = load_file(str(quantized[arch, "quamba2-w4a8"] / "model.safetensors"))
        q = sum(v.numel() * v.element_size() for k, v in t.items()
                if k.rsplit(".", 2)[-2] in ("in_proj", "out_proj"))
        ref = sum(2 * getattr(layer.mixer, n).weight.numel()
                  for layer in fp[arch].backbone.layers for n in ("in_proj", "out_proj"))
        assert q <= 0.3 * ref, (arch, q / ref)


@pytest.mark.parametrize("name", ["quamba2-w4a8", "quamba2-w4a16"])
@pytest.mark.parametrize("rotate", [False, True])
def test_head_to_toe_4bit_tables(fp, name, rotate, tmp_path):
    model = fp["mamba2"]
    rec = R.load(name, h2t=True, residual_hadamard=rotate)
    qfp, t, s = pipeline.run(model, calib_data.windows(tokens(4000), 8, 64, 301), rec)
    quant_folder.save(tmp_path / "q", qfp, t, s, rec, {}, None)
    qm = quant_folder.load(tmp_path / "q")
    proto = to_onnx(qm)
    inits = {i.name: i for i in proto.graph.initializer}
    blocked = [n for n in proto.graph.node if n.op_type == "DequantizeLinear"
               and any(a.name == "block_size" for a in n.attribute)]
    heads = [n for n in blocked if inits[n.input[0]].dims[0] == 301]  # [vocab, d]
    embed, = [n for n in proto.graph.node if n.op_type == "EdgeqEmbeddingW4"]
    # tied: the embedding op and the head's DQ read one table and one set of scales; the
    # residual rotation unties them (the final norm's weight folds into the head only)
    assert len(heads) == 1 and qfp.cfg.tie_embeddings is not rotate
    assert (embed.input[1:] == heads[0].input[:2]) is not rotate
    assert len(blocked) == len(heads) + (0 if name == "quamba2-w4a8" else 2 * 2)
    for table in (embed.input[1], heads[0].input[0]):
        assert inits[table].data_type == onnx.TensorProto.INT4
    # TensorRT's weight-only INT4 form: fp16 block scales on the input axis, fp16 activations
    head = heads[0]
    assert inits[head.input[1]].data_type == onnx.TensorProto.FLOAT16
    assert {a.name: onnx.helper.get_attribute_value(a) for a in head.attribute} == \
        {"axis": 1, "block_size": 64}
    gemm, = [n for n in proto.graph.node if head.output[0] in n.input]
    assert gemm.op_type == "Gemm" and gemm.input[1] == head.output[0]
    assert {a.name: onnx.helper.get_attribute_value(a) for a in gemm.attribute}["transB"] == 1
    producer = {o: n for n in proto.graph.node for o in n.output}
    cast = producer[producer[gemm.input[0]].input[0]] \
        if producer[gemm.input[0]].op_type == "Reshape" else producer[gemm.input[0]]
    assert cast.op_type == "Cast" and cast.attribute[0].i == onnx.TensorProto.FLOAT16 \
        or name == "quamba2-w4a16"  # fp16 throughout: no cast
    fq, ob = TorchBackend(qm), OrtBackend(proto)
    ids = tokens(257, seed=3)
    assert top1_agreement(TorchBackend(model), fq, ids, seq_len=128) > 0.7
    assert top1_agreement(fq, ob, ids, seq_len=128) >= 0.99
    with pytest.raises(EdgeqError, match="no 4-bit weights"):
        R.load("quamba2-w8a8", h2t=True)


def test_head_to_toe_head_is_gptq_on_the_head_input(fp):
    from edgeq.quant import weights
    model, rec = fp["mamba2"], R.load("quamba2-w4a8", h2t=True)
    windows = calib_data.windows(tokens(4000), 8, 64, 301)
    qfp, cal = pipeline.calibrate_all(model, windows, rec)
    t, _ = Q.quantize_model(qfp, cal, rec)
    head = cal.hessians.head()  # after the layers, quantized
    assert head.n == windows.numel()  # every calibration token's final hidden state
    w = qfp.lm_head.weight.detach()  # tied: the one table is quantized for the head
    packed, scale = weights.int4_packed(w, head, rec.weights, "lm_head")
    assert torch.equal(t["backbone.embeddings.weight_packed"], packed)
    assert torch.equal(t["backbone.embeddings.weight_scale"], scale)
    rtn = weights.int4_packed(w, None, rec.weights, "lm_head")
    rows = []
    hook = qfp.lm_head.register_forward_hook(lambda _, inp, __: rows.append(inp[0]))
    with torch.no_grad():
        qfp(windows)
    hook.remove()
    x = torch.cat(rows).reshape(-1, w.shape[1])

    def err(p, s):
        return (x @ (W4Table(p, s).rows() - w).T).pow(2).mean()
    assert err(packed, scale) < 0.9 * err(*rtn)
    # without h2t no head Hessian is collected
    assert pipeline.calibrate_all(model, windows, R.load("quamba2-w4a8"))[1].hessians.head() is None


@pytest.mark.parametrize("arch", CONFIGS)
def test_residual_rotation_keeps_the_logits(fp, arch):
    from edgeq.quant.rotate import rotate_residual
    model = fp[arch]
    rotated = rotate_residual(model)
    ids = torch.from_numpy(tokens(66, seed=2)).view(2, 33)
    with torch.no_grad():
        a, b = model(ids)[0], rotated(ids)[0]
        assert (a - b).abs().max() <= 1e-5 * a.abs().max()
        for layer in rotated.backbone.layers:  # the norm weights are folded away
            assert torch.equal(layer.norm.weight, torch.ones_like(layer.norm.weight))
    with pytest.raises(EdgeqError, match="d_model 44 has no Hadamard"):
        rotate_residual(MambaLM(MambaConfig(d_model=44, n_layer=1, vocab_size=11)))


@pytest.mark.parametrize("name", ["quamba2-w4a16", "quamba2-w4a8"])
def test_gptq_is_layer_sequential(fp, name):
    # layer 1's GPTQ runs on the Hessian of its inputs after layer 0 ran with its 4-bit weights
    # (GPTQ's and Quamba2's order), not on the fp model's
    import copy
    from edgeq.ops import hadamard
    from edgeq.quant import weights
    model, rec = fp["mamba1"], R.load(name)
    windows = calib_data.windows(tokens(4000), 8, 64, 301)
    qfp, cal = pipeline.calibrate_all(model, windows, rec)
    t, _ = Q.quantize_model(qfp, cal, rec)
    p = "backbone.layers.{}.mixer."
    values = {n: w4_table(t, p.format(0) + n).rows() for n in ("in_proj", "out_proj")}
    seq = copy.deepcopy(qfp)
    m0 = seq.backbone.layers[0].mixer
    m0.in_proj.weight.data = values["in_proj"]
    if rec.hadamard_out_proj:  # the folder holds W H^T; y W^T = (y H^T)(W H^T)^T
        H = hadamard.matrix(model.cfg.d_inner)
        m0.out_proj.weight.data = (values["out_proj"].double() @ H).float()
        y = torch.randn(5, model.cfg.d_inner)
        torch.testing.assert_close(m0.out_proj(y), hadamard.transform(y) @ values["out_proj"].T,
                                   rtol=1e-4, atol=1e-5)
    else:
        m0.out_proj.weight.data = values["out_proj"]

    def layer1_in_proj_hessian(m):
        h = Hessian(model.cfg.d_model)
        hook = m.backbone.layers[1].mixer.in_proj.register_forward_hook(
            lambda _, inp, __: h.add(inp[0]))
        with torch.no_grad():
            for start in range(0, len(windows), 8):  # calibration's batches: the same sums
                m(windows[start:start + 8])
        hook.remove()
        return h
    w = qfp.backbone.layers[1].mixer.in_proj.weight.detach()
    sequential = weights.int4_packed(w, layer1_in_proj_hessian(seq), rec.weights, "in_proj")
    assert torch.equal(t[p.format(1) + "in_proj.weight_packed"], sequential[0])
    assert torch.equal(t[p.format(1) + "in_proj.weight_scale"], sequential[1])
    from_fp = weights.int4_packed(w, layer1_in_proj_hessian(qfp), rec.weights, "in_proj")
    assert not torch.equal(from_fp[0], sequential[0])  # the order matters here
    with pytest.raises(ValueError, match="read them in order"):
        cal.hessians.hessians_for(0)

def test_w4ax_search_finds_the_least_loss():
    # layers that help alone and in pairs: 3 of 12 (220 choices, more than the population)
    rng = np.random.default_rng(1)
    gain, pair = rng.random(12), rng.random((12, 12)) * 0.3

    def loss(c):
        return -sum(gain[i] for i in c) - sum(pair[i, j] for i in c for j in c if i < j)
    every = [frozenset(c) for c in itertools.combinations(range(12), 3)]
    drawn = []
    choice, seen = mixed.search(12, 3, loss, progress=drawn.append)
    assert choice == min(every, key=loss) and len(seen) < len(every)
    assert {len(c) for c in seen} == {3}
    settings = R.Search(population=40, generations=5, mutations=10, crossovers=10, seed=0)
    assert sum(drawn) == mixed.draws(12, 3, settings) == 140  # the progress bar's length
    drawn.clear()
    choice, seen = mixed.search(5, 2, loss, progress=drawn.append)  # 10 choices: each tried
    assert len(seen) == 10 and choice == min(seen, key=loss)
    assert sum(drawn) == mixed.draws(5, 2, settings) == 10
    # half up, at least one: 0.25 of 2 layers is 1, of 6 is 2, of 10 is 3
    spec = R.load("quamba2-w4ax").mixed
    assert [mixed.a16_count(dataclasses.replace(spec, a16_fraction=f), n) for f, n in
            ((0.25, 2), (0.25, 6), (0.25, 10), (0.01, 4), (0, 4), (1, 4))] == [1, 2, 3, 1, 0, 4]
    # Quamba2's 14 of 56: the generations improve on the first population
    gain, pair = rng.random(56), rng.random((56, 56)) * 0.3
    losses = []
    choice, seen = mixed.search(56, 14, lambda c: losses.append(loss(c)) or losses[-1])
    assert loss(choice) < min(losses[:40]) and len(choice) == 14


@pytest.mark.parametrize("arch", CONFIGS)
def test_w4ax_layers_are_the_w4a8_and_w4a16_layers(fp, quantized, arch):
    from safetensors.torch import load_file
    folder = quantized[arch, "quamba2-w4ax"]
    t = load_file(str(folder / "model.safetensors"))
    a8, a16 = (load_file(str(quantized[arch, n] / "model.safetensors"))
               for n in ("quamba2-w4a8", "quamba2-w4a16"))
    scales = json.loads((folder / "quant.json").read_text())["scales"]
    half = [i for i, s in enumerate(scales) if not s]
    qm = quant_folder.load(folder)
    assert len(half) == 1 and [isinstance(layer, W4A16Layer) for layer in qm.layers] == \
        [i in half for i in range(2)]
    for i in range(2):
        p = f"backbone.layers.{i}."
        got = {k: v for k, v in t.items() if k.startswith(p)}
        want = {k: v for k, v in (a16 if i in half else a8).items() if k.startswith(p)}
        assert got.keys() == want.keys()
        # a W4A16 layer of Mamba-2 differs from quamba2-w4a16's: its x channels are clustered
        if i not in half or arch == "mamba1":
            assert all(torch.equal(got[k], want[k]) for k in got), (i, half)
    if arch == "mamba1":  # the other choice has the greater loss on the search's windows
        windows = calib_data.windows(tokens(4000), 16, 64, 301)
        other = quant_folder.load(quantized[arch, "quamba2-w4a8"]).layers
        h = W4A16Layer(CONFIGS[arch], layer_tensors(a16, f"backbone.layers.{1 - half[0]}."))
        chosen = mixed.nll(qm, windows)
        qm.layers = torch.nn.ModuleList([h, other[1]] if half == [1] else [other[0], h])
        assert chosen < mixed.nll(qm, windows)
    for layer, (conv, ssm) in zip(qm.layers, qm.new_state(1)):  # fp16 layers: fp16 conv state
        assert (conv.dtype, ssm.dtype) == ((torch.float16, torch.float32) if isinstance(
            layer, W4A16Layer) else (torch.int8, torch.float16 if arch == "mamba2" else torch.float32))


def test_w4ax_all_w4a16_is_the_w4a16_model(fp, quantized):
    # every layer W4A16: the W4A16 recipe's model (Mamba-1: the same GPTQ), but for the
    # residual stream, fp32 here and fp16 there
    rec = R.load("quamba2-w4ax", a16_fraction=1.0)
    t, scales = quantize_counting_steps(fp["mamba1"], rec)
    mixed_model = load_model(CONFIGS["mamba1"], t, scales, rec)
    assert scales == [{}, {}] and all(isinstance(layer, W4A16Layer) for layer in mixed_model.layers)
    ids = torch.as_tensor(tokens(64, seed=3))[None]
    want = quant_folder.load(quantized["mamba1", "quamba2-w4a16"])(ids)[0].float()
    got = mixed_model(ids)[0]
    assert (got - want).abs().max() <= 0.01 * want.abs().max()


def quantize_counting_steps(model, rec):
    """Q.run's tensors and scales, checking that quantize_model counts Q.steps() steps."""
    qfp, cal = pipeline.calibrate_all(model, calib_data.windows(tokens(4000), 16, 64, 301), rec)
    counted = []
    t, scales = Q.quantize_model(qfp, cal, rec, progress=counted.append)
    assert sum(counted) == Q.steps(qfp.cfg, rec) == len(counted)
    return t, scales


@pytest.mark.parametrize("name,h2t,fraction,want", [
    ("quamba2-w4ax", True, 0.5, 2 * 3 + 2),  # two forms of 2 layers and the rest, 2 draws
    ("quamba2-w4ax", False, 0.0, 3),  # all W4A8: one form, no search
    ("quamba2-w4a16", True, None, 3), ("quamba-w8a8", False, None, 3)])
def test_quantize_counts_its_steps(fp, name, h2t, fraction, want):
    rec = R.load(name, h2t=h2t, a16_fraction=fraction)
    assert Q.steps(CONFIGS["mamba1"], rec) == want
    quantize_counting_steps(fp["mamba1"], rec)
