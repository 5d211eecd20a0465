"""Attribution maps checked against independent references.

References: closed forms on a linear model, central finite differences, and Captum's
Saliency / InputXGradient / IntegratedGradients / LRP(EpsilonRule) on small CNNs with
BatchNorm, max-pooling and residual blocks. Everything runs in float64 so that the
tolerances can be tight (rtol 1e-9 against closed forms, 1e-7 against Captum).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from modelspace.attribution import attribute, get_method, input_baseline
from modelspace.errors import AttributionError, InputError
from support.nets import Add, cnn, inputs, resnet
from toy_models import MeanHead

captum_attr = pytest.importorskip("captum.attr")
from captum.attr._utils.lrp_rules import EpsilonRule  # noqa: E402

EPS = 1e-2  # large enough that a misplaced stabiliser would show


def with_head(encoder: nn.Module, x: torch.Tensor) -> MeanHead:
    with torch.no_grad():
        shape = tuple(encoder(x[:1]).shape[1:])
    return MeanHead(encoder, shape).eval()


# ---------------------------------------------------------------- closed forms and finite differences


def test_linear_model_closed_forms() -> None:
    torch.manual_seed(0)
    lin = nn.Linear(12, 5).double()
    x = torch.randn(4, 12, dtype=torch.float64)
    w, b = lin.weight.detach(), lin.bias.detach()
    r = x @ w.T + b  # (4, 5)
    d = r.shape[1]

    grad = w.mean(0).expand_as(x)
    torch.testing.assert_close(attribute(lin, x, "saliency"), grad.abs(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(attribute(lin, x, "gradient_x_input"), x * grad, rtol=1e-12, atol=1e-12)

    # ε-LRP: R_i = Σ_k x_i W_ki (r_k / D) / (r_k + ε sign r_k)
    sign = torch.where(r >= 0, 1.0, -1.0).double()
    share = (r / d) / (r + EPS * sign)
    expected = x * (share @ w)
    got = attribute(lin, x, get_method("lrp_epsilon", epsilon=EPS))
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


def test_saliency_matches_finite_differences() -> None:
    net = cnn()
    x = inputs(n=1, size=6)
    got = attribute(net, x, "gradient")
    numeric = torch.zeros_like(x)
    h = 1e-6
    flat = x.view(-1)
    for i in range(flat.numel()):
        plus, minus = flat.clone(), flat.clone()
        plus[i] += h
        minus[i] -= h
        numeric.view(-1)[i] = (net(plus.view_as(x)).mean() - net(minus.view_as(x)).mean()) / (2 * h)
    torch.testing.assert_close(got, numeric, rtol=1e-6, atol=1e-9)


def test_batch_is_per_sample() -> None:
    net, x = resnet("functional"), inputs(n=3)
    for method in ("saliency", "lrp_epsilon"):
        whole = attribute(net, x, method)
        single = torch.cat([attribute(net, x[i : i + 1], method) for i in range(3)])
        torch.testing.assert_close(whole, single, rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------- against Captum


@pytest.mark.parametrize("build", [cnn, lambda: resnet("module")], ids=["cnn", "resnet"])
def test_gradient_methods_match_captum(build) -> None:
    net, x = build(), inputs()
    wrapped = with_head(net, x)
    sal = captum_attr.Saliency(wrapped).attribute(x, target=0, abs=True)
    gxi = captum_attr.InputXGradient(wrapped).attribute(x, target=0)
    torch.testing.assert_close(attribute(net, x, "saliency"), sal, rtol=1e-9, atol=1e-14)
    torch.testing.assert_close(attribute(net, x, "gradient_x_input"), gxi, rtol=1e-9, atol=1e-14)


def test_integrated_gradients_matches_captum() -> None:
    net, x = resnet("module"), inputs()
    ref = captum_attr.IntegratedGradients(with_head(net, x)).attribute(
        x, baselines=0.0, target=0, n_steps=8, method="riemann_middle"
    )
    torch.testing.assert_close(attribute(net, x, get_method("ig", steps=8)), ref, rtol=1e-9, atol=1e-14)


@pytest.mark.parametrize("kind", ["mean", "blur"])
def test_integrated_gradients_from_an_input_baseline_matches_captum(kind: str) -> None:
    net, x = resnet("module"), inputs(size=16)
    x0 = input_baseline(x, kind)
    ref = captum_attr.IntegratedGradients(with_head(net, x)).attribute(
        x, baselines=x0, target=0, n_steps=8, method="riemann_middle"
    )
    torch.testing.assert_close(attribute(net, x, get_method("ig", steps=8, baseline=kind)), ref, rtol=1e-9, atol=1e-14)


@pytest.mark.parametrize("kind", ["mean", "blur"])
def test_gradient_times_input_minus_baseline_matches_captum(kind: str) -> None:
    # Captum's InputXGradient of x − x₀ at x: the gradient of a model evaluated at (x − x₀) + x₀
    net, x = cnn(), inputs(size=16)
    x0 = input_baseline(x, kind)
    head = with_head(net, x)
    shifted = captum_attr.InputXGradient(lambda d: head(d + x0)).attribute(x - x0, target=0)
    torch.testing.assert_close(attribute(net, x, get_method("gxi", baseline=kind)), shifted, rtol=1e-9, atol=1e-14)
    subspace = attribute(net, x, get_method("gradient_x_input_subspace", directions=2, baseline=kind))
    plain = attribute(net, x, get_method("gradient_x_input_subspace", directions=2))
    grad = plain / x.unsqueeze(1)  # x ⊙ g, with no zero in x: the same gradients read against another baseline
    torch.testing.assert_close(subspace, (x - x0).unsqueeze(1) * grad, rtol=1e-7, atol=1e-12)


def test_input_baselines_against_scipy() -> None:
    from scipy.ndimage import gaussian_filter

    x = inputs(n=2, size=48)[:, :, :, :40]  # not square: σ follows the shorter side (40 / 16 = 2.5)
    blurred = gaussian_filter(x.numpy(), sigma=(0, 0, 2.5, 2.5), mode="mirror", truncate=int(3 * 2.5 + 0.5) / 2.5)
    torch.testing.assert_close(input_baseline(x, "blur"), torch.from_numpy(blurred), rtol=0, atol=1e-12)
    torch.testing.assert_close(input_baseline(x, "mean"), x.mean(dim=(2, 3), keepdim=True).expand_as(x))
    assert (input_baseline(x, "zero") == 0).all()
    with pytest.raises(InputError, match="baseline must be one of zero, mean, blur"):
        get_method("gxi", baseline="grey")
    # the paper's ids, and so its stored maps, are unchanged; the others carry the baseline
    assert get_method("gxi").id == "gradient_x_input" and get_method("ig", steps=8).id == "integrated_gradients(steps=8)"
    assert get_method("gxi", baseline="blur").id == "gradient_x_input(baseline='blur')"
    assert get_method("gxi", baseline="blur").plain_gradient  # shares saliency's backward pass


def captum_lrp(net: nn.Module, x: torch.Tensor, epsilon: float) -> torch.Tensor:
    """Captum's LRP with the ε rule on every layer, and ε = 0 on the mean head, so that the
    relevance at R starts from mean(R)'s own terms R_k / D exactly."""
    wrapped = with_head(net, x)
    for m in wrapped.modules():
        if isinstance(m, (nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d, nn.AvgPool2d, Add)):
            m.rule = EpsilonRule(epsilon=epsilon)
    wrapped.head.rule = EpsilonRule(epsilon=0.0)
    return captum_attr.LRP(wrapped).attribute(x, target=0)


