"""The README's zoo files ("Your own models" and the tutorial's) run as written, with `modelspace run`.

The test supplies only what the README leaves to its reader: the files the zoo names (a checkpoint,
the package whose class builds it, a Hugging Face folder), probe images, and the pretrained weights,
put where the README says they are read from (the Hugging Face cache for timm, torch hub's cache for
torchvision) as random-weight copies, since nothing can be downloaded here. One edit: the absolute
Hugging Face folder `/models/vit-small` is moved into the test's folder.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

timm = pytest.importorskip("timm", reason="the vision suite runs in .ci/run's second environment (DEVELOPERS.md)")
torchvision = pytest.importorskip("torchvision", reason="the vision suite runs in .ci/run's second environment")
transformers = pytest.importorskip("transformers")

from conftest import subprocess_env  # noqa: E402

README = Path(__file__).resolve().parents[2] / "README.md"

NETS = '''
from torch import nn


def _stages(width):
    return nn.Sequential(nn.Conv2d(3, width, 3, 2, 1), nn.ReLU(), nn.Conv2d(width, width, 3, 2, 1), nn.ReLU())


class Body(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.stem = _stages(width)
        self.layer4 = nn.Sequential(nn.Conv2d(width, width, 3, 2, 1), nn.ReLU())

    def forward(self, x):
        return self.layer4(self.stem(x))


class DepthNet(nn.Module):
    def __init__(self, width=16):
        super().__init__()
        self.encoder = Body(width)
        self.head = nn.Conv2d(width, 1, 1)

    def forward(self, x):
        return self.head(self.encoder(x))


class SegNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = Body(8)
        self.head = nn.Conv2d(8, 5, 1)

    def forward(self, x):
        return self.head(self.backbone(x))
'''


def block(section: str, language: str) -> str:
    """The first ```language block of the README after the heading `section`."""
    text = README.read_text(encoding="utf-8")
    start = text.index(f"\n## {section}\n")
    return re.search(rf"```{language}\n(.*?)```", text[start:], re.S).group(1)


def cache_timm_weights(name: str, cache: Path) -> None:
    """Random weights of timm model `name`, where timm's default pretrained tag is read from offline."""
    from safetensors.torch import save_file

    model = timm.create_model(name, pretrained=False)
    repo = cache / ("models--" + model.pretrained_cfg["hf_hub_id"].replace("/", "--"))
    commit = "0" * 40
    if (repo / "snapshots" / commit / "model.safetensors").is_file():
        return
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots" / commit).mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(repo / "snapshots" / commit / "model.safetensors"))


def cache_torchvision_weights(name: str, torch_home: Path) -> None:
    weights = torchvision.models.get_model_weights(name).DEFAULT
    path = torch_home / "hub" / "checkpoints" / Path(weights.url).name
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(torchvision.models.get_model(name).state_dict(), path)


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("readme")
    (root / "my_package").mkdir()
    (root / "my_package" / "__init__.py").write_text("")
    (root / "my_package" / "nets.py").write_text(NETS)
    env = subprocess_env()
    env.update(PYTHONPATH=env["PYTHONPATH"] + ":" + str(root), HF_HUB_CACHE=str(root / "hf"), HF_HUB_OFFLINE="1",
               TORCH_HOME=str(root / "torch"))
    rng = np.random.default_rng(0)
    (root / "probe_dir").mkdir()
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (240, 240, 3), dtype=np.uint8)).save(root / "probe_dir" / f"{i}.png")
    return {"root": root, "env": env}


def run(zoo: Path, home: dict) -> dict:
    out = zoo.parent / f"out-{zoo.stem}"
    done = subprocess.run([sys.executable, "-m", "modelspace.cli", "run", str(zoo), str(home["root"] / "probe_dir"),
                           "--out", str(out), "--quiet", "--no-report"],
                          cwd=zoo.parent, env=home["env"], capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((out / "results.json").read_text())


def save_checkpoint(cls: str, path: Path, **kwargs) -> None:
    """The state dict of `my_package.nets.<cls>` (built from the same source the zoo imports)."""
    namespace: dict = {}
    exec(NETS, namespace)
    torch.manual_seed(0)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(namespace[cls](**kwargs).state_dict(), path)


def test_the_your_own_models_zoo_runs_as_written(home) -> None:
    root = home["root"]
    text = block("Your own models", "toml")
    folder = root / "models" / "vit-small"
    assert '"hf:/models/vit-small"' in text
    (root / "zoo.toml").write_text(text.replace('"hf:/models/vit-small"', json.dumps(f"hf:{folder}")))
    cache_timm_weights("resnet50", root / "hf")
    save_checkpoint("DepthNet", root / "weights" / "depth.pt", width=64)
    config = transformers.ViTConfig(image_size=64, patch_size=8, hidden_size=32, num_hidden_layers=2,
                                    num_attention_heads=2, intermediate_size=64)
    transformers.ViTModel(config, add_pooling_layer=False).save_pretrained(folder)
    transformers.ViTImageProcessor(size={"height": 64, "width": 64}, image_mean=[0.5] * 3,
                                   image_std=[0.5] * 3).save_pretrained(folder)

    results = run(root / "zoo.toml", home)
    assert results["failures"] == []
    got = {m["name"]: m for m in results["models"]}
    assert list(got) == ["resnet50_in1k", "my_depth_net", "hf_vit"]
    assert results["probe"]["size"] == 224  # the zoo's largest side (256), capped
    for method in results["methods"]:
        assert (root / "out-zoo" / f"affinity_{method.split('(')[0]}.csv").is_file()
    preprocessing = {name: json.dumps(m.get("preprocessing")) for name, m in got.items()}
    assert "timm" in preprocessing["resnet50_in1k"]
    assert "[256, 256]" in preprocessing["my_depth_net"] and "zoo" in preprocessing["my_depth_net"]
    assert "[64, 64]" in preprocessing["hf_vit"] and "processor" in preprocessing["hf_vit"]


def test_the_tutorial_zoo_runs_as_written(home) -> None:
    root = home["root"]
    (root / "zoo.yaml").write_text(block("Tutorial: your models, your probe images, the report", "yaml"))
    cache_timm_weights("resnet50", root / "hf")
    cache_timm_weights("convnext_tiny", root / "hf")
    cache_torchvision_weights("resnet18", root / "torch")
    save_checkpoint("SegNet", root / "weights" / "seg.pt")

    results = run(root / "zoo.yaml", home)
    assert results["failures"] == []
    assert [m["name"] for m in results["models"]] == ["resnet50", "convnext_t", "r18_tv", "my_seg_net"]
