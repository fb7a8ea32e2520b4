"""The edgeq custom ops in ONNX Runtime: onnxruntime-extensions PyOps that hand raw pointers
to the C++ CPU kernels (edgeq.runtime.kernels). PyOps register by op_type in the domain
ai.onnx.contrib, so graphs are rewritten from the `edgeq` domain in memory before loading.
onnxruntime-extensions hands FLOAT attributes to Python printed with 6 significant digits, which
moves int8 scales enough to flip rounded values, and has no FLOATS attributes at all, so the
rewrite also turns both into exact decimal STRING attributes (values separated by spaces) that
the PyOps parse back."""
from __future__ import annotations

import functools

import numpy as np
import onnx
from onnx import numpy_helper

from ..errors import EdgeqError
from ..export.schemas import ELEM
from ..ops.table import BY_NAME, DOMAIN, EMBEDDING_W4, OPS
from . import cpu_fusion, kernels, ort_held

ORT_DOMAIN = "ai.onnx.contrib"


@functools.cache
def register() -> str:
    """Register a PyOp per op of the table once; returns the onnxruntime-extensions library to
    load."""
    from onnxruntime_extensions import PyCustomOpDef, get_library_path
    onnx_op = _guarded_op({getattr(PyCustomOpDef, f"dt_{t}"): np.dtype(n) for t, n in
                           (("float", "float32"), ("float16", "float16"), ("int8", "int8"),
                            ("uint8", "uint8"), ("int32", "int32"), ("int64", "int64"))})
    # the types the PyOps see: fp16 ports arrive cast to fp32 (fp32_custom_nodes) and INT4
    # tables as their packed bytes (int4_tables_as_bytes)
    types = {"act": PyCustomOpDef.dt_float, "fp32": PyCustomOpDef.dt_float,
             "fp16": PyCustomOpDef.dt_float, "int8": PyCustomOpDef.dt_int8,
             "int4": PyCustomOpDef.dt_int8, "int64": PyCustomOpDef.dt_int64}
    signatures, bodies = {}, {}
    for op in OPS:
        inputs = [types[p.dtype] for p in op.inputs]
        outputs = [t for _, t in op.output_types([()] * len(inputs), inputs, types.__getitem__)]
        attrs = {a.name: PyCustomOpDef.dt_string if a.type in _DECODE else PyCustomOpDef.dt_int64
                 for a in op.attrs}
        signatures[op.name], bodies[op.name] = (inputs, outputs, attrs), _body(op)
        _CONVERT[op.name] = {a.name: _DECODE.get(a.type, int) for a in op.attrs}
        onnx_op(op_type=op.name, inputs=inputs, outputs=outputs,
                attrs={**attrs, ort_held.ATTR: PyCustomOpDef.dt_string})(bodies[op.name])
    for chain in cpu_fusion.CHAINS:
        per_op = [signatures[op.name] for op in chain.ops]
        _CONVERT[chain.name] = {chain.attr_name(k, a): f for k, op in enumerate(chain.ops)
                                for a, f in _CONVERT[op.name].items()}
        onnx_op(op_type=chain.name,
                inputs=[t for k, (i, _, _) in enumerate(per_op) for t in chain.split(i, k)],
                outputs=chain.outputs([o for _, o, _ in per_op]),
                attrs={ort_held.ATTR: PyCustomOpDef.dt_string,
                       **{chain.attr_name(k, a): t for k, (_, _, at) in enumerate(per_op)
                          for a, t in at.items()}})(_chain_body(chain, [bodies[o.name] for o in chain.ops]))

    global _OPS
    from onnxruntime_extensions._ocos import Opdef
    _OPS = Opdef._odlist  # read on every call: bound once, not imported per call
    PyCustomOpDef.install_hooker(_invoke)
    return get_library_path()


