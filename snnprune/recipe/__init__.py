"""Recipes: one declarative TOML file per experiment, validated against one schema.

* :mod:`~snnprune.recipe.schema` — :class:`Recipe`, where every default lives, with one config
  class per pruning method (a discriminated union on ``pruning.method``);
* :mod:`~snnprune.recipe.io` — the shipped recipes, ``--set`` overrides, one-line errors.

pydantic only: importing this package never imports torch's side of snnprune by itself.

Example::

    >>> r = load_recipe("digits_snn_lats", overrides=["epochs=2"])
    >>> r.family, type(r.pruning).__name__, r.pruning.final_threshold
    ('sparsify_during_training', 'SoftThresholdConfig', 0.2)
"""

from .io import RECIPE_DIR, RecipeError, list_recipes, load_recipe, parse_override, recipe_dir
from .schema import (
    FAMILIES,
    METHOD_CONFIGS,
    BuildContext,
    CustomMethodConfig,
    PrunerSpec,
    PruningMethodConfig,
    Recipe,
)

__all__ = ["Recipe", "RecipeError", "load_recipe", "recipe_dir", "list_recipes", "parse_override", "RECIPE_DIR",
           "METHOD_CONFIGS", "FAMILIES", "PruningMethodConfig", "CustomMethodConfig", "PrunerSpec", "BuildContext"]