@pytest.mark.parametrize("style", ["module", "functional", "inplace"])
def test_lrp_matches_captum_on_residual_net(style: str) -> None:
    x = inputs()
    reference = captum_lrp(resnet("module"), x, EPS)
    got = attribute(resnet(style), x, get_method("lrp_epsilon", epsilon=EPS))
    torch.testing.assert_close(got, reference, rtol=1e-7, atol=1e-12)


def test_lrp_matches_captum_on_cnn() -> None:
    x = inputs()
    reference = captum_lrp(cnn(), x, EPS)
    got = attribute(cnn(), x, get_method("lrp_epsilon", epsilon=EPS))
    torch.testing.assert_close(got, reference, rtol=1e-7, atol=1e-12)


# ---------------------------------------------------------------- LRP properties and errors


def test_lrp_differs_from_gradient_x_input_when_epsilon_matters() -> None:
    """The genuine rule is not gradient×input in disguise (the seed paper's form is)."""
    net, x = resnet("functional"), inputs()
    lrp = attribute(net, x, get_method("lrp_epsilon", epsilon=0.5))
    gxi = attribute(net, x, "gradient_x_input")
    assert (lrp - gxi).abs().max() > 1e-3 * gxi.abs().max()


def test_lrp_equals_gradient_x_input_without_bias_and_small_epsilon() -> None:
    """Known identity: LRP-0 on a bias-free ReLU chain is gradient×input."""
    torch.manual_seed(3)
    net = nn.Sequential(nn.Conv2d(3, 5, 3, bias=False), nn.ReLU(), nn.Conv2d(5, 4, 3, bias=False)).double().eval()
    x = inputs()
    lrp = attribute(net, x, get_method("lrp_epsilon", epsilon=1e-12))
    torch.testing.assert_close(lrp, attribute(net, x, "gradient_x_input"), rtol=1e-6, atol=1e-12)


