"""Bridges to training frameworks, each an optional extra imported only when used:
:mod:`snnprune.integrations.lightning` (PyTorch Lightning, ``pip install 'snnprune[lightning]'``).
"""
