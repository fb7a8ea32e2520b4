"""Quamba2's Hadamard on the residual stream (as in QuaRot): the fp model rewritten so the
residual lives in a rotated basis h' = h H^T, with H the orthonormal Hadamard of d_model. The
RMSNorm weights fold into the matrices that follow them (in_proj, lm_head), which then see
rotated inputs: outliers of single channels spread over all of them, which helps the int8
in_proj input and the 4-bit weights. The rotated model computes the same logits."""
from __future__ import annotations

from dataclasses import replace

import torch

from ..errors import EdgeqError
from ..models.mamba import MambaLM
from ..ops import hadamard


@torch.no_grad()
def rotate_residual(model: MambaLM) -> MambaLM:
    """A rotated copy. RMSNorm is rotation invariant without its weight (mean(x^2) is), so
    norm(h') = norm(h) H^T; then in_proj' = W_in diag(w) H^T, out_proj' = H W_out (and its bias),
    embedding' = E H^T, lm_head' = W_head diag(w_f) H^T. The head unties from the embedding."""
    cfg = model.cfg
    if not hadamard.supported(cfg.d_model):
        raise EdgeqError(f"d_model {cfg.d_model} has no Hadamard transform (needs K * 2^m, K in "
                         "1, 12, 20, 28); this recipe rotates the residual stream")
    H = hadamard.matrix(cfg.d_model)  # fp64
    out = MambaLM(replace(cfg, tie_embeddings=False), ops=model.backbone.layers[0].mixer.ops_name)
    out.load_state_dict({k: v for k, v in model.state_dict().items() if k != "lm_head.weight"},
                        strict=False)

    def rot(w, left=False):  # w H^T, or H w
        w = w.double()
        return ((H @ w) if left else (w @ H.T)).float()

    out.backbone.embeddings.weight.copy_(rot(model.backbone.embeddings.weight))
    for src, dst in zip(model.backbone.layers, out.backbone.layers):
        w = src.norm.weight.double()
        dst.mixer.in_proj.weight.copy_(rot(src.mixer.in_proj.weight.double() * w))
        dst.norm.weight.fill_(1.0)
        dst.mixer.out_proj.weight.copy_(rot(src.mixer.out_proj.weight, left=True))
        if src.mixer.out_proj.bias is not None:
            dst.mixer.out_proj.bias.copy_(rot(src.mixer.out_proj.bias[:, None], left=True)[:, 0])
    w_f = model.backbone.norm_f.weight.double()
    out.lm_head.weight.copy_(rot(model.lm_head.weight.double() * w_f))
    out.backbone.norm_f.weight.fill_(1.0)
    return out.eval()
