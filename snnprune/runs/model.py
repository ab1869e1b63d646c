"""A run's model as a file and back: :func:`final_payload` (what ``final_model.pt`` and the
trail's files hold) and :func:`load_run_model` (a run folder or one of its files, for report,
compare and export).

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

import copy
from pathlib import Path

from torch import nn

from .._validation import first_line
from ..recipe import Recipe
from .checkpoint import CheckpointError, load_checkpoint
from .folder import BEST, FINAL, LAST, read_recipe, run_history

__all__ = ["final_payload", "load_run_model"]

_ORDER = (FINAL, BEST, LAST)


def final_payload(model: nn.Module, recipe: Recipe, model_kwargs: dict, channel_spec: dict | None = None) -> dict:
    """The plain form of ``model`` as it is now: parametrizations removed, zeros baked in (``model``
    itself untouched).

    Args:
        model: the model under training (parametrized by a :class:`~snnprune.Pruner` or not).
        recipe: the run's recipe (its ``model.name`` and ``model.twin`` are stored).
        model_kwargs: the keyword arguments the model was built with.
        channel_spec: the :class:`~snnprune.channels.ChannelSpec` state of a model whose channels
            were cut (None: the builder's shapes).

    Returns:
        ``model`` (a state_dict that loads strictly into ``create_model(model_name, twin=twin,
        **model_kwargs)``, then the spec), ``model_name``, ``twin``, ``model_kwargs``, ``sparsity``
        (over every conv/linear weight) and ``channel_spec``.
    """
    from ..metrics import sparsity
    from ..pruner import bake

    plain = bake(copy.deepcopy(model))
    return {"model": plain.state_dict(), "model_name": recipe.model.name, "twin": recipe.model.twin,
            "model_kwargs": model_kwargs, "sparsity": sparsity(plain).total, "channel_spec": channel_spec}


def _recipe(data):
    try:
        return Recipe.model_validate(data)
    except ValueError:
        return None


def load_run_model(path: str | Path) -> tuple[nn.Module, dict]:
    """The model of a run folder (its final model, else its best, else its last checkpoint) or of
    one checkpoint file, in eval mode with its pruning baked in.

    Args:
        path: a run folder or one of its files (``final_model.pt``, ``best.pt``, ``last.pt``, a
            trail file).

    Returns:
        ``(model, info)``; ``info``: ``path`` (the file read), ``recipe``, ``model_name``, ``twin``,
        ``model_kwargs``, ``sparsity``, ``history`` (the folder's epochs) and ``test_acc`` (the
        file's own accuracy, where it carries one).

    Raises:
        CheckpointError: no run there, or a file that cannot be read or does not fit its model.
    """
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
    if recipe is None:
        recipe = read_recipe(run_dir)
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
    from ..build import build_model, build_pruner, model_kwargs
    from ..pruner import bake

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