def test_lrp_conserves_relevance_without_bias() -> None:
    """Without biases, ε → 0 relevance sums to mean(R) for every sample."""
    torch.manual_seed(4)
    net = nn.Sequential(nn.Conv2d(3, 5, 3, bias=False), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(5, 4, 1, bias=False))
    net = net.double().eval()
    x = inputs()
    relevance = attribute(net, x, get_method("lrp_epsilon", epsilon=1e-12)).sum(dim=(1, 2, 3))
    torch.testing.assert_close(relevance, net(x).mean(dim=(1, 2, 3)), rtol=1e-8, atol=1e-12)


def test_lrp_refuses_local_response_norm_and_names_it() -> None:
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.LocalResponseNorm(2)).double().eval()
    with pytest.raises(AttributionError, match=r"toy.*local_response_norm.*2 \(LocalResponseNorm\)"):
        attribute(net, inputs(), "lrp", model_name="toy")


class Bilinear(nn.Module):
    """A product of two activations with no gate, attention weights or scale among them."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.conv(x)


def test_lrp_refuses_products_of_activations() -> None:
    with pytest.raises(AttributionError, match=r"bilinear: .*mul.* in module <root> \(Bilinear\) \(a product of two activations"):
        attribute(Bilinear().double().eval(), inputs(), "lrp", model_name="bilinear")
    # the gradient methods have no such restriction
    assert attribute(Bilinear().double().eval(), inputs(), "saliency").abs().sum() > 0


def test_encoder_output_that_ignores_input_gives_zero_maps() -> None:
    class Constant(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bias = nn.Parameter(torch.ones(4))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.bias.expand(x.shape[0], 4)

    maps = attribute(Constant(), inputs(), "saliency")
    assert maps.shape == inputs().shape and maps.abs().sum() == 0


def test_parameters_are_left_as_they_were() -> None:
    net = cnn()
    flags = [p.requires_grad for p in net.parameters()]
    attribute(net, inputs(), "lrp")
    assert [p.requires_grad for p in net.parameters()] == flags
    assert all(p.grad is None for p in net.parameters())


def test_method_registry_and_ids() -> None:
    assert get_method("gxi").name == "gradient_x_input"
    assert get_method("lrp", epsilon=0.1).id == "lrp_epsilon(epsilon=0.1)"
    with pytest.raises(InputError, match="unknown attribution method 'nope'"):
        get_method("nope")
    with pytest.raises(InputError, match="epsilon"):
        get_method("lrp", epsilon=-1)
    with pytest.raises(InputError, match="no parameter"):
        get_method("saliency", epsilon=1)


def test_attribute_many_shares_the_backward_pass_and_changes_nothing() -> None:
    from modelspace.attribution import attribute_many

    net, x = resnet("functional"), inputs()
    methods = [get_method("saliency"), get_method("gxi"), get_method("lrp", epsilon=EPS)]
    assert [m.plain_gradient for m in methods] == [True, True, False]
    together = attribute_many(net, x, methods)
    for m in methods:
        torch.testing.assert_close(together[m.id], attribute(net, x, m), rtol=0, atol=0)


def test_a_method_whose_rules_changed_gets_a_new_store_key_not_a_new_id() -> None:
    lrp = get_method("lrp", epsilon=1e-6)
    assert lrp.id == "lrp_epsilon(epsilon=1e-06)" and lrp.store_id == f"{lrp.id}#rules{lrp.rules_version}"
    assert lrp.rules_version >= 2 and get_method("saliency").store_id == "saliency"
