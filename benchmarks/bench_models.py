"""The models the benchmark measures: the built-in zoo's (random-weight copies of its architectures
if it has not been built), random-weight Hugging Face ResNet-18, ResNet-50 and ViT-S, and the
Taskonomy encoder with random weights."""


import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn


from harness import Config, progress, short
from modelspace.models.encoder import EncoderTap, first_tensor
from modelspace.models.sources import hf_default_encoder

# ------------------------------------------------------------------------------------ models


@dataclass
class BenchModel:
    """A model under test: the full module (what `attribute` gets), its encoder name, an input
    batch, and the plain input → R path without hooks (the floor, and Captum's model)."""

    name: str
    module: nn.Module
    encoder: str | None
    x: torch.Tensor
    path: nn.Module | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def shape(self) -> str:
        return "×".join(str(s) for s in self.x.shape)


class EncoderPath(nn.Module):
    """Input → R through the model's leading top-level children, nothing else (no hooks).

    Each step's output is reduced to its first tensor (a Hugging Face encoder returns a ModelOutput).
    """

    def __init__(self, steps: list[nn.Module]) -> None:
        super().__init__()
        self.steps = nn.ModuleList(steps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for step in self.steps:
            x = first_tensor(step(x))
        return x


class MeanHead(nn.Module):
    """R → mean(R) per sample as a module with constant weights 1/D (Captum needs a module to put a
    rule on): a convolution covering the whole feature map for (C, H, W), a linear layer otherwise."""

    def __init__(self, r_shape: tuple[int, ...]) -> None:
        super().__init__()
        d = math.prod(r_shape)
        if len(r_shape) == 3:
            self.op = nn.Conv2d(r_shape[0], 1, tuple(r_shape[1:]), bias=False)
        else:
            self.op = nn.Linear(d, 1, bias=False)
        nn.init.constant_(self.op.weight, 1.0 / d)
        self.op.weight.requires_grad_(False)
        self.flatten_first = len(r_shape) != 3

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        if self.flatten_first:
            r = r.reshape(r.shape[0], -1)
        return self.op(r).reshape(r.shape[0], 1)


class CaptumModel(nn.Module):
    """x → mean(R): the scalar Captum attributes, one per sample (target 0)."""

    def __init__(self, path: nn.Module, r_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.path = path
        self.head = MeanHead(r_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.path(x))


def freeze(module: nn.Module) -> nn.Module:
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def leading_steps(module: nn.Module, parts: list[str]) -> list[nn.Module] | None:
    """The children of `module` before the one named parts[0], then that one (or, for a dotted
    name, the leading steps inside it): what a sequential forward runs up to the encoder."""
    steps: list[nn.Module] = []
    for name, child in module.named_children():
        if name == parts[0]:
            if len(parts) == 1:
                return steps + [child]
            inner = leading_steps(child, parts[1:])
            return None if inner is None else steps + inner
        steps.append(child)
    return None


def encoder_path(model: BenchModel) -> None:
    """Set `model.path` to the plain input → R path (the model's leading modules, run one after the
    other), if it computes exactly the R that `EncoderTap` captures (checked on the batch); else
    leave it None and say why. A path the model list wrote out (`TaskonomyPath`) is kept."""
    if model.path is not None:
        return
    if model.encoder is None:
        model.path = model.module
        return
    steps = leading_steps(model.module, model.encoder.split("."))
    if steps is None:
        model.notes.append(f"no module {model.encoder!r}: floor and Captum skipped")
        return
    path = EncoderPath(steps)
    with torch.no_grad():
        want = EncoderTap(model.module, model.encoder, model.name)(model.x)
        try:
            got = path(model.x)
        except Exception as exc:
            got = exc
    if not isinstance(got, torch.Tensor) or got.shape != want.shape or \
            not torch.allclose(got, want, rtol=1e-5, atol=1e-6):
        model.notes.append("running the leading modules in order does not reproduce R: floor and Captum skipped")
        return
    model.path = path


def zoo_models(cfg: Config, quick: bool) -> list[BenchModel]:
    """3-4 models of the built-in zoo (one per architecture), or random-weight ones of the same
    architectures when the trained zoo is not there yet."""
    wanted = ["depth_z", "depth_z@vgg48", "depth_z@resnet80", "depth_z@mobilenet64"]
    out: list[BenchModel] = []
    gen = torch.Generator().manual_seed(0)
    probe = torch.rand(cfg.zoo_batch, 3, 64, 64, generator=gen)  # probe images in [0, 1], as T_i gets them
    try:
        from modelspace.models import load_model, load_zoo
        from modelspace.world.build import ZOO_DIR

        specs = {s.name: s for s in load_zoo(ZOO_DIR / "zoo.toml")}
        for name in wanted:
            spec = specs.get(name)
            if spec is None or not Path(spec.ref).is_file():
                continue
            loaded = load_model(spec)
            x = loaded.transform(probe)
            out.append(BenchModel(f"zoo:{name}", loaded.module, loaded.encoder, x,
                                  notes=["trained zoo weights"]))
    except Exception as exc:  # the zoo is being built, or not at all: fall back below
        progress(f"(zoo not loadable: {short(exc)}; using random-weight zoo architectures)")
        out = []
    if len(out) < 3:
        from modelspace.world import nets

        out = []
        torch.manual_seed(0)
        for arch, size in (("restasknet", 64), ("vgg", 48), ("resnet", 80), ("mobilenet", 64)):
            module = freeze(nets.build(arch, out_channels=1))
            x = torch.nn.functional.interpolate(probe, size=(size, size), mode="bilinear", align_corners=False)
            out.append(BenchModel(f"{arch} (random weights)", module, nets.ENCODERS[arch], (x - 0.5) / 0.25,
                                  notes=["zoo weights not available: random weights, same architecture"]))
    return out


def hf_models(cfg: Config) -> list[BenchModel]:
    """ResNet-18/50- and ViT-S-sized Hugging Face models with random weights."""
    try:
        from transformers import ResNetConfig, ResNetModel, ViTConfig, ViTModel
    except ImportError as exc:
        progress(f"(transformers not importable: {exc}; Hugging Face models skipped)")
        return []
    size, b = cfg.hf_size, cfg.hf_batch
    x = torch.randn(b, 3, size, size, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(0)
    models = []
    resnets = {
        "hf ResNet-18": dict(hidden_sizes=[64, 128, 256, 512], depths=[2, 2, 2, 2], layer_type="basic"),
        "hf ResNet-50": dict(hidden_sizes=[256, 512, 1024, 2048], depths=[3, 4, 6, 3], layer_type="bottleneck"),
    }
    for name, kw in resnets.items():
        module = freeze(ResNetModel(ResNetConfig(embedding_size=64, hidden_act="relu", **kw)))
        models.append(BenchModel(name, module, "encoder", x.clone(), notes=["random weights"]))
    vit = ViTConfig(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, intermediate_size=1536,
                    image_size=size, patch_size=16)
    module = freeze(ViTModel(vit, add_pooling_layer=False))
    # modelspace's own default for a transformers model: `encoder` (4.x), else the last block (5.x).
    encoder = hf_default_encoder(module)
    models.append(BenchModel("hf ViT-S/16", module, encoder, x.clone(),
                             notes=[f"random weights; encoder {encoder!r} (modelspace's default for this model)"]))
    return models



class TaskonomyPath(nn.Module):
    """Input → R (``relu1``) of a Taskonomy encoder, written out: its forward pads the input
    functionally, so running its leading children in order would not reproduce R. It holds the
    modules before R only (Captum refuses a model holding one it has no rule for, used or not)."""

    STEPS = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4", "compress1",
             "compress_bn", "relu1")

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.steps = nn.ModuleList(getattr(encoder, name) for name in self.STEPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.nn.functional.pad(x, (3, 3, 3, 3))
        for step in self.steps:
            x = step(x)
        return x


def taskonomy_models(cfg: Config, quick: bool) -> list[BenchModel]:
    """The Taskonomy encoder (the `taskonomy:` source's architecture) with random weights, at its
    256² input in [-1, 1] (64² in the smoke configuration), half the batch of the Hugging Face models
    (its input has 1.3 times their pixels; half bounds the time it adds to the section)."""
    from modelspace.models.taskonomy import ENCODER, TaskonomyEncoder

    torch.manual_seed(0)
    module = freeze(TaskonomyEncoder())
    size = 64 if quick else 256
    x = torch.rand(max(1, cfg.hf_batch // 2), 3, size, size, generator=torch.Generator().manual_seed(2)) * 2 - 1
    model = BenchModel("taskonomy encoder", module, ENCODER, x, notes=["random weights"])
    with torch.no_grad():
        want = EncoderTap(module, ENCODER, model.name)(x)
        path = TaskonomyPath(module)
        if torch.allclose(path(x), want, rtol=1e-5, atol=1e-6):
            model.path = path
        else:
            model.notes.append("the written-out path does not reproduce R: floor and Captum skipped")
    return [model]


def lever_models(cfg: Config, quick: bool) -> list[BenchModel]:
    """Two zoo architectures and the Hugging Face ResNet-18 for the levers section."""
    zoo = [m for m in zoo_models(cfg, quick) if "resnet" in m.name or "mobilenet" in m.name]
    hf = [m for m in hf_models(cfg) if "ResNet-18" in m.name]
    return zoo + hf
