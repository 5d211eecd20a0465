"""Layer-wise relevance propagation with the ε rule, as backward rules over plain autograd.

The ε rule for an operation z = f(x) that is linear in its activation x (with weights and a
bias that are constants) redistributes the relevance R_z arriving at z as

    R_x = x ⊙ Jᵀ (R_z / (z + ε·sign(z)))        (sign(±0) = ±1)

where J = ∂z/∂x. The bias, the running statistics of a BatchNorm and any constant operand
absorb their share, so relevance is conserved only up to what they take. Autograd already
computes Jᵀ(·); the rule needs only two element-wise steps around it, which this module
inserts as tiny autograd functions:

    z = Divide(f(ScaleByInput(x)))   # backward: ÷ (z+ε·sign z), then Jᵀ, then ⊙ x

Relevance travels through the graph in the place of the gradient. Everything that is not a
linear operation (ReLU and other element-wise activations, reshapes, concatenation) passes it
on unchanged, as in the standard treatment of activations. The rules attach to *operations*,
caught with a TorchFunctionMode, rather than to module types: residual additions written as
`out = out + identity` or `out += identity`, `x.mean(...)` and functional convolutions are
handled exactly like their module counterparts, in any model, without tracing it.

Operations that have no ε rule (layer/group normalisation, softmax, products of two
activations such as attention or gating) raise `AttributionError` naming the operation and the
module it ran in. This is the genuine layer-wise rule, not the modified-gradient form used by
DeepExplain (which equals gradient×input on ReLU networks); with ε → 0 on a ReLU network
without residual additions the two coincide, and they part as ε grows.
"""

from __future__ import annotations

import contextlib
import inspect
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from ..errors import AttributionError


def _stabilised(z: torch.Tensor, epsilon: float) -> torch.Tensor:
    """z + ε·sign(z), with the sign of a zero taken from its sign bit (+0 → +ε, −0 → −ε), so that
    the denominator is never zero for ε > 0. `copysign` is one pass; comparisons and `where` are
    several times slower on CPU, enough to be half the cost of ε-LRP on the zoo's models."""
    return torch.copysign(torch.tensor(epsilon, dtype=z.dtype, device=z.device), z).add_(z)


