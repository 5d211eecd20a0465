"""How attribution runs: the device, the numeric precision, the memory layout and the feeding.

These are the levers a practitioner reaches for on a GPU, gathered in one small object that the
executor consults, so that the attribution code itself stays free of them:

* ``device``: where the models run ("cpu", "cuda", "cuda:1").
* ``precision``: "fp32" (default), or "bf16"/"fp16" to run the forward pass under autocast.
  The backward pass follows the forward's dtypes. Maps change slightly, so the precision is part
  of the store key (`identity.EstimatorId.store_key`): fp32 and bf16 maps never mix in one affinity.
  `benchmarks/` reports the cosine agreement of such maps with fp32 ones.
* ``channels_last``: NHWC memory layout for models and inputs (faster convolutions on tensor cores).
* ``batch_size``: probe images per forward+backward pass.
* ``workers`` / ``pin_memory``: probe batches prepared by DataLoader worker processes and copied
  from page-locked memory. Batches travel as uint8 (4× fewer bytes than float32) and become
  floats on the device.
* ``pass_memory``: what one forward+backward pass may keep for its backward (the tensors autograd
  saves, `SavedBytes`), which grows with its images: a batch that would keep more is split into
  passes of fewer images (`pass_images`), so that a run's peak memory does not grow with the batch
  size or the models' sizes. On the CPU it is bounded by default (`CPU_PASS_MEMORY`); on an
  accelerator the batch size, chosen for its memory, decides.

The runtime moves tensors and modules only; it knows nothing of store keys. Parameter gradients
are never computed (`attribution.base.frozen_parameters`) and maps are stored as float16
(`store`), whatever the runtime.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, ContextManager, Iterator

import torch
from torch import nn

from ...errors import InputError, check_int
from ...identity import PRECISIONS
from ...options import option
from ...probe import ProbeSet

_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
"""The dtype of each precision other than fp32 (`identity.PRECISIONS` names them all)."""

CPU_PASS_MEMORY = 1 << 30
"""Bytes a pass may keep for its backward on the CPU unless `Runtime.pass_memory` says otherwise. What
real models keep per image, so how many images a pass takes, and the run's peak and time against
unbounded passes are measured by benchmarks/memory.py (benchmarks/RESULTS.md, section 11)."""


@dataclass(frozen=True)
class Runtime:
    """How a model runs: device, precision, memory layout, batches and what a pass may keep.

    The module docstring says more of each field. An immutable value, checked when it is made; the CLI's
    options are its fields (`options.add_options`).

    Parameters
    ----------
    device : str, default "cpu"
        A torch device name ("cpu", "cuda", "cuda:1").
    precision : str, default "fp32"
        "fp32", "bf16" or "fp16" (autocast of the forward pass).
    channels_last : bool, default False
        NHWC memory layout for models and inputs.
    workers : int, default 0
        DataLoader worker processes (0: batches are made in this process).
    pin_memory : bool or None, default None
        Page-locked host memory for the batches; None pins when the device is CUDA.
    pass_memory : int or None, default None
        Bytes one forward+backward pass may keep for its backward; None: `CPU_PASS_MEMORY` on the
        CPU, no bound on other devices.
    batch_size : int, default 32
        Probe images per forward+backward pass (a batch that would keep more than `pass_memory`
        runs in passes of fewer images).

    Raises
    ------
    InputError
        A field out of its range or of the wrong type; the message names the field.
    """

    device: str = option("cpu", "torch device, e.g. cuda")
    precision: str = option("fp32", "autocast precision of the forward pass, bf16/fp16 on GPUs", choices=PRECISIONS)
    channels_last: bool = option(False, "NHWC memory layout (faster on GPUs)")
    workers: int = option(0, "data-loading worker processes")
    pin_memory: bool | None = None  # None: pin when the device is CUDA
    pass_memory: int | None = option(
        None, "memory one forward+backward pass may keep for its backward; larger batches run in passes of fewer "
              f"images (default {CPU_PASS_MEMORY >> 20} on the CPU, no bound on GPUs)",
        metavar="MB", scale=1 << 20, type=float)
    batch_size: int = option(32, "probe images per forward+backward pass")

    def __post_init__(self) -> None:
        object.__setattr__(self, "device", str(self.device))
        try:
            torch.device(self.device)
        except (RuntimeError, TypeError) as exc:
            raise InputError(f"device: {self.device!r} is not a torch device ({exc})") from exc
        if self.precision not in PRECISIONS:
            raise InputError(f"precision: expected one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if not isinstance(self.channels_last, bool):
            raise InputError(f"channels_last: expected True or False, got {self.channels_last!r}")
        if self.pin_memory is not None and not isinstance(self.pin_memory, bool):
            raise InputError(f"pin_memory: expected True, False or None, got {self.pin_memory!r}")
        object.__setattr__(self, "workers", check_int(self.workers, "workers", minimum=0))
        object.__setattr__(self, "pass_memory", check_int(self.pass_memory, "pass_memory", optional=True))
        object.__setattr__(self, "batch_size", check_int(self.batch_size, "batch_size"))

    @classmethod
    def of(cls, runtime: "Runtime | str | torch.device") -> "Runtime":
        """A runtime as is, or the default runtime on a device.

        Parameters
        ----------
        runtime : Runtime or str or torch.device
            A runtime, returned unchanged, or a device name for a runtime with every other field at its default.

        Returns
        -------
        Runtime
            The runtime.

        Raises
        ------
        InputError
            A device name torch does not know.
        """
        return runtime if isinstance(runtime, Runtime) else cls(device=str(runtime))

    @property
    def device_type(self) -> str:
        """The device's type: "cpu", "cuda", ..."""
        return torch.device(self.device).type

    def prepare(self, module: nn.Module) -> nn.Module:
        """The model on the device, in the chosen memory layout.

        Parameters
        ----------
        module : nn.Module
            The model (moved in place, as `nn.Module.to` does).

        Returns
        -------
        nn.Module
            The module on `device`, channels-last when `channels_last` is set.
        """
        module = module.to(self.device)
        return module.to(memory_format=torch.channels_last) if self.channels_last else module

    def layout(self, x: torch.Tensor) -> torch.Tensor:
        """An input batch in the chosen memory layout.

        Parameters
        ----------
        x : torch.Tensor
            An input batch; only a 4-d (B, C, H, W) tensor changes layout.

        Returns
        -------
        torch.Tensor
            `x`, channels-last when `channels_last` is set and `x` is 4-d.
        """
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.ndim == 4 else x

    def inputs(self, transform: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor) -> torch.Tensor:
        """Probe images as a model's input: on the device, through its T_i, in the chosen layout.

        Parameters
        ----------
        transform : callable
            The model's input transform T_i, tensor to tensor.
        images : torch.Tensor
            A batch of probe images, float (B, 3, S, S) in [0, 1].

        Returns
        -------
        torch.Tensor
            The transformed batch on `device`, in the chosen layout.
        """
        return self.layout(transform(images.to(self.device)))

    def autocast(self) -> ContextManager:
        """Autocast for the forward pass, or nothing at fp32.

        Returns
        -------
        ContextManager
            ``torch.autocast`` at the precision's dtype on the device's type, or a null context at fp32.
        """
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=_AUTOCAST_DTYPES[self.precision])

    @property
    def pass_budget(self) -> int | None:
        """The bytes a pass may keep for its backward (`pass_memory`, or its default here), None: no bound."""
        if self.pass_memory is not None:
            return self.pass_memory
        return CPU_PASS_MEMORY if self.device_type == "cpu" else None

    def pass_images(self, n: int, bytes_per_image: float) -> int:
        """How many of `n` images one pass takes, given what an image keeps for the backward (`SavedBytes`).

        Parameters
        ----------
        n : int
            The images of the batch.
        bytes_per_image : float
            What one image keeps for the backward, in bytes (0 or less: unknown, no split).

        Returns
        -------
        int
            Between 1 and `n`: as many images as `pass_budget` holds, `n` when there is no bound.
        """
        budget = self.pass_budget
        if budget is None or bytes_per_image <= 0:
            return n
        return max(1, min(n, int(budget // bytes_per_image)))

    def batches(self, probe: ProbeSet, start: int, stop: int, batch_size: int) -> Iterator[torch.Tensor]:
        """Probe images start..stop-1 on the device as float (B, 3, S, S) in [0, 1], in batches.

        With `workers` > 0 the batches are made by DataLoader worker processes and travel as uint8.

        Parameters
        ----------
        probe : ProbeSet
            The probe set.
        start : int
            The first image's index.
        stop : int
            One past the last image's index.
        batch_size : int
            Images per batch (the last may hold fewer).

        Yields
        ------
        torch.Tensor
            A float (B, 3, S, S) batch in [0, 1] on `device`.
        """
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


class SavedBytes:
    """While active, counts the bytes of the tensors that autograd saves for backward.

    Each storage counts once, and the module's own parameters and buffers not at all (they are held
    anyway): what a forward+backward pass keeps at its peak beyond the model, in proportion to its images.
    ::

        with SavedBytes(model.module) as saved:
            maps = compute_maps(model, images, methods, size)
        saved.bytes

    Parameters
    ----------
    module : nn.Module
        The model whose parameters and buffers are left out of the count.

    Attributes
    ----------
    bytes : int
        The bytes counted so far.
    """

    def __init__(self, module: nn.Module) -> None:
        self._own = {t.untyped_storage().data_ptr() for t in (*module.parameters(), *module.buffers())}
        self._seen: set[int] = set()
        self.bytes = 0
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)

    def __enter__(self) -> "SavedBytes":
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._hooks.__exit__(*exc)
        self._seen.clear()

    def _pack(self, t: torch.Tensor) -> torch.Tensor:
        try:
            storage = t.untyped_storage()
        except (RuntimeError, NotImplementedError):  # a tensor without storage (sparse, a subclass): not counted
            return t.detach()
        ptr = storage.data_ptr()
        if ptr not in self._seen and ptr not in self._own:
            self._seen.add(ptr)
            self.bytes += storage.nbytes()
        # A detached alias (same storage): a node that saves its own output and got the tensor itself
        # would hold the tensor that holds the node, a cycle on autograd's C++ side that the garbage
        # collector cannot see. A backward breaks it; a branch it never reaches (ε-LRP holds an
        # excitation gate constant) would keep its graph, and what the graph holds, alive.
        return t.detach()


class _Uint8Batches(torch.utils.data.Dataset):
    """Batches of a probe shard as uint8 tensors: what a worker process hands back."""

    def __init__(self, probe: ProbeSet, start: int, stop: int, batch_size: int) -> None:
        self.probe, self.start, self.stop, self.batch_size = probe, start, stop, batch_size

    def __len__(self) -> int:
        return -(-(self.stop - self.start) // self.batch_size)

    def __getitem__(self, i: int) -> torch.Tensor:
        begin = self.start + i * self.batch_size
        return self.probe.images[begin:min(begin + self.batch_size, self.stop)]


@contextlib.contextmanager
def kept_torch_state() -> Iterator[None]:
    """Restore torch's process-wide settings on exit.

    The settings: default dtype, grad mode, the deterministic algorithms flag (and its warn-only mode)
    and the number of CPU threads. Loading a model runs its author's code, which may change these (a constructor that calls
    ``torch.set_default_dtype(torch.float64)`` made every later model of a run fail); each model is
    loaded and run inside this context so that it cannot poison the next one.

    Yields
    ------
    None
        Control, inside the context.
    """
    dtype, grad = torch.get_default_dtype(), torch.is_grad_enabled()
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    threads = torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_default_dtype(dtype)
        torch.set_grad_enabled(grad)
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
        if torch.get_num_threads() != threads:  # setting it is not free (thread pools are rebuilt)
            torch.set_num_threads(threads)
