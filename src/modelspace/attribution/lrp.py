"""Layer-wise relevance propagation with the ε rule, as backward rules over plain autograd.

The ε rule for an operation z = f(x) that is linear in its activation x (with weights and a
bias that are constants) redistributes the relevance R_z arriving at z as

    R_x = x ⊙ Jᵀ (R_z / (z + ε·sign(z)))        (sign(±0) = ±1)

where J = ∂z/∂x. The bias, the running statistics of a BatchNorm and any constant operand
absorb their share, so relevance is conserved only up to what they take. Autograd already
computes Jᵀ(·); the rule needs only two element-wise steps around it, which this module
inserts as tiny autograd functions:

    z = Divide(f(ScaleByInput(x)))   # backward: ÷ (z+ε·sign z), then Jᵀ, then ⊙ x

Relevance travels through the graph in the place of the gradient. The rules attach to
*operations*, caught with a TorchFunctionMode, rather than to module types: residual additions
written as `out = out + identity` or `out += identity`, `x.mean(...)` and functional convolutions
are handled exactly like their module counterparts, in any model, without tracing it.

Operations that are not linear get the conservative rules of the transformer-LRP literature
(Ali et al., ICML 2022, "XAI for Transformers: Better Explanations through Conservative
Propagation"; Achtibat et al., ICML 2024, "AttnLRP"), each declared in a table below. The idea
is one: hold the nonlinear factor constant, and the operation becomes linear in what remains.

- Linear operations (convolutions, linear layers, BatchNorm, average and max pooling, sums,
  means, negation) and products with a constant (layer scale, `x * 0.5`): the ε rule.
- Normalisations (layer_norm, group_norm, rms_norm, normalize): the scale 1/σ is a constant, so
  the layer is linear in x (the centring is linear) and the ε rule applies to the whole layer,
  γ and β acting as a weight and a bias (Ali et al.'s LN rule; AttnLRP Prop. 3.4; lxt's
  layer_norm). Its forward is computed as (x − mean)·(1/σ)·γ + β: equal to the op up to rounding.
- Attention (scaled_dot_product_attention, multi_head_attention_forward): the attention weights
  are constants, so the output is linear in the values V and the ε rule applies to weights·V;
  no relevance reaches Q and K (Ali et al.'s AH rule; lxt's CP-LRP for vision transformers). Both
  fused ops are rewritten here as explicit weights·V, whatever flags the model sets, so timm's
  `fused_attn` and nn.MultiheadAttention need no change.
- Products of two activations: an operand made by a gate or weight op (sigmoid, hard sigmoid,
  softmax, rsqrt; also after reshaping or dropout) and the divisor of a division are constants,
  and the ε rule applies to the other operand. This covers squeeze-excitation gates x·σ(W·pool x),
  SiLU written as x·σ(x), attention written as softmax(QKᵀ)·V and norms written as x·rsqrt(·).
  Gates are constants as in Ali et al. (and lxt's CP-LRP gated MLP), not AttnLRP's uniform rule
  (half the relevance to each operand): no relevance enters the branch that computes a gate,
  the same choice as for attention, and x·σ(x) then agrees with F.silu's identity rule.
- Element-wise activations (GELU, SiLU, hard swish, tanh, ELU, ReLU6, ...; sigmoid and hard
  sigmoid used alone): the identity rule R_x = R_y (AttnLRP eq. 9). ReLU keeps its gradient, a
  0/1 mask, which is the identity wherever relevance arrives (an output of 0 carries none).
- Reshapes, concatenation, padding and the like pass relevance on unchanged, through autograd.

Operations with no rule (a product of two activations neither of which is a gate, weight or
scale, such as Q·Kᵀ; a softmax or rsqrt whose own output receives relevance; division by an
activation; local response normalisation, instance normalisation, log-softmax) raise
`AttributionError` naming the operation and the module it ran in, *when relevance reaches
them*: the forward pass records where they ran and the backward pass raises. So Q·Kᵀ and the
softmax of explicitly written attention, which the AH rule leaves without relevance, run freely.
This is the genuine layer-wise rule, not the modified-gradient form used by DeepExplain (which
equals gradient×input on ReLU networks); with ε → 0 on a ReLU network without residual
additions the two coincide, and they part as ε grows.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from ..errors import AttributionError


@functools.lru_cache(maxsize=64)
def _scalar(value: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """ε as a 0-d tensor, made once per dtype and device (one is needed per operation per pass)."""
    return torch.tensor(value, dtype=dtype, device=device)


def _stabilised(z: torch.Tensor, epsilon: float) -> torch.Tensor:
    """The denominator z + ε·sign(z), the sign of a zero taken from its sign bit (+0 → +ε, −0 → −ε).

    So the denominator is never zero for ε > 0. `copysign` is one pass; comparisons and `where` are
    several, and on CPU they were a large part of ε-LRP's time on the zoo's models.
    """
    return torch.copysign(_scalar(epsilon, z.dtype, z.device), z).add_(z)


class _ScaleByInput(torch.autograd.Function):
    """Identity forward; backward multiplies the incoming relevance-gradient by the input.

    With ``in_place`` the product is written into the incoming gradient: only for operations whose
    backward makes that gradient afresh for this input alone (`FRESH_GRADIENT`), so nothing else holds it.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, in_place: bool = False) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.in_place = in_place
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (x,) = ctx.saved_tensors
        # Not while a graph of the backward is built: that graph may keep the gradient as it was.
        if ctx.in_place and not torch.is_grad_enabled() and grad.shape == x.shape and grad.dtype == x.dtype:
            return grad.mul_(x), None
        return grad * x, None