class _ScaleByInput(torch.autograd.Function):
    """Identity forward; backward multiplies the incoming relevance-gradient by the input."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return grad * x


class _Divide(torch.autograd.Function):
    """Identity forward; backward divides the incoming relevance by the stabilised output."""

    @staticmethod
    def forward(ctx: Any, z: torch.Tensor, epsilon: float) -> torch.Tensor:
        # z itself is saved (nothing else holds it, so nothing modifies it in place) and the
        # denominator is formed in backward: no extra tensor is kept alive between the passes.
        ctx.save_for_backward(z)
        ctx.epsilon = epsilon
        # A copy, not a view: models modify outputs in place (ReLU(inplace=True), `out += x`),
        # which autograd forbids on views made inside a custom Function.
        return z.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (z,) = ctx.saved_tensors
        return grad / _stabilised(z, ctx.epsilon), None


class _InplaceSum(torch.autograd.Function):
    """The ε rule for `a += b` / `a -= b` done in place (a sum is linear in both operands)."""

    @staticmethod
    def forward(ctx: Any, a: torch.Tensor, b: torch.Tensor, alpha: float, epsilon: float) -> torch.Tensor:
        a_before = a.clone()
        a.add_(b, alpha=alpha)
        ctx.mark_dirty(a)
        ctx.alpha = alpha
        ctx.save_for_backward(a_before, b, _stabilised(a, epsilon))
        return a

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
        a_before, b, denominator = ctx.saved_tensors
        share = grad / denominator
        grad_b = (ctx.alpha * b * share).sum_to_size(b.shape) if ctx.needs_input_grad[1] else None
        return a_before * share, grad_b, None, None


def _tensor_method(name: str) -> Any:
    return getattr(torch.Tensor, name)


# Operations linear in their activation operands: the ε rule applies to them.
LINEAR_OPS: frozenset = frozenset(
    [
        torch.conv1d, torch.conv2d, torch.conv3d,
        torch.conv_transpose1d, torch.conv_transpose2d, torch.conv_transpose3d,
        F.linear, F.batch_norm,
        F.max_pool1d, F.max_pool2d, F.max_pool3d,
        F.avg_pool1d, F.avg_pool2d, F.avg_pool3d,
        F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d,
        F.adaptive_max_pool1d, F.adaptive_max_pool2d, F.adaptive_max_pool3d,
        torch.add, torch.sub, torch.mean, torch.sum,
    ]
    + [_tensor_method(n) for n in ("add", "sub", "__add__", "__radd__", "__sub__", "__rsub__", "mean", "sum")]
)
# In-place sums (`out += identity` arrives as add_): same rule, done in place.
INPLACE_SUMS: dict[Any, float] = {
    _tensor_method("add_"): 1.0, _tensor_method("__iadd__"): 1.0,
    _tensor_method("sub_"): -1.0, _tensor_method("__isub__"): -1.0,
}
# Operations ε-LRP cannot propagate through when any operand is an activation.
UNSUPPORTED_OPS: frozenset = frozenset(
    [F.layer_norm, F.group_norm, F.instance_norm, F.local_response_norm, F.normalize,
     F.softmax, F.log_softmax, torch.softmax, torch.log_softmax,
     _tensor_method("softmax"), _tensor_method("log_softmax")]
)
# Products: fine with a constant factor, unsupported between two activations (attention, gates).
PRODUCT_OPS: frozenset = frozenset(
    [torch.mul, torch.div, torch.matmul, torch.bmm, torch.einsum, F.scaled_dot_product_attention]
    + [_tensor_method(n) for n in ("mul", "div", "matmul", "__mul__", "__rmul__", "__truediv__",
                                   "__matmul__", "mul_", "div_", "__imul__", "__itruediv__")]
)


def _is_activation(value: Any) -> bool:
    return isinstance(value, torch.Tensor) and value.requires_grad


def _op_name(func: Callable) -> str:
    return getattr(func, "__qualname__", None) or getattr(func, "__name__", repr(func))


class _EpsilonMode(TorchFunctionMode):
    """Applies the ε rule to every linear operation on activations run while it is active."""

    def __init__(self, epsilon: float, model_name: str, where: Callable[[], str]) -> None:
        super().__init__()
        self.epsilon = epsilon
        self.model_name = model_name
        self.where = where

    def _refuse(self, func: Callable, why: str) -> AttributionError:
        return AttributionError(
            f"{self.model_name}: ε-LRP cannot propagate relevance through {_op_name(func)} "
            f"in module {self.where()} ({why}); use saliency or gradient_x_input for this model, "
            "or choose an encoder output before this operation"
        )

    def __torch_function__(self, func: Callable, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if not torch.is_grad_enabled():
            return func(*args, **kwargs)
        activations = [a for a in (*args, *kwargs.values()) if _is_activation(a)]
        if not activations:
            return func(*args, **kwargs)
        if func in LINEAR_OPS:
            wrap = lambda a: _ScaleByInput.apply(a) if _is_activation(a) else a  # noqa: E731
            out = func(*[wrap(a) for a in args], **{k: wrap(v) for k, v in kwargs.items()})
            if isinstance(out, tuple):  # max pooling with indices
                return (_Divide.apply(out[0], self.epsilon), *out[1:])
            return _Divide.apply(out, self.epsilon)
        if func in INPLACE_SUMS:
            a, b = args[0], args[1]
            alpha = INPLACE_SUMS[func] * kwargs.get("alpha", 1.0)
            if not isinstance(b, torch.Tensor):
                b = torch.as_tensor(b, dtype=a.dtype, device=a.device)
            return _InplaceSum.apply(a, b, alpha, self.epsilon)
        if func in UNSUPPORTED_OPS:
            raise self._refuse(func, "no ε rule for this normalisation")
        if func in PRODUCT_OPS and len(activations) >= 2:
            raise self._refuse(func, "a product of two activations, e.g. attention or gating")
        return func(*args, **kwargs)


def _running_module(root: nn.Module) -> str:
    """The innermost submodule of `root` whose forward is on the Python call stack.

    Looked up only when an error is raised, so that the normal path pays nothing: hooks on every
    module to track the same thing cost two Python calls per module per forward pass.
    """
    names = {id(sub): name for name, sub in root.named_modules()}
    frame = inspect.currentframe()
    while frame is not None:
        owner = frame.f_locals.get("self")
        if isinstance(owner, nn.Module) and id(owner) in names:
            return f"{names[id(owner)] or '<root>'} ({type(owner).__name__})"
        frame = frame.f_back
    return "<top level>"


@contextlib.contextmanager
def epsilon_rules(module: nn.Module, epsilon: float, model_name: str = "model") -> Iterator[None]:
    """While active, graphs built by forward passes of `module` backpropagate ε-LRP relevance."""
    if isinstance(module, torch.jit.ScriptModule):
        # A TorchScript graph runs in the JIT interpreter, where no Python-level rule can reach it.
        raise AttributionError(
            f"{model_name}: ε-LRP needs the Python module; a TorchScript model runs outside its rules "
            "(use saliency or gradient_x_input, or load the model from Python source or a checkpoint)"
        )
    with _EpsilonMode(epsilon, model_name, lambda: _running_module(module)):
        yield
