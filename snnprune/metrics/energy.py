"""Compute energy of a model from its operation counts (:func:`~snnprune.metrics.ops.count_ops`):
``E = MACs x E_MAC + SOPs x E_AC``.

A synaptic operation on an event input is one accumulate (AC): the weight is added to the
membrane potential, no multiplication. A MAC is a multiply and an add. The per-operation energies
come from tables, selected by name:

==================== ========== ========= =====================================================
table                E_MAC (pJ) E_AC (pJ) source
==================== ========== ========= =====================================================
``"45nm"``           4.6        0.9       Horowitz, "Computing's energy problem" (ISSCC 2014),
                                          45 nm, 32-bit float: FMult 3.7 + FAdd 0.9; the
                                          default of the SNN literature
``"45nm_fp32"``      4.6        0.9       the same (SpikingJelly ``SimpleEnergyCostConfig.fp32``)
``"45nm_fp16"``      1.5        0.4       Horowitz 2014, 16-bit float (SpikingJelly ``fp16``)
``"45nm_int8"``      0.23       0.03      Horowitz 2014, 8-bit integer (SpikingJelly ``int8``)
``"lemaire_int32"``  3.2        0.1       Lemaire et al., "An analytical estimation of spiking
                                          neural networks energy efficiency" (ICONIP 2022),
                                          32-bit integer: mul 3.1 + add 0.1 (SpikingJelly
                                          ``LemaireEnergyCostConfig``)
==================== ========== ========= =====================================================

The SpikingJelly presets are read from SpikingJelly 2.x's ``op_counter`` when it is installed
(the values above otherwise), so the names stay in step with it. Only the arithmetic is modelled:
SpikingJelly's memory terms (weight and membrane-state traffic in its simple model, SRAM accesses
in Lemaire's) and its hardware simulators (SpikeSim, NeuroMC) have no per-operation form and are
not included; use ``spikingjelly.activation_based.op_counter`` directly for those (they count
pruned weights as dense). A custom table is a mapping ``{"mac": pJ, "ac": pJ}``.

Example::

    >>> from snnprune.metrics.ops import OpsReport, LayerOps, StepOps
    >>> report = OpsReport(layers={
    ...     "stem": LayerOps("stem", "Conv2d", "mac", 9, 9, [StepOps(macs=100, dense_macs=100)]),
    ...     "fc": LayerOps("fc", "Linear", "sop", 4, 8, [StepOps(sops=1000, dense_sops=2000)])})
    >>> e = energy(report)                      # 100 x 4.6 pJ + 1000 x 0.9 pJ
    >>> [round(v, 6) for v in (e.total_pj, e.breakdown_pj["mac"], e.breakdown_pj["ac"], e.layers_pj["fc"])]
    [1360.0, 460.0, 900.0, 900.0]
    >>> round(e.total_j * 1e12, 6)
    1360.0
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from .ops import OpsReport, count_ops

__all__ = ["ENERGY_TABLES", "EnergyReport", "EnergyTable", "energy", "ops_metrics"]


@dataclass(frozen=True)
class EnergyTable:
    """Energy of one MAC and of one accumulate (one SOP), in picojoules, and where they come from."""

    name: str
    mac_pj: float
    ac_pj: float
    source: str = ""


def _tables() -> dict[str, EnergyTable]:
    horowitz = "Horowitz, ISSCC 2014, 45 nm"
    presets = {"fp32": (4.6, 0.9), "fp16": (1.5, 0.4), "int8": (0.23, 0.03)}
    lemaire = (3.1, 0.1)  # (mul, add), 32-bit integer
    try:  # SpikingJelly 2.x ships these presets; read them so the names stay in step
        from spikingjelly.activation_based.op_counter.analytical_energy import (
            LemaireEnergyCostConfig,
        )
        from spikingjelly.activation_based.op_counter.simple_energy import (
            SimpleEnergyCostConfig,
        )

        for key in presets:
            c = getattr(SimpleEnergyCostConfig, key)()
            presets[key] = (c.e_mac_pj, c.e_ac_pj)
        c = LemaireEnergyCostConfig()
        lemaire = (c.e_mul_pj, c.e_add_pj)
    except (ImportError, AttributeError):  # pragma: no cover - older SpikingJelly
        pass
    tables = {f"45nm_{k}": EnergyTable(f"45nm_{k}", mac, ac, f"{horowitz}, {k}") for k, (mac, ac) in presets.items()}
    tables["45nm"] = EnergyTable("45nm", *presets["fp32"], f"{horowitz}, fp32")
    tables["lemaire_int32"] = EnergyTable(
        "lemaire_int32", lemaire[0] + lemaire[1], lemaire[1], "Lemaire et al., ICONIP 2022, 45 nm, int32"
    )
    return tables


#: energy tables by name (see the module docstring)
ENERGY_TABLES: dict[str, EnergyTable] = _tables()


@dataclass
class EnergyReport:
    """Energy of one counted forward: ``total_pj`` (= ``total_j`` x 1e12), ``breakdown_pj``
    (``"mac"``, ``"ac"``), ``layers_pj`` per layer, ``dense_pj`` (every layer's dense MACs at
    E_MAC: the dense ANN-equivalent of the same computation, every time step counted) and the
    ``table`` used."""

    total_pj: float
    breakdown_pj: dict[str, float]
    layers_pj: dict[str, float] = field(default_factory=dict)
    dense_pj: float = 0.0
    table: EnergyTable | None = None

    @property
    def total_j(self) -> float:
        return self.total_pj * 1e-12

    def __str__(self) -> str:
        name = self.table.name if self.table else "?"
        return (f"{self.total_pj / 1e6:.4g} uJ ({name}: MAC {self.breakdown_pj['mac'] / 1e6:.4g} uJ, "
                f"AC {self.breakdown_pj['ac'] / 1e6:.4g} uJ; dense {self.dense_pj / 1e6:.4g} uJ)")


def _table(table: str | EnergyTable | Mapping[str, float]) -> EnergyTable:
    if isinstance(table, EnergyTable):
        return table
    if isinstance(table, str):
        try:
            return ENERGY_TABLES[table]
        except KeyError:
            raise ValueError(f"unknown energy table {table!r}; choose one of {sorted(ENERGY_TABLES)}") from None
    if set(table) != {"mac", "ac"} or any(float(v) < 0 for v in table.values()):
        raise ValueError(f"a custom energy table is {{'mac': pJ, 'ac': pJ}} with non-negative values, got {table!r}")
    return EnergyTable("custom", float(table["mac"]), float(table["ac"]))


def energy(report: OpsReport, table: str | EnergyTable | Mapping[str, float] = "45nm") -> EnergyReport:
    """Energy of the operations in ``report``: MACs x E_MAC + SOPs x E_AC.

    Args:
        report: a :func:`~snnprune.metrics.ops.count_ops` result.
        table: the per-operation energies: a name of :data:`ENERGY_TABLES`, an
            :class:`EnergyTable`, or ``{"mac": pJ, "ac": pJ}``. Default "45nm": 4.6 pJ per MAC,
            0.9 pJ per SOP (Horowitz 2014).

    Returns:
        :class:`EnergyReport`: ``total_pj`` (for the batch), ``breakdown_pj`` (``"mac"``,
        ``"ac"``), ``layers_pj``, ``dense_pj`` (every layer's dense MACs at E_MAC), ``table``.

    Example::

        >>> from snnprune.metrics.ops import OpsReport, LayerOps, StepOps
        >>> r = OpsReport(layers={"fc": LayerOps("fc", "Linear", "sop", 4, 8, [StepOps(sops=10)])})
        >>> round(energy(r, "45nm_int8").total_pj, 6)
        0.3
    """
    t = _table(table)
    layers = {name: lo.macs * t.mac_pj + lo.sops * t.ac_pj for name, lo in report.layers.items()}
    mac, ac = report.macs * t.mac_pj, report.sops * t.ac_pj
    return EnergyReport(
        total_pj=mac + ac,
        breakdown_pj={"mac": mac, "ac": ac},
        layers_pj=layers,
        dense_pj=report.dense_macs * t.mac_pj,
        table=t,
    )


def ops_metrics(model: nn.Module, inputs: Any, *, table: str = "45nm", **count_kwargs: Any) -> dict[str, float]:
    """One counted forward of ``model`` on ``inputs`` (a held-out batch) as flat numbers for a log
    line.

    Args:
        model: what :func:`~snnprune.metrics.ops.count_ops` takes.
        inputs: the batch, as ``model(inputs)`` takes it.
        table: the energy table (a name of :data:`ENERGY_TABLES`).
        **count_kwargs: passed to :func:`~snnprune.metrics.ops.count_ops` (``spiking=``, ``T=``,
            ``batch_size=``, ``rules=``, ...).

    Returns:
        Totals and per-sample SOPs, MACs and dense MACs, the energy (pJ) and its per-sample value,
        the dense energy per sample, ``firing_rate`` (the mean over every spiking neuron; None
        without one), ``T`` and ``batch_size``.

    Example::

        >>> import torch
        >>> m = ops_metrics(torch.nn.Linear(4, 2), torch.rand(3, 4))
        >>> m["macs"], m["macs_per_sample"], round(m["energy_pj_per_sample"], 6), m["firing_rate"]
        (24, 8.0, 36.8, None)
    """
    report = count_ops(model, inputs, **count_kwargs)
    e = energy(report, table)
    n = max(report.batch_size, 1)
    return {
        "sops": report.sops, "macs": report.macs, "dense_macs": report.dense_macs,
        "sops_per_sample": report.sops / n, "macs_per_sample": report.macs / n,
        "dense_macs_per_sample": report.dense_macs / n,
        "energy_pj": e.total_pj, "energy_pj_per_sample": e.total_pj / n, "dense_energy_pj_per_sample": e.dense_pj / n,
        "firing_rate": report.mean_firing_rate, "T": report.T, "batch_size": report.batch_size,
    }
