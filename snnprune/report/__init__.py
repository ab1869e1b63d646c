"""The face of runs: the console sink of training, result tables.

* :mod:`~snnprune.report.console` — :class:`ConsoleSink` (progress bar, per-epoch table),
  :func:`make_console`;
* :mod:`~snnprune.report.summary` — :func:`print_summary`, :func:`method_label`.
"""

from .console import EPOCH_COLUMNS, ConsoleSink, make_console
from .summary import method_label, print_summary

__all__ = ["ConsoleSink", "EPOCH_COLUMNS", "make_console", "method_label", "print_summary"]
