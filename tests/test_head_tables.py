"""The exported graphs hold each weight once (issue 22, items 1-2): no initializer repeats another
or its transpose, no Transpose reads a weight (TensorRT folds Transpose(constant) into a second,
transposed constant), and the head is Gemm(transB=1) on the table as stored, which onnx-tensorrt
imports as a matrix multiply with MatrixOperation::kTRANSPOSE (onnxOpImporters.cpp, Gemm
importer: getMatrixOp(inputB, transB)). fp16, W8A8 and W4A8 --h2t; Mamba-1 and Mamba-2; tied
and untied."""
import hashlib

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from edgeq.export.onnx_export import to_onnx
from edgeq.models import MambaConfig, MambaLM
from edgeq.quant import calib_data, folder as quant_folder, pipeline, recipe as R

VOCAB = 301
ARCHS = {"mamba1": {}, "mamba2": dict(arch="mamba2", d_state=16, headdim=16, ngroups=2,
                                      chunk_size=8)}


def model(arch: str, tied: bool) -> MambaLM:
    torch.manual_seed(0)
    cfg = MambaConfig(d_model=64, n_layer=1, vocab_size=VOCAB, tie_embeddings=tied, **ARCHS[arch])
    return MambaLM(cfg).eval()


def graph(arch: str, tied: bool, recipe: str, tmp_path) -> onnx.ModelProto:
    m = model(arch, tied)
    if recipe == "fp16":  # as edgeq build exports its fp16 baseline
        return to_onnx(m.half())
    rec = R.load(recipe, h2t=recipe == "quamba2-w4a8")
    ids = np.random.default_rng(0).integers(0, VOCAB, 1000)
    qfp, t, s = pipeline.run(m, calib_data.windows(ids, 4, 64, VOCAB), rec)
    quant_folder.save(tmp_path / "q", qfp, t, s, rec, {}, None)
    return to_onnx(quant_folder.load(tmp_path / "q"))


def _digests(t: onnx.TensorProto) -> set[str]:
    """The initializer's values and, for a matrix, its transpose's."""
    a = numpy_helper.to_array(t)
    views = [a] + ([a.T] if a.ndim == 2 else [])
    return {hashlib.sha256(np.ascontiguousarray(v).tobytes() + str(v.shape).encode()).hexdigest()
            for v in views}


@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
@pytest.mark.parametrize("arch", list(ARCHS))
@pytest.mark.parametrize("recipe", ["fp16", "quamba2-w8a8", "quamba2-w4a8"])
def test_each_weight_is_stored_once(recipe, arch, tied, tmp_path):
    proto = graph(arch, tied, recipe, tmp_path)
    g = proto.graph
    weights = [t for t in g.initializer if np.prod(t.dims) >= 256]  # not the scalar constants
    seen: dict[str, str] = {}
    for t in weights:
        for d in _digests(t):
            assert d not in seen, f"{t.name} repeats {seen[d]}"
        seen.update(dict.fromkeys(_digests(t), t.name))
    names = {t.name for t in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    for n in g.node:
        if n.op_type == "Transpose":
            src = producer.get(n.input[0])
            assert n.input[0] not in names and not (
                src is not None and src.op_type == "DequantizeLinear" and src.input[0] in names), \
                f"{n.name} transposes a weight"
    # the vocabulary tables: one when tied, two when not; the head a Gemm(transB=1) on one
    tables = [t for t in g.initializer if t.dims == [VOCAB, 64]]
    assert len(tables) == (1 if tied else 2)
    gemm, = [n for n in g.node if n.op_type == "Gemm"]
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in gemm.attribute}
    assert attrs["transB"] == 1 and attrs.get("transA", 0) == 0 and attrs.get("alpha", 1.0) == 1.0
    b = producer.get(gemm.input[1])
    head = b.input[0] if b is not None and b.op_type == "DequantizeLinear" else gemm.input[1]
    assert head in {t.name for t in tables}
    # NvInfer.h, IDequantizeLayer: "Block dequantization is supported only for 2-D input tensors
    # with DataType::kINT4 that are rooted at an IConstantLayer"; TensorRT runs it as weight-only
    # INT4 only where it feeds a GEMM's weight input
    inits = {t.name: t for t in g.initializer}
    for n in g.node:
        if n.op_type == "DequantizeLinear" and any(a.name == "block_size" for a in n.attribute):
            t = inits[n.input[0]]
            assert t.data_type == onnx.TensorProto.INT4 and len(t.dims) == 2
            users = [u for u in g.node if n.output[0] in u.input]
            assert users and all(u.op_type in ("MatMul", "Gemm") and u.input[1] == n.output[0]
                                 for u in users), n.name
    if recipe == "quamba2-w4a8":  # the embedding op reads the head's table when tied
        embed, = [n for n in g.node if n.op_type == "EdgeqEmbeddingW4"]
        assert (embed.input[1] == head) is tied
