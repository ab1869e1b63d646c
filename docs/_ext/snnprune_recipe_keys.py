"""Writes the recipe key reference (:func:`snnprune.recipe.reference.recipe_reference`, read from
the schema and the registries) to ``_generated/recipe-keys.md`` when a build starts; recipes.md
includes it, so every key a recipe may hold is documented without editing a page."""

from pathlib import Path


def _write(app):
    from snnprune.recipe.reference import recipe_reference

    out = Path(app.srcdir) / "_generated" / "recipe-keys.md"
    out.parent.mkdir(exist_ok=True)
    text = recipe_reference()
    if not out.is_file() or out.read_text() != text:  # an unchanged file keeps incremental builds incremental
        out.write_text(text)


def setup(app):
    app.connect("builder-inited", _write)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
