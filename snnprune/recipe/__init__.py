"""Recipes: one declarative TOML file per experiment, validated against one schema.

* :mod:`~snnprune.recipe.schema` — :class:`Recipe`, assembled from the registries when it
  validates (methods, families, threshold schedules);
* :mod:`~snnprune.recipe.methods` — a method's ``pruning`` keys, derived from its class;
* :mod:`~snnprune.recipe.families` — :data:`FAMILIES`: each family's name, keys and rules;
* :mod:`~snnprune.recipe.io` — the shipped recipes, ``--set`` overrides, one-line errors.

pydantic only: importing this package imports no torch; validating a ``pruning`` section reads the
method registry (:data:`snnprune.reparam.METHODS`).

Example::

    >>> r = load_recipe("digits_snn_lats", overrides=["epochs=2"])
    >>> r.family, type(r.pruning).__name__, r.pruning.final_threshold
    ('sparsify_during_training', 'SoftThresholdConfig', 0.2)
"""

from .families import FAMILIES, FamilyKeys, FamilyRecord
from .io import RECIPE_DIR, RecipeError, list_recipes, load_recipe, parse_override, recipe_dir
from .methods import BuildContext, PrunerSpec, PruningMethodConfig, method_config
from .schema import Recipe, pruning_config

__all__ = ["Recipe", "RecipeError", "load_recipe", "recipe_dir", "list_recipes", "parse_override", "RECIPE_DIR",
           "FAMILIES", "FamilyRecord", "FamilyKeys", "PruningMethodConfig", "PrunerSpec", "BuildContext",
           "method_config", "pruning_config"]
