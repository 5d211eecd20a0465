"""Running units of work: one model × one shard of the probe set → stored attribution maps.

`run_unit` is the whole job of a unit and needs nothing but the unit, the model, the probe set
and the store, so a distributed executor (Ray, a job array) can ship `WorkUnit.to_dict()` to
other processes and call it there against a shared store. `LocalExecutor` runs them in this
process, loading each model once.
"""

from __future__ import annotations

from typing import Sequence

import torch
from tqdm import tqdm

from .attribution import AttributionMethod, attribute
from .models.sources import LoadedModel
from .probe import ProbeSet
from .store import MapStore, ShardInfo, WorkUnit


def compute_maps(
    model: LoadedModel,
    images: torch.Tensor,
    method: AttributionMethod,
    probe_size: int,
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """Maps of a batch of probe images (B, 3, S, S) in [0, 1]: T_i, attribution, T_i⁻¹."""
    x = model.transform(images.to(device))
    maps = attribute(model.module, x, method, encoder=model.encoder, model_name=model.name)
    return model.transform.inverse(maps.detach(), probe_size).float().cpu()


def run_unit(
    unit: WorkUnit,
    model: LoadedModel,
    probe: ProbeSet,
    method: AttributionMethod,
    store: MapStore,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
) -> ShardInfo:
    """Compute one shard's maps in batches and write them to the store in one atomic step."""
    parts = [
        compute_maps(model, probe.batch(start, min(start + batch_size, unit.stop)), method, probe.size, device)
        for start in range(unit.start, unit.stop, batch_size)
    ]
    return store.write(unit, torch.cat(parts))


class LocalExecutor:
    """Runs the units of one model in this process, with a progress bar over its shards."""

    def __init__(self, batch_size: int = 32, device: str | torch.device = "cpu", progress: bool = True) -> None:
        self.batch_size = batch_size
        self.device = device
        self.progress = progress

    def run(
        self,
        model: LoadedModel,
        method: AttributionMethod,
        units: Sequence[WorkUnit],
        probe: ProbeSet,
        store: MapStore,
    ) -> list[ShardInfo]:
        bar = tqdm(units, desc=f"{model.name} · {method.name}", unit="shard", leave=False, disable=not self.progress)
        return [run_unit(u, model, probe, method, store, self.batch_size, self.device) for u in bar]