class _InplaceSum(torch.autograd.Function):
    """The ε rule for `a += b` / `a -= b` done in place (a sum is linear in both operands)."""

    @staticmethod
    def forward(ctx: Any, a: torch.Tensor, b: torch.Tensor, alpha: float, epsilon: float,
                a_before: torch.Tensor | None = None) -> torch.Tensor:
        a_before = a.clone() if a_before is None else a_before  # a copy of a's values made by the caller
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
        return a_before * share, grad_b, None, None, None


class _PassThrough(torch.autograd.Function):
    """The identity rule: forward applies an element-wise activation, backward passes the relevance as is."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, activation: Callable) -> torch.Tensor:
        out = activation(x)
        if out is x:  # the activation ran in place (inplace=True)
            ctx.mark_dirty(x)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad, None


class _Refused(torch.autograd.Function):
    """Identity forward; backward raises the error prepared in the forward pass.

    Relevance has reached an operation that has no rule.
    """

    @staticmethod
    def forward(ctx: Any, z: torch.Tensor, error: AttributionError) -> torch.Tensor:
        ctx.error = error
        # A copy, not a view: models modify outputs in place (ReLU(inplace=True), `out += x`),
        # which autograd forbids on views made inside a custom Function.
        return z.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[None, None]:
        raise ctx.error


class _Denominator:
    """The output z of a rule's operation, kept for the division of the relevance arriving at it.

    The division is a hook on z's gradient, so z reaches the model as is: copying every output would
    cost a pass over it per operation. The values are copied only when an in-place operation
    is about to change them (`_EpsilonMode` calls `keep`); an in-place ReLU needs no copy where
    nothing has read z before it (`read` is False): relevance reaches z only through the ReLU then,
    which sends none where it changed z (z ≤ 0), and elsewhere leaves z as it was.

    Where relevance reaches z only through a ReLU (in place, or `relu_out` = ReLU(z) when nothing
    else reads z), it is zero wherever ReLU(z) is zero, and elsewhere z = ReLU(z) > 0: the
    denominator is ReLU(z) + ε, one pass instead of two, and equal wherever it divides a non-zero.
    """

    __slots__ = ("z", "epsilon", "read", "kept", "nonnegative", "relu_out")

    def __init__(self, z: torch.Tensor, epsilon: float) -> None:
        # A detached alias (same storage, same values): z itself holds this object in its hooks, and
        # that cycle runs through autograd's C++ side, where the garbage collector cannot see it.
        self.z = z.detach()
        self.epsilon = epsilon
        self.read = False
        self.kept = False
        self.nonnegative = False  # z's values were replaced by ReLU(z) in place before anything read them
        # ReLU(z), while nothing else has read z. ReLU's backward keeps it: autograd itself refuses
        # a graph in which it changes afterwards.
        self.relu_out: torch.Tensor | None = None

    def keep(self) -> torch.Tensor:
        """Copy z's current values (once); returns the copy."""
        if not self.kept:
            self.z = self.z.detach().clone()
            self.kept = True
        return self.z

    def __call__(self, grad: torch.Tensor) -> torch.Tensor:
        if self.relu_out is not None and not self.read:
            denominator = torch.add(self.relu_out, self.epsilon)
        elif self.nonnegative:
            denominator = torch.add(self.z, self.epsilon)
        else:
            denominator = _stabilised(self.z, self.epsilon)
        if denominator.shape != grad.shape or denominator.dtype != grad.dtype:
            return grad / denominator
        return torch.div(grad, denominator, out=denominator)  # into its own fresh tensor: one allocation fewer