def _body(op):
    """The PyOp of `op`: its kernel (edgeq.runtime.kernels, named as the op) on the inputs and
    the decoded attributes (_invoke decodes them), the fp16 ports cast back from the fp32 they
    arrive as (exact)."""
    name = op.py_name
    f16_in = [i for i, p in enumerate(op.inputs) if p.dtype == "fp16"]
    f16_out = [i for i, p in enumerate(op.outputs) if p.dtype == "fp16"]

    def run(*inputs, **attrs):  # the kernel looked up when called, as a call in code is
        return getattr(kernels, name)(*inputs, **attrs)
    if not f16_in and not f16_out:
        return run

    def cast(*inputs, **attrs):
        out = run(*[x.astype(np.float16) if i in f16_in else x for i, x in enumerate(inputs)],
                  **attrs)
        if not f16_out:
            return out
        outs = [y.astype(np.float32) if i in f16_out else y
                for i, y in enumerate(out if isinstance(out, tuple) else (out,))]
        return tuple(outs) if isinstance(out, tuple) else outs[0]
    return cast


def _chain_body(chain, bodies: list):
    """The PyOp of a cpu_fusion chain: its ops' bodies in order, each after the first given the
    one before's first output."""
    # per op: its body, how many of the call's inputs it takes, its attributes' names there
    plan = [(body, len(op.inputs) - (k > 0), [(chain.attr_name(k, a.name), a.name)
                                              for a in op.attrs])
            for k, (op, body) in enumerate(zip(chain.ops, bodies))]

    def run(*inputs, **attrs):
        at, carried, outs = 0, (), []
        for body, n, names in plan:
            out = body(*carried, *inputs[at:at + n],
                       **{own: attrs[key] for key, own in names if key in attrs})
            at += n
            out = out if isinstance(out, tuple) else (out,)
            carried = out[:1]
            outs.append(out)
        res = chain.outputs(outs)
        return tuple(res) if len(res) > 1 else res[0]
    return run


_raised: list[BaseException] = []  # what a PyOp raised during run(), for run() to raise
_OPS: dict = {}  # onnxruntime-extensions' registered PyOps by id (register() binds it)


def _guarded_op(dtypes: dict):
    """onnx_op registering each function wrapped so that it never raises.

    onnxruntime-extensions' PyOp compute (PyCustomOpFactory's KernelCompute callback, a plain
    `void (*)(void*, OrtKernelContext*)` of ORT's C custom-op API) rethrows a Python exception
    as pybind11::error_already_set, which cannot unwind through ORT's frames: std::terminate,
    abort, exit 134, no cleanup (gdb, onnxruntime-extensions 0.15.2 on ORT 1.32: __cxa_rethrow
    in that callback, terminate from __gxx_personality_v0). So the wrapper keeps the exception
    (a kernel's ValueError, Ctrl-C's KeyboardInterrupt, SIGTERM's SystemExit), returns empty
    outputs of the declared types, and makes later PyOps of the run return at once; run()
    raises it when ORT returns."""
    from onnxruntime_extensions import onnx_op

    def op(**kw):
        empty = [np.zeros(0, dtypes[t]) for t in kw["outputs"]]  # the declared types

        def wrap(fn):
            @functools.wraps(fn)
            def guarded(*args, **attrs):
                if not _raised:
                    try:
                        return fn(*args, **attrs)
                    except ValueError as e:  # the kernels' argument checks
                        _raised.append(EdgeqError(f"{kw['op_type']}: {e}; the graph does not fit "
                                                  "the op's spec, export it again with edgeq"))
                    except BaseException as e:
                        _raised.append(e)
                return guarded.empty
            guarded.empty = tuple(empty) if len(empty) > 1 else empty[0]
            return onnx_op(**kw)(guarded)
        return wrap
    return op


def run(session, names: list[str], feed: dict) -> list:
    """session.run, raising what one of its PyOps raised (see _guarded_op). The nodes after a
    failed PyOp may fail on its empty outputs: ORT's log of that is muted, the error it
    raises for it still comes out when no PyOp failed."""
    import onnxruntime as ort
    _raised.clear()
    opts = ort.RunOptions()
    opts.log_severity_level = 4  # fatal only
    try:
        out = session.run(names, feed, opts)
    except Exception:
        if not _raised:
            raise
    if _raised:
        e = _raised[0]  # the first: the rest of the run returned at once
        _raised.clear()
        raise e
    return out


