"""Read a trained model back from a run folder or one of its files, for report, compare and export.

* ``final_model.pt`` (the plain, finalized model): ``create_model(model_name, twin=..., **model_kwargs)``
  (then the saved ``channel_spec``, if the run removed channels), strict load;
* ``last.pt`` / ``best.pt`` (a checkpoint under training): the model and the pruner are rebuilt
  from the recipe saved in the checkpoint, the parametrized state is loaded, and the pruning is
  baked in, exactly as finalize would.

Every file is read with ``torch.load(weights_only=True)`` (:func:`~.checkpoint.load_checkpoint`):
a file crafted to run code, a truncated or an edited one is one :class:`~.checkpoint.CheckpointError`
naming it.
"""

from __future__ import annotations

import json
from pathlib import Path

from torch import nn

from .._validation import first_line
from .checkpoint import CheckpointError, load_checkpoint

__all__ = ["load_run_model", "run_history"]

_ORDER = ("final_model.pt", "best.pt", "last.pt")


def run_history(run_dir: Path) -> list[dict]:
    """The per-epoch lines of ``metrics.jsonl`` (an empty list when there is none)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    lines = []
    for raw in path.read_text().splitlines():
        try:
            entry = json.loads(raw)
        except json.JSONDecodeError:
            continue
        if entry.get("kind") == "epoch":
            lines.append(entry)
    return lines


def _recipe(data):
    from ..recipe import Recipe

    try:
        return Recipe.model_validate(data)
    except ValueError:
        return None


def load_run_model(path: str | Path) -> tuple[nn.Module, dict]:
    """``(model, info)`` of a run folder (its final model, else its best, else its last
    checkpoint) or of one checkpoint file. ``info``: recipe, model_name, twin, model_kwargs,
    sparsity, history, path."""
    from .. import models as snn_models
    from ..metrics import sparsity

    path = Path(path)
    run_dir = path if path.is_dir() else path.parent
    if path.is_dir():
        found = next((path / name for name in _ORDER if (path / name).is_file()), None)
        if found is None:
            raise CheckpointError(f"{path} holds no run: none of {', '.join(_ORDER)} is there")
        path = found
    payload = load_checkpoint(path)
    recipe = _recipe(payload["recipe"]) if isinstance(payload.get("recipe"), dict) else None
    if recipe is None and (run_dir / "recipe.json").is_file():
        try:
            recipe = _recipe(json.loads((run_dir / "recipe.json").read_text()))
        except json.JSONDecodeError:
            recipe = None
    if "model_name" in payload:  # a plain, finalized model
        try:
            name, twin, kwargs = payload["model_name"], bool(payload.get("twin", False)), dict(payload["model_kwargs"])
            model = snn_models.create_model(name, twin=twin, **kwargs)
            if payload.get("channel_spec") is not None:
                from ..channels import ChannelSpec

                model = ChannelSpec.from_state(payload["channel_spec"]).apply(model)
            _load(model, payload["model"], path)
        except CheckpointError:
            raise
        except (KeyError, TypeError, ValueError) as exc:  # an edited file: an entry missing or of another type
            reason = first_line(exc)
            raise CheckpointError(f"cannot read checkpoint {path}: not a whole final model ({reason})") from None
    elif recipe is not None and "model" in payload:
        model, name, twin, kwargs = _from_checkpoint(recipe, payload, path)
    else:
        raise CheckpointError(f"cannot read checkpoint {path}: not a snnprune run file")
    model.eval()
    info = {
        "path": str(path),
        "recipe": recipe,
        "model_name": name,
        "twin": twin,
        "model_kwargs": kwargs,
        "sparsity": sparsity(model).total,
        "history": run_history(run_dir),
        # the file's own accuracy where it carries one (a trail checkpoint: not the run's last epoch)
        "test_acc": payload.get("test_acc"),
    }
    return model, info


def _from_checkpoint(recipe, payload: dict, path: Path):
    from .. import data as snn_data
    from ..pruner import bake
    from .build import build_model, build_pruner, model_kwargs

    info = snn_data.dataset_info(recipe.data.name)
    kwargs = model_kwargs(recipe, info)
    model = build_model(recipe, info)
    family = payload.get("family") or {}
    if isinstance(family, dict) and family.get("channel_spec") is not None:
        from ..channels import ChannelSpec

        model = ChannelSpec.from_state(family["channel_spec"]).apply(model)
    build_pruner(recipe, model, steps_per_epoch=1, total_steps=max(recipe.epochs, 1))
    _load(model, payload["model"], path)
    return bake(model), recipe.model.name, recipe.model.twin, kwargs


def _load(model: nn.Module, state: dict, path: Path) -> None:
    try:
        model.load_state_dict(state)
    except (RuntimeError, KeyError) as exc:
        raise CheckpointError(f"checkpoint {path} does not fit its model: {first_line(exc)}") from None
