"""How attribution runs: the device, the numeric precision, the memory layout and the feeding.

These are the levers a practitioner reaches for on a GPU, gathered in one small object that the
executor consults, so that the attribution code itself stays free of them:

* ``device``: where the models run ("cpu", "cuda", "cuda:1").
* ``precision``: "fp32" (default), or "bf16"/"fp16" to run the forward pass under autocast.
  The backward pass follows the forward's dtypes. Maps change slightly, so the precision is part
  of the store key (``store_method``): fp32 and bf16 maps never mix in one affinity.
  `benchmarks/bench.py` reports the cosine agreement of such maps with fp32 ones.
* ``channels_last``: NHWC memory layout for models and inputs (faster convolutions on tensor cores).
* ``workers`` / ``pin_memory``: probe batches prepared by DataLoader worker processes and copied
  from page-locked memory. Batches travel as uint8 (4× fewer bytes than float32) and become
  floats on the device.

Parameter gradients are never computed (`attribution.base.frozen_parameters`) and maps are stored
as float16 (`store`), whatever the runtime.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import ContextManager, Iterator

import torch
from torch import nn

from .errors import InputError
from .probe import ProbeSet

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Runtime:
    device: str = "cpu"
    precision: str = "fp32"
    channels_last: bool = False
    workers: int = 0
    pin_memory: bool | None = None  # None: pin when the device is CUDA

    def __post_init__(self) -> None:
        object.__setattr__(self, "device", str(self.device))
        try:
            torch.device(self.device)
        except (RuntimeError, TypeError) as exc:
            raise InputError(f"device: {self.device!r} is not a torch device ({exc})") from exc
        if self.precision not in PRECISIONS:
            raise InputError(f"precision: expected one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if not isinstance(self.workers, int) or isinstance(self.workers, bool) or self.workers < 0:
            raise InputError(f"workers: expected a whole number >= 0, got {self.workers!r}")

    @property
    def device_type(self) -> str:
        return torch.device(self.device).type

    def store_method(self, method_id: str) -> str:
        """The method part of a store key: maps of another precision are other data."""
        return method_id if self.precision == "fp32" else f"{method_id}@{self.precision}"

    def prepare(self, module: nn.Module) -> nn.Module:
        """The model on the device, in the chosen memory layout."""
        module = module.to(self.device)
        return module.to(memory_format=torch.channels_last) if self.channels_last else module

    def layout(self, x: torch.Tensor) -> torch.Tensor:
        """An input batch in the chosen memory layout."""
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.ndim == 4 else x

    def autocast(self) -> ContextManager:
        """Autocast for the forward pass, or nothing at fp32."""
        dtype = PRECISIONS[self.precision]
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=dtype)

    def batches(self, probe: ProbeSet, start: int, stop: int, batch_size: int) -> Iterator[torch.Tensor]:
        """Probe images start..stop-1 on the device as float (B, 3, S, S) in [0, 1], in batches."""
        if self.workers == 0:
            for begin in range(start, stop, batch_size):
                yield probe.batch(begin, min(begin + batch_size, stop)).to(self.device)
            return
        pin = self.device_type == "cuda" if self.pin_memory is None else self.pin_memory
        loader = torch.utils.data.DataLoader(
            _Uint8Batches(probe, start, stop, batch_size), batch_size=None,
            num_workers=self.workers, pin_memory=pin,
        )
        for raw in loader:
            yield raw.to(self.device, non_blocking=pin).float().div_(255.0)


class _Uint8Batches(torch.utils.data.Dataset):
    """Batches of a probe shard as uint8 tensors: what a worker process hands back."""

    def __init__(self, probe: ProbeSet, start: int, stop: int, batch_size: int) -> None:
        self.probe, self.start, self.stop, self.batch_size = probe, start, stop, batch_size

    def __len__(self) -> int:
        return -(-(self.stop - self.start) // self.batch_size)

    def __getitem__(self, i: int) -> torch.Tensor:
        begin = self.start + i * self.batch_size
        return self.probe.images[begin:min(begin + self.batch_size, self.stop)]
