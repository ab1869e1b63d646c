"""Sphinx directives that read snnprune's registries and ``__all__`` lists at build time, so a
method or a public name added to the code appears in the reference without editing a page.

* ``{snnprune-methods}``: a table of :data:`snnprune.reparam.METHODS` (name, class, control,
  summary) and an ``autoclass`` entry for every registered class;
* ``{snnprune-autoall} module``: an entry for every name in ``module.__all__`` (class, function or
  data), optionally leaving out the registered method classes (``:exclude-methods:``) and names
  another public module exports (``:skip-exported-by: mod1 mod2``, documented on its own page).
"""

import importlib
import inspect
import re
import sys

from docutils import nodes
from docutils.parsers.rst import directives
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective


def registered_methods():
    """(name, dotted path, class) of every registered method, sorted by name. A class exported by
    ``snnprune.reparam`` is documented under that path, any other under its defining module."""
    import snnprune.reparam as reparam

    rows = []
    for name, cls in sorted(reparam.METHODS.items()):
        public = getattr(reparam, cls.__name__, None) is cls
        module = "snnprune.reparam" if public else cls.__module__
        rows.append((name, f"{module}.{cls.__qualname__}", cls))
    return rows


def _first_sentence(cls):
    """The docstring's first sentence as plain text (no markup that could break a table cell)."""
    text = " ".join((inspect.getdoc(cls) or "").split("\n\n")[0].split())
    text = re.sub(r":[a-z]+:`~?([^`]*)`", r"\1", text).replace("`", "").replace("|", "/").replace("*", "")
    sentence = re.split(r"(?<!\bal)(?<!\beq)(?<!\beqs)\.\s|: ", text)[0].rstrip(".")
    return sentence or " "


def _defining_module(package, name, obj):
    """The deepest loaded module under ``package`` holding ``obj`` as ``name`` (a package
    re-exports a name its submodule defines)."""
    holders = [m for m, mod in list(sys.modules.items())
               if (m == package or m.startswith(package + ".")) and getattr(mod, name, None) is obj]
    return max(holders, key=lambda m: m.count("."))


class _Generated(SphinxDirective):
    def parse(self, lines):
        node = nodes.section()
        node.document = self.state.document
        self.state.nested_parse(StringList(lines, source=f"<{self.name}>"), self.content_offset, node)
        return node.children


class MethodsDirective(_Generated):
    has_content = False

    def run(self):
        rows = registered_methods()
        lines = [
            ".. list-table:: Registered methods (``snnprune.reparam.METHODS``)",
            "   :header-rows: 1",
            "   :widths: 20 25 15 40",
            "",
            "   * - name",
            "     - class",
            "     - control",
            "     - summary",
        ]
        for name, path, cls in rows:
            lines += [f"   * - ``{name}``", f"     - :class:`~{path}`",
                      f"     - ``{getattr(cls, 'control', '')}``", f"     - {_first_sentence(cls)}"]
        lines.append("")
        for _, path, _ in rows:
            lines += [f".. autoclass:: {path}", ""]
        return self.parse(lines)


class AutoAllDirective(_Generated):
    required_arguments = 1
    option_spec = {"exclude-methods": directives.flag, "skip-exported-by": directives.unchanged}

    def run(self):
        modname = self.arguments[0]
        module = importlib.import_module(modname)
        skip = set()
        if "exclude-methods" in self.options:
            skip |= {id(cls) for _, _, cls in registered_methods()}
        for other in (self.options.get("skip-exported-by") or "").split():
            mod = importlib.import_module(other)
            skip |= {id(getattr(mod, n)) for n in getattr(mod, "__all__", ())}
        lines = []
        for name in module.__all__:
            obj = getattr(module, name)
            if id(obj) in skip:
                continue
            if inspect.isclass(obj):
                kind = "autoclass"
            elif callable(obj):
                kind = "autofunction"
            else:  # data is documented where its ``#:`` comment is: the module that defines it
                lines += [f".. autodata:: {_defining_module(modname, name, obj)}.{name}", "   :no-value:", ""]
                continue
            lines += [f".. {kind}:: {modname}.{name}", ""]
        return self.parse(lines)


def setup(app):
    app.add_directive("snnprune-methods", MethodsDirective)
    app.add_directive("snnprune-autoall", AutoAllDirective)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