def _invoke(op_id, inputs, attrs):
    """onnxruntime-extensions' PyOp hook, returning the outputs as numpy arrays. Its own hook
    (_ocos._on_pyop_invocation) returns `flatten().tolist()`, a Python number per element that
    the C++ side turns back into an array (numpy.ascontiguousarray, then one memcpy): far more
    than a decode step's arithmetic (docs/cpu-runtime.md, "The PyOps bridge"). An array
    takes the same path without the per-element round trip."""
    op = _OPS[op_id]
    try:
        attrs = _attributes(op, attrs)
        held = attrs.pop(ort_held.ATTR)
        out = op.body(*(ort_held.inputs(inputs, held) if held else inputs), **attrs)
    except BaseException as e:  # outside the guarded body (attribute casting, a signal here)
        _raised.append(e)
        out = op.body.empty
    res = [op_id]
    for a in out if isinstance(out, tuple) else (out,):
        res += [a.shape, np.ascontiguousarray(a)]
    return tuple(res)


_CONVERT: dict[str, dict] = {}  # op type -> {attribute: its value from what the hook is given}


def _attributes(op, attrs: dict) -> dict:
    """A call's attributes decoded, in one pass. onnxruntime-extensions hands them over as
    strings; its Opdef.cast_attributes reads `_nativedef.attrs`, a pybind11 property that
    converts the op's whole attribute map to a new dict, up to three times per attribute and
    call (more than most kernels cost: docs/cpu-runtime.md). The converters are made once, at
    register()."""
    conv = _CONVERT[op.op_type]
    return {k: conv[k](v) if k in conv else v for k, v in attrs.items()}


# FLOAT and FLOATS attributes as for_ort writes them (exact decimal strings), and back
_ENCODE = {onnx.AttributeProto.FLOAT: lambda a: repr(a.f),
           onnx.AttributeProto.FLOATS: lambda a: " ".join(map(repr, a.floats))}


@functools.lru_cache(maxsize=4096)
def _floats(v: str) -> np.ndarray:
    """A FLOATS attribute's values, parsed once per distinct string: the PyOps receive the
    attributes again on every call, and parsing 1536 per-channel scales costs more than the
    kernel."""
    a = np.array([float(x) for x in v.split()], np.float32)
    a.flags.writeable = False  # shared between calls
    return a


_DECODE = {"FLOAT": float, "FLOATS": _floats}


