"""The quantization pipeline, one for the CLI, `edgeq build` and tools/: the recipe's fp
rewrites and calibration, quantization, the quantized folder."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from ..errors import EdgeqError
from ..models.mamba import MambaLM
from . import folder as quant_folder, recipe as recipes
from .calib_stats import Calibration, calibrate, cluster_x, passes
from .quantize import quantize_model, steps
from .rotate import rotate_residual


def unstaged(name: str, steps: int, fn: Callable, *args):
    """Runs a stage as it is: no progress, no timing."""
    return fn(*args)


def calibrate_all(model: MambaLM, windows: torch.Tensor, recipe: recipes.Recipe, batch: int = 8,
                  progress=None) -> tuple[MambaLM, Calibration]:
    """The recipe's fp rewrites (residual Hadamard, sort-and-cluster), then calibration. The
    model returned is the rewritten one, the one the quantized folder describes. Progress
    counts calibration windows over all passes (calib_stats.passes)."""
    recipes.check_supported(model.cfg, recipe)
    if not recipe.quantizes:
        raise EdgeqError(f"recipe {recipe.name} quantizes nothing; export the model as it is, "
                         "or build its bundle with --recipe fp16")
    if recipe.hadamard_in_proj:
        model = rotate_residual(model)
    model, groups = cluster_x(model, windows, recipe, batch, progress)
    cal = calibrate(model, windows, recipe, batch, progress)
    cal.groups = groups
    return model, cal


def run(model: MambaLM, windows: torch.Tensor, recipe: recipes.Recipe, batch: int = 8
        ) -> tuple[MambaLM, dict[str, torch.Tensor], list[dict]]:
    """The pipeline in memory: the rewritten fp model (the folder's config), tensors and
    scales, for what inspects them before or without a folder."""
    model, cal = calibrate_all(model, windows, recipe, batch)
    return (model, *quantize_model(model, cal, recipe))


def quantize_to(folder: Path, model: MambaLM, windows: torch.Tensor, recipe: recipes.Recipe,
                calibration: dict, tokenizer_json: str | None, batch: int = 8,
                stage=unstaged) -> None:
    """calibrate -> quantize -> save: the quantized folder of `model` (calibration: what
    quant.json records of the data). stage(name, steps, fn, *args) runs each stage,
    "calibrate" then "quantize", as fn(*args), which takes progress=callback(n) counting to
    `steps`. The fp model is dropped once rewritten when the caller holds no reference."""
    model, cal = stage("calibrate", passes(model, recipe) * len(windows), calibrate_all, model,
                       windows, recipe, batch)
    tensors, scales = stage("quantize", steps(model.cfg, recipe), quantize_model, model, cal,
                            recipe)
    quant_folder.save(folder, model, tensors, scales, recipe, calibration, tokenizer_json)
