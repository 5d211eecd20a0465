"""Capture a model's encoder output R by module name, and stop the forward pass there.

Python modules (``nn.Module``): a forward hook on the named module records its output. With
``stop=True`` the hook then raises a private exception that `EncoderTap` catches, so the layers after
R (decoders, heads) never run. Hooks registered on that module by other code before the call (e.g.
LRP rules) run before ours, so R is the output as they left it. Full *backward* hooks on the encoder
module itself do not see R's gradient (torch attaches them after forward hooks run); put such hooks
on the encoder's children.

TorchScript modules (``torch.jit.load``): torch 2.13 refuses forward hooks on them ("register_forward_hook
is not supported on ScriptModules"), on the top module and on submodules alike. So for TorchScript an
``encoder`` name means "call that submodule directly on the model input": it must be a prefix of the
network, i.e. each module on the path is called on its parent's own input (checked in the TorchScript
graph, so a wrong name fails early instead of computing the wrong R). Otherwise export the encoder
itself as the TorchScript file and leave ``encoder`` unset, which takes the whole output as R.

Layouts: R is compared and attributed as a map (B, C, H, W). Transformers give something else, so their
loaders declare how R is laid out, as plain data, and the tap turns it into a map, in this one place:
`TokenGrid` (ViT, DeiT: (B, prefix + h·w, D) tokens; the class / distillation / register tokens are
dropped and the patch tokens become (B, D, h, w)) and `ChannelsLast` (Swin: (B, H, W, C) → (B, C, H, W)).
mean(R) is then the mean over the patch tokens, and the baselines see a spatial map like a CNN's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from modelspace.errors import ModelLoadError, ZooError, did_you_mean


class _StopForward(BaseException):
    """Raised by the capture hook to end the forward pass after R.

    A BaseException, not an Exception, so that model code wrapping its forward in
    ``try: ... except Exception`` cannot swallow it.
    """

    def __init__(self, token: object):
        super().__init__("encoder output captured")
        self.token = token


def find_module(module: nn.Module, name: str) -> nn.Module | None:
    """The submodule at dotted path ``name``, or None.

    Walks ``named_children``, which, unlike ``get_submodule``, also works on TorchScript modules.

    Parameters
    ----------
    module : nn.Module
        The model (a Python or TorchScript module).
    name : str
        A dotted path such as ``"layer4"`` or ``"encoder.stages.1"``; ``""`` is ``module`` itself.

    Returns
    -------
    nn.Module or None
        The submodule, or None when a part of the path names no child.
    """
    for part in name.split(".") if name else []:
        module = dict(module.named_children()).get(part)
        if module is None:
            return None
    return module


def resolve_module(module: nn.Module, name: str, model_name: str = "model") -> nn.Module:
    """The submodule at dotted path ``name`` (e.g. ``"layer4"``, ``"encoder.stages.1"``).

    Parameters
    ----------
    module : nn.Module
        The model.
    name : str
        The dotted path, as a zoo file's ``encoder`` field gives it.
    model_name : str, default "model"
        The model's name, for the error message.

    Returns
    -------
    nn.Module
        The submodule.

    Raises
    ------
    ZooError
        No module has that name; the message names the model, the missing name, the closest existing
        names and the top-level modules.
    """
    found = find_module(module, name)
    if found is not None:
        return found
    names = [n for n, _ in module.named_modules(remove_duplicate=False) if n]
    hint = did_you_mean(name, names, n=5, cutoff=0.5)
    top = [n for n, _ in module.named_children()]
    raise ZooError(f"model {model_name!r}: field 'encoder': no module named {name!r}{hint} "
                   f"(top-level modules: {', '.join(top) or 'none'})")


def first_tensor(output: Any) -> torch.Tensor | None:
    """The first tensor in a module output, searched depth first.

    Parameters
    ----------
    output : Any
        A tensor, a tuple or list, a dict or an HF ModelOutput, nested in any way.

    Returns
    -------
    torch.Tensor or None
        The first tensor found, or None when there is none.
    """
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, Mapping):  # HF ModelOutput is an OrderedDict of its non-None fields
        items = list(output.values())
    elif isinstance(output, (tuple, list)):
        items = list(output)
    else:
        return None
    for item in items:
        found = first_tensor(item)
        if found is not None:
            return found
    return None


def _script_call_input_ok(parent: torch.jit.ScriptModule, child: str) -> bool:
    """True when ``parent.forward`` calls ``self.<child>.forward`` on its own first input."""
    graph = parent.graph
    inputs = list(graph.inputs())
    if len(inputs) < 2:
        return False
    self_value, x_value = inputs[0], inputs[1]
    child_values = set()
    for node in graph.nodes():
        if node.kind() == "prim::GetAttr" and node.s("name") == child:
            if next(node.inputs()).unique() == self_value.unique():
                child_values.add(node.output().unique())
    for node in graph.nodes():
        if node.kind() == "prim::CallMethod" and node.s("name") == "forward":
            args = list(node.inputs())
            if len(args) >= 2 and args[0].unique() in child_values and args[1].unique() == x_value.unique():
                return True
    return False


def _check_script_prefix(module: torch.jit.ScriptModule, name: str, model_name: str) -> None:
    """Check that calling submodule ``name`` on the model input computes what the model computes there."""
    parent = module
    for i, part in enumerate(name.split(".")):
        try:
            ok = _script_call_input_ok(parent, part)
        except (RuntimeError, AttributeError):  # e.g. a module without a scripted forward
            ok = False
        if not ok:
            path = ".".join(name.split(".")[: i + 1])
            raise ZooError(
                f"model {model_name!r}: field 'encoder': TorchScript modules accept no forward hooks, so "
                f"'encoder' must name a submodule that the model calls directly on its input; {path!r} is "
                f"not called on its parent's input. Export the encoder itself and leave 'encoder' unset.")
        parent = getattr(parent, part)


@dataclass(frozen=True)
class TokenGrid:
    """R is ViT-style tokens (B, prefix + h·w, D), laid out as a map (B, D, h, w).

    The ``prefix`` tokens (class, distillation, registers) are dropped and the patch tokens reshaped,
    row-major as patch embeddings flatten them. A (B, h·w, D) R (a module before the prefix tokens
    are added) is reshaped alike; any other token count is an error, R of another rank is kept as it is.

    Parameters
    ----------
    prefix : int
        The number of tokens before the patch tokens.
    stride : tuple of (int, int)
        Input pixels per token (height, width): the grid is (H // stride_h, W // stride_w) of the
        model input.
    """

    prefix: int
    stride: tuple[int, int]

    def to_dict(self) -> dict:
        """The layout as plain data, as a model's preprocessing record stores it.

        Returns
        -------
        dict
            ``{"token_grid": {"prefix": int, "stride": [int, int]}}``.
        """
        return {"token_grid": {"prefix": self.prefix, "stride": list(self.stride)}}

    def apply(self, r: torch.Tensor, x: torch.Tensor, where: str) -> torch.Tensor:
        """Lay R out as a map.

        Parameters
        ----------
        r : torch.Tensor
            The captured encoder output.
        x : torch.Tensor
            The model input (B, C, H, W) that gave ``r``; its H and W fix the grid.
        where : str
            Names the model and encoder in the error message.

        Returns
        -------
        torch.Tensor
            (B, D, h, w) for tokens; ``r`` itself when it is not of rank 3.

        Raises
        ------
        ModelLoadError
            The token count is neither ``prefix + h·w`` nor ``h·w``.
        """
        if r.ndim != 3:
            return r
        h, w = x.shape[-2] // self.stride[0], x.shape[-1] // self.stride[1]
        if r.shape[1] not in (self.prefix + h * w, h * w):
            raise ModelLoadError(f"{where}: R has shape {tuple(r.shape)}; a {tuple(x.shape[-2:])} input in "
                                 f"{self.stride[0]}×{self.stride[1]} patches gives {h}×{w} patch tokens after "
                                 f"{self.prefix} prefix tokens, i.e. {self.prefix + h * w} tokens")
        return r[:, r.shape[1] - h * w:].transpose(1, 2).reshape(r.shape[0], r.shape[2], h, w)


@dataclass(frozen=True)
class ChannelsLast:
    """R is a channels-last map (B, H, W, C), permuted to (B, C, H, W).

    Every stage of timm's and torchvision's Swin gives R so. R of another rank is kept as it is.
    """

    def to_dict(self) -> dict:
        """The layout as plain data, as a model's preprocessing record stores it.

        Returns
        -------
        dict
            ``{"channels_last": True}``.
        """
        return {"channels_last": True}

    def apply(self, r: torch.Tensor, x: torch.Tensor, where: str) -> torch.Tensor:
        """Lay R out as a map.

        Parameters
        ----------
        r : torch.Tensor
            The captured encoder output.
        x : torch.Tensor
            The model input (unused; the same signature as `TokenGrid.apply`).
        where : str
            Names the model and encoder (unused: this layout raises nothing).

        Returns
        -------
        torch.Tensor
            ``r`` permuted to (B, C, H, W) when it is of rank 4, else ``r`` itself.
        """
        return r.permute(0, 3, 1, 2) if r.ndim == 4 else r


#: How a loader may declare R's layout (None: R is already a map, or whatever the module gives).
Layout = TokenGrid | ChannelsLast


@dataclass(frozen=True)
class Encoder:
    """Where R is read (a module name; None: the whole model output) and how it is laid out.

    What `LoadedModel.encoder_ref` gives: pass it wherever a function takes an ``encoder`` name
    (`attribution.attribute`, `EncoderTap`) so that R is the same map everywhere.

    Parameters
    ----------
    name : str or None
        The encoder module's dotted path; None takes the whole model output as R.
    layout : TokenGrid or ChannelsLast, optional
        How R is laid out; None when it already is a map (or is taken as the module gives it).
    """

    name: str | None
    layout: Layout | None = None


class EncoderTap:
    """Runs a model up to its encoder output R, captured by a forward hook on the named module.

    With stop=True the forward pass ends right after R (an exception raised in the hook and caught here),
    so decoders/heads cost nothing. ``name=None`` takes the whole model output as R; an `Encoder` gives
    the name and R's layout, applied to R here (see the module docstring). When the named module runs
    several times in one forward, R is its first output. See the module docstring for TorchScript.

    Called on a model input ``x`` (already transformed), a tap returns R: the first tensor of the
    captured output, laid out as a map when the encoder declares a layout. It raises `ModelLoadError`
    when that output holds no tensor, when the forward pass never runs the named module, or when the
    layout does not fit R.

    Parameters
    ----------
    module : nn.Module
        The model (a Python or TorchScript module).
    name : str or Encoder or None
        The encoder module's dotted path, an `Encoder` (path and layout), or None for the whole output.
    model_name : str, default "model"
        The model's name, for error messages.
    stop : bool, default True
        End the forward pass right after R; False runs the whole model (its output is discarded).

    Raises
    ------
    ZooError
        No module has that name; for a TorchScript model, the named submodule is not called on its
        parent's input; or the named module of a Python model is a TorchScript submodule.
    """

    def __init__(self, module: nn.Module, name: str | Encoder | None, model_name: str = "model",
                 stop: bool = True):
        name, self.layout = (name.name, name.layout) if isinstance(name, Encoder) else (name, None)
        self.module = module
        self.name = name
        self.model_name = model_name
        self.stop = stop
        self.target = None if name is None else resolve_module(module, name, model_name)
        self.scripted = isinstance(module, torch.jit.ScriptModule)
        if name is not None and self.scripted:
            _check_script_prefix(module, name, model_name)
        elif isinstance(self.target, torch.jit.ScriptModule):
            raise ZooError(f"model {model_name!r}: field 'encoder': {name!r} is a TorchScript submodule, "
                           "which accepts no forward hooks; name a Python module instead")

    def _as_tensor(self, output: Any, where: str) -> torch.Tensor:
        tensor = first_tensor(output)
        if tensor is None:
            raise ModelLoadError(f"model {self.model_name!r}: the output of {where} holds no tensor "
                                 f"(got {type(output).__name__})")
        return tensor

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """R for the (already transformed) model input ``x``.

        It is the first tensor of the captured output, laid out as a map when the encoder declares a layout.
        """
        if self.target is None:
            r = self._as_tensor(self.module(x), "the model")
        elif self.scripted:
            r = self._as_tensor(self.target(x), f"module {self.name!r}")
        else:
            r = self._capture(x)
        if self.layout is None:
            return r
        return self.layout.apply(r, x, f"model {self.model_name!r}, encoder {self.name!r}")

    def _capture(self, x: torch.Tensor) -> torch.Tensor:
        captured: list[Any] = []
        token = object()  # tells our stop apart from that of a tap nested inside this forward

        def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
            if not captured:
                captured.append(output)
            if self.stop:
                raise _StopForward(token)

        # Registered at call time, so it is the last forward hook of the module: others run first.
        handle = self.target.register_forward_hook(hook)
        try:
            self.module(x)
        except _StopForward as stop:
            if stop.token is not token:
                raise
        finally:
            handle.remove()
        if not captured:
            raise ModelLoadError(f"model {self.model_name!r}: the forward pass finished without running "
                                 f"encoder module {self.name!r}; choose a module the forward pass uses")
        return self._as_tensor(captured[0], f"module {self.name!r}")
