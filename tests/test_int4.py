import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from edgeq.ops import int4


def test_pack_roundtrip_and_onnx_order():
    q = torch.randint(-8, 8, (7, 32), generator=torch.Generator().manual_seed(0), dtype=torch.int8)
    p = int4.pack(q)
    assert p.dtype == torch.uint8 and p.shape == (7, 16)
    assert torch.equal(int4.unpack(p), q)
    # the same bytes are an ONNX INT4 tensor of the same values
    t = onnx.TensorProto(data_type=onnx.TensorProto.INT4, dims=[7, 32], raw_data=p.numpy().tobytes())
    np.testing.assert_array_equal(numpy_helper.to_array(t).astype(np.int8), q.numpy())


def test_pack_refuses_out_of_range_and_odd():
    with pytest.raises(ValueError):
        int4.pack(torch.tensor([[8, 0]], dtype=torch.int8))
    with pytest.raises(ValueError):
        int4.pack(torch.zeros(2, 3, dtype=torch.int8))