class _NoRule(Exception):
    """Raised by a rewrite (below) for a case it has no rule for; the mode names op and module."""


def _tensor_method(name: str) -> Any:
    return getattr(torch.Tensor, name)


def _methods(*names: str) -> list:
    return [_tensor_method(n) for n in names]


# ------------------------------------------------------------------ normalisations: 1/σ is a constant


def _affine(y: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None) -> torch.Tensor:
    y = y if weight is None else y * weight
    return y if bias is None else y + bias


def _inverse_std(centred: torch.Tensor, dims: tuple[int, ...], eps: float) -> torch.Tensor:
    """1/σ, detached: the constant that makes a normalisation linear in its input."""
    return torch.rsqrt(centred.detach().square().mean(dims, keepdim=True) + eps)


def _layer_norm(x: torch.Tensor, normalized_shape: Any, weight: Any = None, bias: Any = None,
                eps: float = 1e-5) -> torch.Tensor:
    dims = tuple(range(-len(normalized_shape), 0))
    centred = x - x.mean(dims, keepdim=True)
    return _affine(centred * _inverse_std(centred, dims, eps), weight, bias)


def _group_norm(x: torch.Tensor, num_groups: int, weight: Any = None, bias: Any = None,
                eps: float = 1e-5) -> torch.Tensor:
    groups = x.reshape(x.shape[0], num_groups, -1)
    centred = groups - groups.mean(-1, keepdim=True)
    y = (centred * _inverse_std(centred, (-1,), eps)).reshape(x.shape)
    per_channel = (1, -1) + (1,) * (x.dim() - 2)  # γ and β are per channel
    return _affine(y, None if weight is None else weight.view(per_channel),
                   None if bias is None else bias.view(per_channel))


def _rms_norm(x: torch.Tensor, normalized_shape: Any, weight: Any = None, eps: float | None = None) -> torch.Tensor:
    dims = tuple(range(-len(normalized_shape), 0))
    eps = torch.finfo(x.dtype).eps if eps is None else eps
    return _affine(x * _inverse_std(x, dims, eps), weight, None)


def _normalize(x: torch.Tensor, p: float = 2.0, dim: int = 1, eps: float = 1e-12, out: Any = None) -> torch.Tensor:
    if out is not None:
        raise _NoRule("normalize with out=")
    return x / x.detach().norm(p, dim, keepdim=True).clamp_min(eps)


# ------------------------------------------------------------------ attention: the weights are constants


