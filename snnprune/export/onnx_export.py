"""ONNX export through torch's dynamo exporter, checked by onnx.checker and onnxruntime.

ANNs export as they are. Multi-step SpikingJelly SNNs export too: SpikingJelly 2.0 neurons are
``torch.library`` custom ops, which only the dynamo exporter decomposes (the legacy TorchScript
exporter fails on them), and the time loop is unrolled for the example's T. Pruned zeros are stored
as dense initializers: an ONNX file does not shrink with unstructured sparsity (use
:func:`~snnprune.export.export_sparse` for that).
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import torch
from torch import nn

from ._common import ExportError, plain_copy

__all__ = ["export_onnx"]

_PROTOBUF_LIMIT = 2**31 - 2**26  # stay clear of protobuf's 2 GB: larger models use external data


def _first_line(exc: BaseException) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def _root_cause(exc: BaseException) -> str:
    """The first line of the innermost exception in the chain (the exporter wraps the real cause,
    e.g. "No ONNX function found for aten.linalg_eig", in a generic "Failed to convert" error)."""
    seen, chain = set(), [exc]
    while chain[-1].__cause__ is not None or chain[-1].__context__ is not None:
        nxt = chain[-1].__cause__ or chain[-1].__context__
        if id(nxt) in seen:
            break
        seen.add(id(nxt))
        chain.append(nxt)
    outer, inner = _first_line(chain[0]), _first_line(chain[-1])
    return outer if inner == outer else f"{inner} (while: {outer})"


def _check_exportable(model: nn.Module) -> None:
    from ..models.encoders import PoissonEncoder

    for name, module in model.named_modules():
        if isinstance(module, PoissonEncoder):
            raise ExportError(
                f"ONNX export: layer {name!r} is a Poisson encoder, which draws random numbers on "
                "every call; build the model with encoder='direct' or encoder=None and feed event frames"
            )


def export_onnx(
    model: nn.Module,
    example_input: torch.Tensor,
    path: str | os.PathLike,
    *,
    opset_version: int = 18,
    atol: float = 1e-4,
    check: bool = True,
) -> Path:
    """Export the finalized ``model`` (a deep copy in eval mode) to ONNX at ``path``; return the path.

    The file is written by ``torch.onnx.export(..., dynamo=True)``, then (``check=True``) validated
    by ``onnx.checker.check_model`` and run by onnxruntime on ``example_input``, whose outputs must
    match the model's within ``atol``: every output of a model that returns several (snnTorch's
    usual ``(spk_rec, mem_rec)``), each named ``output_<i>`` in the file. Any failure raises
    :class:`ExportError` naming the cause (the exporter's own error, the checker's, or the output
    and its largest difference).

    Args:
        model: the network (a model under pruning is finalized on a deep copy).
        example_input: one batch the model takes; it fixes the exported shapes.
        path: the ``.onnx`` file to write.
        opset_version: the ONNX opset.
        atol: the largest difference allowed between onnxruntime's outputs and the model's.
        check: run ``onnx.checker`` and onnxruntime on the file.

    Returns:
        The path written.

    Example:
        >>> import tempfile, torch
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
        >>> export_onnx(net, torch.rand(3, 4), tempfile.mkdtemp() + "/net.onnx").suffix
        '.onnx'
    """
    if not isinstance(example_input, torch.Tensor):
        raise TypeError(f"example_input must be a tensor, got {type(example_input).__name__}")
    _check_exportable(model)
    try:
        import onnxscript  # noqa: F401  (the dynamo exporter needs it)
    except ImportError as exc:
        raise ExportError(
            f"ONNX export needs the export extra: pip install 'snnprune[export]' ({_first_line(exc)})"
        ) from exc
    plain = plain_copy(model)
    example_input = example_input.detach()
    with torch.no_grad():
        expected = _flat_outputs(plain(example_input))
    output_names = ["output"] if len(expected) == 1 else [f"output_{i}" for i in range(len(expected))]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    large = sum(p.numel() * p.element_size() for p in plain.state_dict().values()) > _PROTOBUF_LIMIT
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                plain, (example_input,), str(path), dynamo=True, opset_version=opset_version,
                external_data=large, verbose=False, input_names=["input"], output_names=output_names, verify=False,
            )
    except Exception as exc:  # the exporter raises many types; name the first line of its cause
        raise ExportError(f"ONNX export of {type(model).__name__} failed: {_root_cause(exc)}") from exc
    if check:
        _verify(path, example_input, expected, atol)
    return path


def _flat_outputs(output) -> list[torch.Tensor]:
    """The model's output tensors in the order the ONNX graph lists them (nested tuples, lists and
    dicts flattened depth first, as the exporter does)."""
    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, dict):
        output = list(output.values())
    if isinstance(output, (tuple, list)):
        return [t for item in output for t in _flat_outputs(item)]
    raise ExportError(f"ONNX export: the model returns a {type(output).__name__}; return tensors (or tuples of them)")


def _verify(path: Path, example_input: torch.Tensor, expected: list[torch.Tensor], atol: float) -> None:
    """Check the file with onnx.checker, run it in onnxruntime and compare every output."""
    import onnx
    import onnxruntime as ort

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as exc:
        raise ExportError(f"the exported ONNX file {path} fails onnx.checker: {_first_line(exc)}") from exc
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        outputs = session.run(None, {session.get_inputs()[0].name: example_input.cpu().numpy()})
    except Exception as exc:
        raise ExportError(f"onnxruntime cannot run the exported file {path}: {_first_line(exc)}") from exc
    if len(outputs) != len(expected):
        raise ExportError(f"onnxruntime gives {len(outputs)} outputs, the model {len(expected)}")
    for i, (got, want) in enumerate(zip(outputs, expected)):
        which = "output" if len(expected) == 1 else f"output {i}"
        got, want = torch.from_numpy(got), want.detach().cpu()
        if got.shape != want.shape:
            raise ExportError(
                f"onnxruntime {which} has shape {tuple(got.shape)}, the model's {tuple(want.shape)}"
            )
        diff = (got.double() - want.double()).abs().max().item() if got.numel() else 0.0
        if not diff <= atol:
            raise ExportError(f"onnxruntime {which} differs from the model's by up to {diff:.3g} (> atol {atol:g})")
