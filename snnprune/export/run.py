"""Export a trained run (``snnprune export RUN_DIR --format ... --out FILE``).

The model is read back from the run folder (or one checkpoint) as the report reads it
(:func:`snnprune.runs.load_run_model`: the finalized weights, a channel-pruned model
rebuilt from its spec), then written in the format asked for. An example input of the run's data
(one sample: event frames ``[T, 1, C, H, W]`` of counts, or an image ``[1, C, H, W]``) drives the
formats that trace the model.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .nir_export import export_nir
from .onnx_export import export_onnx
from .sparse import export_sparse
from .state_dict import export_state_dict

__all__ = ["FORMATS", "export_run", "example_input"]

FORMATS = ("state_dict", "sparse", "onnx", "nir")


def example_input(recipe, model_kwargs: dict) -> torch.Tensor:
    """One sample shaped like the run's data (random values, seeded)."""
    from ..data import dataset_info

    info = dataset_info(recipe.data.name)
    channels = int(model_kwargs.get("in_channels", info.sample_shape[0]))
    size = model_kwargs.get("input_size")
    height, width = (size, size) if isinstance(size, int) else info.sample_shape[1:]
    generator = torch.Generator().manual_seed(0)
    if info.events:
        return torch.randint(0, 3, (recipe.data.T, 1, channels, height, width), generator=generator).float()
    return torch.rand(1, channels, height, width, generator=generator)


def export_run(path: str | Path, fmt: str, out: str | Path, *, fuse_bn: bool = True, if_node: str = "IF") -> dict:
    """Write the run's model at ``path`` (a run folder or a checkpoint) to ``out`` in ``fmt``.

    Args:
        path: a run folder or one checkpoint of it.
        fmt: one of ``FORMATS``.
        out: the file to write.
        fuse_bn: accepted and ignored: the NIR export always folds batch norm.
        if_node: NIR only: how IF neurons are written (see :func:`~snnprune.export.export_nir`).

    Returns:
        What was written, for the CLI's summary line.
    """
    from ..runs import load_run_model

    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}: use one of {', '.join(FORMATS)}")
    model, info = load_run_model(path)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    summary = {"format": fmt, "out": str(out), "model": info.get("model_name"), "sparsity": info.get("sparsity")}
    if fmt == "state_dict":
        export_state_dict(model, out)
    elif fmt == "sparse":
        result = export_sparse(model, out)
        summary.update(size_bytes=result.size_bytes, dense_bytes=result.dense_bytes, ratio=result.ratio)
    else:
        x = example_input(info["recipe"], info.get("model_kwargs") or {})
        if fmt == "onnx":
            export_onnx(model, x, out)
        else:
            export_nir(model, x, out, if_node=if_node)
    summary["size_bytes"] = out.stat().st_size
    return summary
