"""Every example of the README runs as written (`docs_examples`): each section's files saved, its
scripts and commands run in order, in a fresh folder, with `modelspace` of this environment.

The test supplies only what the README leaves to its reader's machine, never a name its code uses:
the probe images (``probe_images/``, photo-like crops) and the pretrained weights of the timm,
torchvision and Hugging Face models the section's zoo files name, put where the README says they are
read from (the Hugging Face cache, torch hub's cache) as random-weight copies, since nothing can be
downloaded here. The blocks it does not run are listed in `NOT_RUN`, each with its reason, and the
test fails when that list and the README disagree.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

timm = pytest.importorskip("timm", reason="the vision suite runs in .ci/run's second environment (DEVELOPERS.md)")
torchvision = pytest.importorskip("torchvision", reason="the vision suite runs in .ci/run's second environment")
transformers = pytest.importorskip("transformers")

from support.runs import subprocess_env  # noqa: E402
from support.docs_examples import blocks, run_section, sections  # noqa: E402
from modelspace.models import load_zoo  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"

NOT_RUN = {
    "python3 -m venv .venv && .venv/bin/pip install torch==2.13.0 -e . && .venv/bin/modelspace demo":
        ".ci/run runs the demo command as written, after the tests",
    "python3 -m venv .venv && .venv/bin/pip install torch==2.13.0 -e \".[test]\" && .venv/bin/python -m pytest":
        ".ci/run is this command",
    "PIP_CONFIG_FILE=/dev/null PIP_FIND_LINKS= pip install torch==2.13.0 torchvision==0.28.0":
        ".ci/run builds the vision environment with its pins (tests/cli/test_user_workflow.py)",
    ".venv/bin/modelspace study": "37 minutes; tests/world/test_study.py runs the study on a small world",
    "--executor ray --ray-address auto --device cuda":
        "needs a Ray cluster with GPUs; tests/maps/execution/test_ray.py runs a two-node cluster on this machine, CPU only",
    "python -m modelspace.world.build": "hours of training; tests/world/test_build.py builds a small world",
}

# Hub ids a zoo of the README names: the config of the random-weight copy put in the HF cache.
HF_MODELS = {
    "facebook/deit-tiny-patch16-224": dict(hidden_size=192, num_hidden_layers=12, num_attention_heads=3,
                                           intermediate_size=768, image_size=224, patch_size=16),
}
PROBE_IMAGES = 6


def runnable() -> dict[str, list]:
    """The README's sections with blocks to run, those of `NOT_RUN` left out."""
    out = {}
    for title, found in sections(README).items():
        kept = [b for b in found if not any(marker in b.text for marker in NOT_RUN)]
        if kept:
            out[title] = kept
    return out


def write_probe(folder: Path, seed: int = 0) -> None:
    """Photo-like probe images: smooth colour gradients with a few shapes, 240 px."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:240, 0:240] / 240.0
    for i in range(PROBE_IMAGES):
        base = np.stack([xx * rng.uniform(0.3, 1), yy * rng.uniform(0.3, 1), (xx + yy) / 2], axis=2)
        for _ in range(4):
            cx, cy, r = rng.uniform(40, 200, 2).tolist() + [rng.uniform(10, 50)]
            base[(xx * 240 - cx) ** 2 + (yy * 240 - cy) ** 2 < r ** 2] = rng.uniform(0, 1, 3)
        Image.fromarray((base * 255).astype(np.uint8)).save(folder / f"{i}.jpg")


def cache_timm_weights(name: str, cache: Path) -> None:
    """Random weights of timm model `name`, where timm's default pretrained tag is read from offline."""
    from safetensors.torch import save_file

    model = timm.create_model(name, pretrained=False)
    snapshot = _snapshot(cache, model.pretrained_cfg["hf_hub_id"])
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(snapshot / "model.safetensors"))


def cache_torchvision_weights(name: str, torch_home: Path) -> None:
    weights = torchvision.models.get_model_weights(name).DEFAULT
    path = torch_home / "hub" / "checkpoints" / Path(weights.url).name
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(torchvision.models.get_model(name).state_dict(), path)


