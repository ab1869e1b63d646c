"""The face of runs: the console sink of training, result tables.

* :mod:`~snnprune.report.console` — :class:`ConsoleSink` (progress bar, per-epoch table),
  :func:`make_console`;
* :mod:`~snnprune.report.summary` — :func:`print_summary`, :func:`method_label`;
* :mod:`~snnprune.report.runs` — ``snnprune report`` and ``compare``: per-layer costs, runs side by side;
* :mod:`~snnprune.report.plots` — the PNGs of a run folder (:class:`PlotSink`) and of a comparison.
"""

from .console import EPOCH_COLUMNS, ConsoleSink, make_console
from .plots import PlotSink
from .summary import method_label, print_summary

__all__ = ["ConsoleSink", "EPOCH_COLUMNS", "PlotSink", "make_console", "method_label", "print_summary"]
