"""The examples whose zoos name timm, torchvision and Hugging Face models run as written (`docs_examples`):
the README's "Your own models", and the sections of the docs' pages that `RUN_ELSEWHERE` gives to this
file. Each section's files are saved, its scripts and commands run in order, in a fresh folder, with
`modelspace` of this environment.

The test supplies only what a page leaves to its reader's machine, never a name its code uses: the probe
images (``probe_images/``, photo-like crops) and the pretrained weights of the timm, torchvision and
Hugging Face models the section's zoo files name, put where the page says they are read from (the
Hugging Face cache, torch hub's cache) as random-weight copies, since nothing can be downloaded here. The
README blocks it does not run are listed in `NOT_RUN`, each with its reason, and the test fails when that
list and the README disagree.
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
from support.docs_examples import RUN_ELSEWHERE, blocks, run_section, sections  # noqa: E402
from modelspace.models import load_zoo  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
DOCS = REPO / "docs"

NOT_RUN = {
    "python3 -m venv .venv && .venv/bin/pip install torch==2.13.0 -e . && .venv/bin/modelspace demo":
        ".ci/run runs the demo command as written, after the tests",
    "python3 -m venv .venv && .venv/bin/pip install torch==2.13.0 -e \".[test]\" && .venv/bin/python -m pytest":
        ".ci/run is this command",
}

#: The README's section, and the pages' sections `RUN_ELSEWHERE` gives to this file: (page, section title).
HERE = "tests/vision/test_examples_on_real_models.py"
README_SECTION = "Your own models"
OWN_MODELS = ("getting-started/own-models.md", "A zoo of timm, Hugging Face and your own networks")
TUTORIAL = ("getting-started/report.md", "Your models, your probe images, the report")

# Hub ids a zoo of these pages names: the config of the random-weight copy put in the HF cache.
HF_MODELS = {
    "facebook/deit-tiny-patch16-224": dict(hidden_size=192, num_hidden_layers=12, num_attention_heads=3,
                                           intermediate_size=768, image_size=224, patch_size=16),
}
PROBE_IMAGES = 6


def readme_runnable() -> dict[str, list]:
    """The README's sections with blocks to run, those of `NOT_RUN` left out."""
    out = {}
    for title, found in sections(README).items():
        kept = [b for b in found if not any(marker in b.text for marker in NOT_RUN)]
        if kept:
            out[title] = kept
    return out


def page_section(page: str, title: str) -> list:
    """The runnable blocks of one section of a docs page."""
    return sections(DOCS / page)[title]


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
        raise AssertionError(f"a page names hf:{hub_id}; give its config in HF_MODELS")
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
    assert set(readme_runnable()) == {README_SECTION}


def test_the_sections_given_to_this_file_are_the_ones_it_runs() -> None:
    mine = {key for key, where in RUN_ELSEWHERE.items() if where.startswith(HERE)}
    assert mine == {OWN_MODELS, TUTORIAL}
    for page, title in mine:
        assert page_section(page, title), (page, title)


def test_the_readme_example_runs_as_written(reader) -> None:
    """The zoo, the three commands, then the Python example, which reuses the commands' store."""
    folder = reader["folder"]
    done = run_section(readme_runnable()[README_SECTION], folder, reader["env"], before_commands=reader["prepare"])
    results = json.loads((folder / "results" / "results.json").read_text())
    assert [m["name"] for m in results["models"]] == ["resnet50", "convnext_tiny", "resnet18_tv"]
    assert results["failures"] == [] and any(b.startswith("dds") for b in results["baselines"])
    assert results["work"]["computed"] == 0  # the Python example found the commands' maps in the store
    assert (folder / "results" / "report.html").is_file() and (folder / "results" / "page.html").is_file()
    printed = done[-1].stdout.splitlines()  # each model and its two most likely sources, with affinities
    assert sorted(line.split(":")[0] for line in printed) == ["convnext_tiny", "resnet18_tv", "resnet50"]


def test_the_own_models_page_runs_as_written(reader) -> None:
    """The files, the commands, then the Python example, which adds depth_v2 and saves results/ with its page."""
    folder = reader["folder"]
    run_section(page_section(*OWN_MODELS), folder, reader["env"], before_commands=reader["prepare"])
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


def test_the_report_page_s_tutorial_runs_as_written(reader) -> None:
    folder = reader["folder"]
    run_section(page_section(*TUTORIAL), folder, reader["env"], before_commands=reader["prepare"])
    results = json.loads((folder / "modelspace-out" / "results.json").read_text())
    assert [m["name"] for m in results["models"]] == ["resnet50", "convnext_t", "r18_tv"]
    assert results["failures"] == [] and (folder / "modelspace-out" / "report.html").is_file()
    assert "hscore" in results["label_scores"] and len(results["label_scores"]["hscore"]) == 3  # step 4, --labels
