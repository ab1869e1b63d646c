"""Export a pruned (or any) model in four formats; each works on a live model under pruning
(finalized on a deep copy, the model keeps training).

* :func:`export_state_dict` — the plain finalized weights (``torch.save``), loading strictly into
  the original architecture;
* :func:`export_sparse` / :func:`load_sparse` — a compressed file (bitmask + non-zero values)
  whose size shrinks with sparsity, with its size against the dense state_dict
  (:class:`ExportInfo`);
* :func:`export_onnx` — ONNX via torch's dynamo exporter, checked by ``onnx.checker`` and
  onnxruntime; ANNs and multi-step SpikingJelly SNNs;
* :func:`export_nir` — NIR via SpikingJelly's ``nir_exchange`` for spiking nets it maps; a clear
  ``ValueError`` names the first layer that does not map (``fuse_bn=True`` folds BatchNorm).
"""

from ._common import ExportError
from .nir_export import export_nir, first_unmapped, fuse_conv_bn
from .onnx_export import export_onnx
from .sparse import ExportInfo, export_sparse, load_sparse
from .state_dict import export_state_dict

__all__ = [
    "ExportError",
    "ExportInfo",
    "export_nir",
    "export_onnx",
    "export_sparse",
    "export_state_dict",
    "first_unmapped",
    "fuse_conv_bn",
    "load_sparse",
]