def for_ort(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of the graph with the edgeq domain renamed to the PyOps' domain, the int8
    linears made exact (see exact_int8_matmuls) and neighbouring custom ops run as one call
    (cpu_fusion)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    exact_int8_matmuls(out.graph)
    int4_tables_as_bytes(out.graph)
    fp32_custom_nodes(out.graph)
    cpu_fusion.fuse(out.graph)
    for node in out.graph.node:
        if node.domain == DOMAIN:
            node.domain = ORT_DOMAIN
            node.attribute.append(onnx.helper.make_attribute(ort_held.ATTR, ""))  # see ort_held
            for a in node.attribute:
                if a.type in _ENCODE:  # exact, see the module docstring
                    a.CopyFrom(onnx.helper.make_attribute(a.name, _ENCODE[a.type](a)))
    for imp in out.opset_import:
        if imp.domain == DOMAIN:
            imp.domain = ORT_DOMAIN
    if not any(imp.domain == "com.microsoft" for imp in out.opset_import):
        out.opset_import.append(onnx.helper.make_opsetid("com.microsoft", 1))  # MatMulIntegerToFloat
    return out


def fp32_custom_nodes(graph: onnx.GraphProto) -> None:
    """fp16 tensors at the custom nodes cast to fp32 and back. The PyOps take fp32, and that is
    the spec's arithmetic (docs/ops.md): fp16 activations are computed on in fp32 and each fp16
    output is rounded once, so casting the inputs up is exact and casting the outputs down is
    that rounding."""
    f16, f32 = onnx.TensorProto.FLOAT16, onnx.TensorProto.FLOAT
    elem = {v.name: v.type.tensor_type.elem_type
            for v in (*graph.input, *graph.value_info, *graph.output)
            if v.type.tensor_type.elem_type}  # untyped entries say nothing
    elem.update({i.name: i.data_type for i in graph.initializer})
    nodes = []
    for n in graph.node:
        op = BY_NAME.get(n.op_type) if n.domain == DOMAIN else None
        if op is None:
            nodes.append(n)
            continue
        # the output types by the schemas' rule (elem may lack them: see to_onnx)
        types = op.output_types([()] * len(n.input), [elem.get(i) for i in n.input],
                                ELEM.__getitem__)
        for o, (_, t) in zip(n.output, types):
            elem[o] = t
        for k, name in enumerate(n.input):
            if elem.get(name) == f16:
                nodes.append(onnx.helper.make_node("Cast", [name], [f"{name}_f32_{n.name}"], to=f32))
                n.input[k] = f"{name}_f32_{n.name}"
        nodes.append(n)
        for k, name in enumerate(n.output):
            if elem[name] == f16:
                n.output[k] = f"{name}_f32"
                nodes.append(onnx.helper.make_node("Cast", [f"{name}_f32"], [name], to=f16))
    del graph.node[:]
    graph.node.extend(nodes)


def int4_tables_as_bytes(graph: onnx.GraphProto) -> None:
    """The INT4 table of each EdgeqEmbeddingW4 handed to its PyOp as its packed bytes, an INT8
    [vocab, d/2] initializer (PyOps take no INT4): on ONNX Runtime a tied table is then held
    twice, 4-bit both times; the graph on disk and TensorRT's engine hold it once."""
    inits = {t.name: t for t in graph.initializer}
    made = {}
    for n in graph.node:
        if n.op_type != EMBEDDING_W4.name or n.domain != DOMAIN:
            continue
        t = inits.get(n.input[1])
        if t is None or t.data_type != onnx.TensorProto.INT4:
            continue
        if t.name not in made:
            nib = numpy_helper.to_array(t).astype(np.int8).view(np.uint8) & 15  # [vocab, d]
            packed = (nib[:, 0::2] | (nib[:, 1::2] << 4)).view(np.int8)  # edgeq/ops/int4.py
            made[t.name] = numpy_helper.from_array(packed, f"{t.name}_bytes")
            graph.initializer.append(made[t.name])
        n.input[1] = made[t.name].name


def exact_int8_matmuls(graph: onnx.GraphProto) -> None:
    """DQ(x) -> MatMul <- DQ(w) as com.microsoft MatMulIntegerToFloat(x + 128 as uint8, zero
    point 128, w; scale 1 and x_scale * w_scale).

    The graph's pattern is TensorRT's explicit quantization, which TensorRT runs as an int8 GEMM
    with int32 accumulation (the spec). ONNX Runtime instead multiplies the dequantized fp32
    values, whose rounding flips int8 values downstream, so validation runs the spec's
    arithmetic: an exact int32 product, converted once, times the fp32 product of the scales
    (MatMulIntegerToFloat's output is float(acc) * (a_scale * b_scale[n]), one fp32 multiply
    by the product given here, times 1: onnxruntime contrib_ops/cpu/quantization/
    matmul_integer_to_float.cc; one node instead of MatMulInteger -> Cast -> Mul)."""
    # by name, converted only where used (the scales): not a copy of every weight
    consts = {i.name: i for i in graph.initializer}
    consts.update({n.output[0]: n.attribute[0].t
                   for n in graph.node if n.op_type == "Constant" and n.attribute[0].name == "value"})
    producer = {o: n for n in graph.node for o in n.output}
    readers: dict[str, int] = {}
    for n in graph.node:
        for i in n.input:
            readers[i] = readers.get(i, 0) + 1
    graph.initializer.extend([numpy_helper.from_array(np.int16(128), "edgeq_i16_128"),
                              numpy_helper.from_array(np.uint8(128), "edgeq_u8_zero"),
                              numpy_helper.from_array(np.float32(1), "edgeq_f32_one")])
    nodes = []
    for n in graph.node:
        dq = [producer.get(i) for i in n.input] if n.op_type == "MatMul" else []
        if len(dq) == 2 and all(d is not None and d.op_type == "DequantizeLinear" for d in dq) \
                and dq[1].input[0] in consts:
            (xq, xs), (wq, ws) = dq[0].input[:2], dq[1].input[:2]
            x_scale, w_scale = (numpy_helper.to_array(consts[s]) for s in (xs, ws))
            scale = (np.float32(x_scale) * w_scale.astype(np.float32)).astype(np.float32)
            name = n.output[0]
            graph.initializer.append(numpy_helper.from_array(scale, f"{name}_scale"))
            # x as uint8 with zero point 128 (exact: x + 128 in 0..255): ORT's CPU int8 GEMM
            # has a fast u8 x s8 kernel; int8 x int8 takes a slow path (docs/cpu-runtime.md,
            # "No per-step weight work")
            nodes += _as_uint8(xq, f"{name}_xu8", producer, readers, consts)
            nodes.append(onnx.helper.make_node(
                "MatMulIntegerToFloat", [f"{name}_xu8", wq, "edgeq_f32_one", f"{name}_scale",
                                         "edgeq_u8_zero"], [name], domain="com.microsoft"))
        else:
            nodes.append(n)
    del graph.node[:]
    graph.node.extend(nodes)
    drop_unused(graph)


def _as_uint8(xq: str, out: str, producer: dict, readers: dict, consts: dict) -> list:
    """Nodes making `out` = int8 `xq` + 128 as uint8. Where xq is a QuantizeLinear's (zero point
    0) read only by its DequantizeLinear, that QuantizeLinear is made again with zero point 128:
    saturate(round(x / s) + 128) to 0..255 is the int8 value + 128 (ONNX QuantizeLinear), one
    node instead of three."""
    q = producer.get(xq)
    if q is not None and q.op_type == "QuantizeLinear" and readers.get(xq) == 1 \
            and len(q.input) == 3 and q.input[2] in consts \
            and not numpy_helper.to_array(consts[q.input[2]]).any():
        node = onnx.helper.make_node("QuantizeLinear", [q.input[0], q.input[1], "edgeq_u8_zero"],
                                     [out])
        node.attribute.extend(q.attribute)
        return [node]
    i16, u8 = onnx.TensorProto.INT16, onnx.TensorProto.UINT8
    return [onnx.helper.make_node("Cast", [xq], [f"{out}_x16"], to=i16),
            onnx.helper.make_node("Add", [f"{out}_x16", "edgeq_i16_128"], [f"{out}_x16u"]),
            onnx.helper.make_node("Cast", [f"{out}_x16u"], [out], to=u8)]


def drop_unused(graph: onnx.GraphProto) -> None:
    """Remove the nodes and initializers nothing reads any more. ORT runs every node it is
    given: left in, the DequantizeLinear nodes exact_int8_matmuls bypasses would dequantize
    every weight again at each step (two per linear: 192 a step at 24 layers)."""
    if any(a.g.node or a.graphs for n in graph.node for a in n.attribute):
        return  # subgraphs read outer names this walk does not see (exports have none)
    used = {o.name for o in graph.output}
    kept = []
    for n in reversed(graph.node):  # topological order: consumers come after producers
        if any(o in used for o in n.output):
            kept.append(n)
            used.update(n.input)
    del graph.node[:]
    graph.node.extend(reversed(kept))
    inits = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(inits)