def _scaled_dot_product_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                                  attn_mask: Any = None, dropout_p: float = 0.0, is_causal: bool = False,
                                  scale: float | None = None, enable_gqa: bool = False) -> torch.Tensor:
    """weights·V with the weights held constant; run under the rules, so the product gets the ε rule."""
    if dropout_p > 0:
        raise _NoRule("attention dropout is random; run the model in eval mode")
    # The weights exactly as SDPA forms them (mask, causal flag, scale, grouped heads): attending
    # over the identity matrix returns them.
    s = key.shape[-2]
    eye = torch.eye(s, dtype=value.dtype, device=value.device).expand(*value.shape[:-2], s, s)
    mask = attn_mask.detach() if isinstance(attn_mask, torch.Tensor) else attn_mask
    gqa = {"enable_gqa": True} if enable_gqa else {}  # torch ≥ 2.5 only
    weights = F.scaled_dot_product_attention(query.detach(), key.detach(), eye, mask, 0.0, is_causal, scale=scale, **gqa)
    if enable_gqa:
        value = value.repeat_interleave(query.shape[-3] // value.shape[-3], dim=-3)
    return weights @ value


_MHA = inspect.signature(F.multi_head_attention_forward)


def _multi_head_attention(*args: Any, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    """nn.MultiheadAttention's functional form with its weights held constant.

    Run under the rules, so the value projection, weights·V and the output projection get the ε rule.
    """
    a = _MHA.bind(*args, **kwargs)
    a.apply_defaults()
    a = a.arguments
    if a["bias_v"] is not None or a["add_zero_attn"] or a["static_v"] is not None:
        raise _NoRule("values beyond the projected input: bias_v, add_zero_attn or static_v")
    if a["training"] and a["dropout_p"] > 0:
        raise _NoRule("attention dropout is random; run the model in eval mode")
    if a["value"].dim() != 3:
        raise _NoRule("unbatched input")
    constants = {name: a[name].detach() for name in ("query", "key", "value")}
    _, weights = F.multi_head_attention_forward(**{**a, **constants, "need_weights": True, "average_attn_weights": False})
    n, h, l, s = weights.shape
    w_v = a["v_proj_weight"] if a["use_separate_proj_weight"] else a["in_proj_weight"].chunk(3)[2]
    b_v = None if a["in_proj_bias"] is None else a["in_proj_bias"].chunk(3)[2]
    v = F.linear(a["value"], w_v, b_v).reshape(s, n * h, -1).transpose(0, 1)  # (N·H, S, E/H)
    out = (weights.reshape(n * h, l, s) @ v).transpose(0, 1).reshape(l * n, -1)
    out = F.linear(out, a["out_proj_weight"], a["out_proj_bias"]).view(l, n, -1)
    if not a["need_weights"]:
        return out, None
    return out, weights.mean(dim=1) if a["average_attn_weights"] else weights


# ------------------------------------------------------------------ the rules, per operation

# Linear in their activation operands: the ε rule.
LINEAR_OPS: frozenset = frozenset(
    [
        torch.conv1d, torch.conv2d, torch.conv3d,
        torch.conv_transpose1d, torch.conv_transpose2d, torch.conv_transpose3d,
        F.linear, F.batch_norm,
        F.max_pool1d, F.max_pool2d, F.max_pool3d,
        F.avg_pool1d, F.avg_pool2d, F.avg_pool3d,
        F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d,
        F.adaptive_max_pool1d, F.adaptive_max_pool2d, F.adaptive_max_pool3d,
        torch.add, torch.sub, torch.mean, torch.sum, torch.neg,
    ]
    + _methods("add", "sub", "__add__", "__radd__", "__sub__", "__rsub__", "mean", "sum", "neg", "__neg__")
)
# In-place sums (`out += identity` arrives as add_): same rule, done in place.
INPLACE_SUMS: dict[Any, float] = {
    _tensor_method("add_"): 1.0, _tensor_method("__iadd__"): 1.0,
    _tensor_method("sub_"): -1.0, _tensor_method("__isub__"): -1.0,
}
# Normalisations, as functions linear in x with the scale 1/σ held constant: the ε rule over those.
FIXED_SCALE: dict[Any, Callable] = {
    F.layer_norm: _layer_norm, F.group_norm: _group_norm, F.normalize: _normalize,
    **({F.rms_norm: _rms_norm} if hasattr(F, "rms_norm") else {}),  # torch ≥ 2.4
}
# Fused attention, rewritten as weights·V with the weights held constant (run under these rules).
ATTENTION: dict[Any, Callable] = {
    F.scaled_dot_product_attention: _scaled_dot_product_attention,
    F.multi_head_attention_forward: _multi_head_attention,
}
# Products: the ε rule in the one operand that is not a constant factor (see FACTOR_OPS).
PRODUCT_OPS: frozenset = frozenset(
    [torch.mul, torch.div, torch.matmul, torch.bmm, torch.einsum, torch.addmm, torch.baddbmm]
    + _methods("mul", "div", "matmul", "__mul__", "__rmul__", "__truediv__", "__rtruediv__", "__matmul__",
               "__rmatmul__")
)
# Where a product is a division: the position of the divisor, a normalisation's scale.
DIVISOR: dict[Any, int] = {torch.div: 1, _tensor_method("div"): 1, _tensor_method("__truediv__"): 1,
                           _tensor_method("__rtruediv__"): 0}
# In-place products, done as their out-of-place rule and copied back.
INPLACE_PRODUCTS: dict[Any, Any] = {
    _tensor_method("mul_"): torch.mul, _tensor_method("__imul__"): torch.mul,
    _tensor_method("div_"): torch.div, _tensor_method("__itruediv__"): torch.div,
}
# Element-wise activations: the identity rule (ReLU keeps its 0/1 gradient mask, see above).
IDENTITY_OPS: frozenset = frozenset(
    [F.gelu, F.silu, F.mish, F.hardswish, F.elu, F.selu, F.celu, F.leaky_relu, F.softplus, F.relu6,
     F.hardtanh, torch.tanh, torch.sigmoid, F.hardsigmoid]
    + _methods("tanh", "tanh_", "sigmoid", "sigmoid_")
)
# Operations whose outputs are constant factors in products: gates, attention weights, normalisation scales.
FACTOR_OPS: frozenset = frozenset(
    [torch.sigmoid, F.hardsigmoid, F.softmax, torch.softmax, torch.rsqrt]
    + _methods("sigmoid", "sigmoid_", "softmax", "rsqrt")
)
# No rule: relevance reaching them is refused (softmax and rsqrt too, unless they act as factors).
UNSUPPORTED_OPS: frozenset = frozenset(
    [F.instance_norm, F.local_response_norm, F.log_softmax, torch.log_softmax, F.softmax, torch.softmax,
     torch.rsqrt, torch.reciprocal]
    + _methods("log_softmax", "softmax", "rsqrt", "reciprocal")
)

# Operations that change their first operand in place without a trailing underscore in their name.
INPLACE_DUNDERS: frozenset = frozenset(
    ["__iadd__", "__isub__", "__imul__", "__itruediv__", "__ifloordiv__", "__imod__", "__ipow__", "__imatmul__",
     "__iand__", "__ior__", "__ixor__", "__ilshift__", "__irshift__", "__setitem__"]
)
# In-place ReLUs: relevance passes them only where they leave their input unchanged (see _Denominator).
INPLACE_RELUS: frozenset = frozenset([torch.relu_, _tensor_method("relu_"), F.relu_])
# ReLUs that make a new tensor (F.relu also runs in place, with inplace=True).
RELUS: frozenset = frozenset([torch.relu, _tensor_method("relu"), F.relu])
# Linear operations whose backward makes each activation operand's gradient afresh, held by nothing
# else: the product with the input can be written into it (not sums, means or negation, whose
# backward hands one gradient to both operands, or an expanded view of it).
FRESH_GRADIENT: frozenset = frozenset(
    [torch.conv1d, torch.conv2d, torch.conv3d,
     torch.conv_transpose1d, torch.conv_transpose2d, torch.conv_transpose3d,
     F.linear, F.batch_norm,
     F.max_pool1d, F.max_pool2d, F.max_pool3d,
     F.avg_pool1d, F.avg_pool2d, F.avg_pool3d,
     F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d,
     F.adaptive_max_pool1d, F.adaptive_max_pool2d, F.adaptive_max_pool3d]
)


@functools.cache
def _inplace_position(func: Callable) -> int | None:
    """The position of an ``inplace`` parameter of func (nn.functional's activations), if it has one."""
    try:
        names = list(inspect.signature(func).parameters)
    except (TypeError, ValueError):
        return None
    return names.index("inplace") if "inplace" in names else None


def _changes_in_place(func: Callable, args: tuple, kwargs: dict) -> bool:
    """Whether func changes its first operand (or its ``out=``) in place."""
    name = getattr(func, "__name__", "")
    if (name.endswith("_") and not name.endswith("__")) or name in INPLACE_DUNDERS or "out" in kwargs:
        return True
    if kwargs.get("inplace"):
        return True
    try:
        at = _inplace_position(func)
    except TypeError:  # not hashable: not one of torch's functions, which all are
        return False
    return at is not None and len(args) > at and bool(args[at])


_FACTOR = "_modelspace_lrp_factor"  # marks a tensor made by a FACTOR_OPS operation


def _mark_factor(out: Any) -> Any:
    for t in out if isinstance(out, (tuple, list)) else [out]:
        if isinstance(t, torch.Tensor):
            setattr(t, _FACTOR, True)
    return out


def _is_factor(value: Any) -> bool:
    return getattr(value, _FACTOR, False)


def _is_activation(value: Any) -> bool:
    return isinstance(value, torch.Tensor) and value.requires_grad


def _op_name(func: Callable) -> str:
    return getattr(func, "__qualname__", None) or getattr(func, "__name__", repr(func))


class _EpsilonMode(TorchFunctionMode):
    """Applies the rules above to every operation on activations run while it is active."""

    def __init__(self, epsilon: float, model_name: str, where: Callable[[], str]) -> None:
        super().__init__()
        self.epsilon = epsilon
        self.model_name = model_name
        self.where = where
        # The pending denominators by the storage of their z (views of z share it), until z is copied.
        self._pending: dict[int, list[_Denominator]] = {}

    def _refuse(self, func: Callable, why: str) -> AttributionError:
        return AttributionError(
            f"{self.model_name}: ε-LRP cannot propagate relevance through {_op_name(func)} "
            f"in module {self.where()} ({why}); use saliency or gradient_x_input for this model, "
            "or choose an encoder output before this operation"
        )

    def _epsilon(self, f: Callable, args: Any, kwargs: dict) -> Any:
        """The ε rule for f, linear in its activation operands."""
        in_place = f in FRESH_GRADIENT
        wrap = lambda a: _ScaleByInput.apply(a, in_place) if _is_activation(a) else a  # noqa: E731
        out = f(*[wrap(a) for a in args], **{k: wrap(v) for k, v in kwargs.items()})
        if isinstance(out, tuple):  # max pooling with indices
            return (self._divide(out[0]), *out[1:])
        return self._divide(out)

    def _divide(self, z: torch.Tensor) -> torch.Tensor:
        """Relevance arriving at z is divided by z + ε·sign(z) (a hook on z's gradient)."""
        if z.requires_grad:
            denominator = _Denominator(z, self.epsilon)
            z.register_hook(denominator)
            self._pending.setdefault(_storage(z), []).append(denominator)
        return z

    def _before_inplace(self, func: Callable, args: tuple, kwargs: dict) -> torch.Tensor | None:
        """Copy the values of pending denominators that func is about to change in place.

        Returns the copy of the first operand's values when it is one such z itself, else None.
        """
        target = kwargs.get("out", args[0] if args else None)
        if not isinstance(target, torch.Tensor):
            return None
        pending = self._pending.pop(_storage(target), None)
        if not pending:
            return None
        for d in pending:
            d.relu_out = None  # z's relevance may now come by another way than ReLU(z)
        if func in INPLACE_RELUS or (func is F.relu and target is args[0]):
            unread = [d for d in pending if not d.read]
            for d in unread:
                d.nonnegative = d.nonnegative or _same_place(d.z, target)
            if unread:
                self._pending[_storage(target)] = unread  # values ReLU leaves alone; later changes still copy
            pending = [d for d in pending if d.read]
        copy = None
        for d in pending:
            z = d.z
            kept = d.keep()
            if copy is None and _same_place(z, target):
                copy = kept
        return copy

    def _mark_read(self, values: tuple) -> None:
        for v in values:
            if isinstance(v, torch.Tensor):
                for d in self._pending.get(_storage(v), ()):
                    d.read = True
            elif isinstance(v, (list, tuple)):  # cat, stack and the like take tensors in a sequence
                self._mark_read(tuple(v))

    def _refused(self, func: Callable, args: tuple, kwargs: dict, why: str) -> Any:
        """The operation as is; relevance reaching it raises, naming it and its module."""
        return _Refused.apply(func(*args, **kwargs), self._refuse(func, why))

    def _product(self, func: Callable, args: tuple, kwargs: dict) -> Any:
        """The ε rule in the one operand that is not a constant factor, or a refusal."""
        if func is torch.einsum and len(args) == 2 and isinstance(args[1], (list, tuple)):
            args = (args[0], *args[1])
        operands = [i for i, a in enumerate(args) if _is_activation(a)]
        divisor = DIVISOR.get(func)
        held = {i for i in operands if _is_factor(args[i]) or (i == divisor and len(operands) > 1)}
        values = [i for i in operands if i not in held]
        if values == [divisor]:
            return self._refused(func, args, kwargs, "a division by an activation")
        if len(values) != 1 or any(map(_is_activation, kwargs.values())):
            return self._refused(func, args, kwargs, "a product of two activations, none of them a gate (sigmoid), "
                                 "attention weights (softmax) or a normalisation scale (rsqrt, a divisor)")
        return self._epsilon(func, [a.detach() if i in held else a for i, a in enumerate(args)], kwargs)

    def __torch_function__(self, func: Callable, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        before = None
        relu_of: list[_Denominator] = []
        if self._pending:
            if _changes_in_place(func, args, kwargs):
                before = self._before_inplace(func, args, kwargs)
            else:
                if _is_relu(func) and args and isinstance(args[0], torch.Tensor):
                    relu_of = [d for d in self._pending.get(_storage(args[0]), ())
                               if not d.read and _same_place(d.z, args[0])]
                self._mark_read((*args, *kwargs.values()))
        if not torch.is_grad_enabled():
            return func(*args, **kwargs)
        activations = [a for a in (*args, *kwargs.values()) if _is_activation(a)]
        if not activations:
            return func(*args, **kwargs)
        try:
            out = self._apply_rule(func, args, kwargs, activations, before)
        except _NoRule as why:
            raise self._refuse(func, str(why)) from None
        if isinstance(out, torch.Tensor):
            for d in relu_of:  # this ReLU is z's only reader so far (see _Denominator)
                d.read, d.relu_out = False, out.detach()  # detached, as z (see _Denominator)
        return out

    def _apply_rule(self, func: Callable, args: tuple, kwargs: dict, activations: list,
                    before: torch.Tensor | None = None) -> Any:
        if func in LINEAR_OPS:
            return self._epsilon(func, args, kwargs)
        if func in INPLACE_SUMS:
            a, b = args[0], args[1]
            alpha = INPLACE_SUMS[func] * kwargs.get("alpha", 1.0)
            if not isinstance(b, torch.Tensor):
                b = torch.as_tensor(b, dtype=a.dtype, device=a.device)
            return _InplaceSum.apply(a, b, alpha, self.epsilon, before)
        if func in FIXED_SCALE:
            return self._epsilon(FIXED_SCALE[func], args, kwargs)
        if func in PRODUCT_OPS:
            return self._product(func, args, kwargs)
        if func in INPLACE_PRODUCTS:
            out = self._product(INPLACE_PRODUCTS[func], (args[0].clone(), *args[1:]), kwargs)
            return args[0].copy_(out)
        if func in ATTENTION:
            with self:  # the rewrite's own operations get these rules
                return ATTENTION[func](*args, **kwargs)
        if func in IDENTITY_OPS and _is_activation(args[0]):
            out = _PassThrough.apply(args[0], lambda x: func(x, *args[1:], **kwargs))
        elif func in UNSUPPORTED_OPS:
            out = self._refused(func, args, kwargs, "no ε rule for this operation")
        else:
            out = func(*args, **kwargs)
            # reshaping, copying or dropping out a constant factor leaves a constant factor
            return _mark_factor(out) if all(map(_is_factor, activations)) else out
        return _mark_factor(out) if func in FACTOR_OPS else out


def _is_relu(func: Callable) -> bool:
    try:
        return func in RELUS
    except TypeError:  # not hashable: not one of torch's functions, which all are
        return False


def _storage(t: torch.Tensor) -> int:
    return t.untyped_storage().data_ptr()


def _same_place(z: torch.Tensor, target: torch.Tensor) -> bool:
    """Whether target is z itself or a view of all of it, element for element (a copy of z is then target's values)."""
    return (z.data_ptr() == target.data_ptr() and z.dtype == target.dtype and z.shape == target.shape
            and z.stride() == target.stride())


def _running_module(names: dict[int, str]) -> str:
    """The innermost submodule (`names`: id → name) whose forward is on the Python call stack.

    Looked up only where an operation without a rule runs, so that the normal path pays nothing:
    hooks on every module to track the same thing cost two Python calls per module per forward pass.
    """
    frame = inspect.currentframe()
    while frame is not None:
        owner = frame.f_locals.get("self")
        if isinstance(owner, nn.Module) and id(owner) in names:
            return f"{names[id(owner)] or '<root>'} ({type(owner).__name__})"
        frame = frame.f_back
    return "<top level>"


@contextlib.contextmanager
def epsilon_rules(module: nn.Module, epsilon: float, model_name: str = "model") -> Iterator[None]:
    """While active, graphs built by forward passes of `module` backpropagate ε-LRP relevance.

    Parameters
    ----------
    module : nn.Module
        The model (a Python module: the rules catch its operations as they run).
    epsilon : float
        The ε of the rule: the stabiliser added, with the sign of z, to every denominator.
    model_name : str, default "model"
        The model's name, for error messages.

    Yields
    ------
    None
        Once, with the rules active.

    Raises
    ------
    AttributionError
        A TorchScript module, which runs outside the rules. (An operation without a rule raises
        it too, in the backward pass, when relevance reaches it.)
    """
    if isinstance(module, torch.jit.ScriptModule):
        # A TorchScript graph runs in the JIT interpreter, where no Python-level rule can reach it.
        raise AttributionError(
            f"{model_name}: ε-LRP needs the Python module; a TorchScript model runs outside its rules "
            "(use saliency or gradient_x_input, or load the model from Python source or a checkpoint)"
        )
    names = functools.cache(lambda: {id(sub): name for name, sub in module.named_modules()})
    with _EpsilonMode(epsilon, model_name, lambda: _running_module(names())):
        yield