def cache_hf_model(hub_id: str, cache: Path) -> None:
    if hub_id not in HF_MODELS:
        raise AssertionError(f"the README names hf:{hub_id}; give its config in HF_MODELS")
    snapshot = _snapshot(cache, hub_id)
    config = transformers.ViTConfig(**HF_MODELS[hub_id])
    torch.manual_seed(0)
    transformers.ViTModel(config, add_pooling_layer=False).save_pretrained(snapshot)
    transformers.ViTImageProcessor(size={"height": config.image_size, "width": config.image_size}).save_pretrained(snapshot)


def _snapshot(cache: Path, hub_id: str) -> Path:
    """The snapshot folder of `hub_id` in a Hugging Face cache, as the hub client lays it out."""
    repo = cache / ("models--" + hub_id.replace("/", "--"))
    commit = "0" * 40
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots" / commit).mkdir(parents=True, exist_ok=True)
    return repo / "snapshots" / commit


def machine(root: Path):
    """What a reader's machine holds before the section's first command: images and cached weights."""

    done = set()

    def prepare(folder: Path) -> None:
        if not (folder / "probe_images").exists():
            write_probe(folder / "probe_images")
            for label in ("a", "b"):  # labelled images of the reader's task: one subfolder per class
                write_probe(folder / "labelled" / label, seed=ord(label))
        for zoo in [*folder.glob("*.toml"), *folder.glob("*.yaml")]:
            for spec in load_zoo(zoo):
                if not spec.pretrained or spec.prefix not in ("timm", "torchvision", "hf") or spec.source in done:
                    continue
                done.add(spec.source)
                name = spec.source.split(":", 1)[1]
                {"timm": lambda: cache_timm_weights(name, root / "hf"),
                 "torchvision": lambda: cache_torchvision_weights(name, root / "torch"),
                 "hf": lambda: cache_hf_model(name, root / "hf")}[spec.prefix]()

    return prepare


@pytest.fixture
def reader(tmp_path) -> dict:
    env = subprocess_env()
    env.update(HF_HUB_CACHE=str(tmp_path / "hf"), HF_HUB_OFFLINE="1", TORCH_HOME=str(tmp_path / "torch"))
    folder = tmp_path / "work"
    folder.mkdir()
    return {"env": env, "folder": folder, "prepare": machine(tmp_path)}


def test_not_run_names_blocks_of_the_readme_and_every_other_block_runs_or_is_shown() -> None:
    every = blocks(README)
    for marker in NOT_RUN:
        matches = [b for b in every if marker in b.text]
        assert len(matches) == 1, f"NOT_RUN's {marker!r} matches {len(matches)} README blocks"
        assert matches[0].language == "sh", matches[0].where
    assert set(runnable()) == {"Your own models", "Tutorial: your models, your probe images, the report"}


@pytest.mark.parametrize("title", ["Your own models", "Tutorial: your models, your probe images, the report"])
def test_the_readme_section_runs_as_written(title, reader) -> None:
    folder = reader["folder"]
    run_section(runnable()[title], folder, reader["env"], before_commands=reader["prepare"])
    if title == "Your own models":
        # The commands, then the Python example, which adds depth_v2 and saves results/ with its page.
        results = json.loads((folder / "results" / "results.json").read_text())
        assert [m["name"] for m in results["models"]] == ["resnet50_in1k", "my_depth_net", "my_seg_net",
                                                         "deit_tiny", "depth_v2"]
        assert results["failures"] == [] and results["evaluation"] is not None
        assert any(b.startswith("dds") for b in results["baselines"])  # the CLI's defaults, from the API
        labelled = json.loads((folder / "modelspace-out" / "results.json").read_text())  # the --labels run
        assert set(labelled["label_scores"]["hscore"]) == {"resnet50_in1k", "my_depth_net", "my_seg_net", "deit_tiny"}
        assert (folder / "results" / "report.html").is_file()
        got = {m["name"]: json.dumps(m["preprocessing"]) for m in results["models"]}
        assert "timm" in got["resnet50_in1k"] and "[256, 256]" in got["my_depth_net"]
        assert "processor" in got["deit_tiny"]
    else:
        results = json.loads((folder / "modelspace-out" / "results.json").read_text())
        assert [m["name"] for m in results["models"]] == ["resnet50", "convnext_t", "r18_tv"]
        assert results["failures"] == [] and (folder / "modelspace-out" / "report.html").is_file()
        assert "hscore" in results["label_scores"] and len(results["label_scores"]["hscore"]) == 3  # step 4, --labels
