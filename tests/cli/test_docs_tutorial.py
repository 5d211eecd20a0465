"""A new user's first runs: the tutorial of the report page and the commands of the own-models page, run
as written, from a working folder, on a user zoo of every source kind, generated here:

- Hugging Face ResNet, ConvNeXt and ViT from small configs, each `save_pretrained` into a folder and
  named by an `hf:` source (the ViT saved without its pooler, as a backbone is);
- a `python:` model and a checkpoint whose class comes from `mynets.py`, beside the zoo file;
- a TorchScript file (the encoder, traced; TorchScript runs outside ε-LRP's rules, so that model fails
  ε-LRP and the run exits 1, as the exit codes on the own-models page say);
- 24 photo-like probe images (a gradient, blurred shapes, noise) of several sizes, formats (JPEG,
  PNG, WebP, BMP) and modes (RGB, L, RGBA, CMYK, P), in subfolders, an upper-case extension, a text file
  that is not an image and one corrupt JPEG.

The commands are read out of the docs' pages (docs/getting-started/report.md and own-models.md), so that
the pages and this test cannot drift apart. The tutorial's run as a user types them (`python -m
modelspace.cli` in a subprocess); the eleven commands of the own-models page go through
`modelspace.cli.main` in-process (the same code, without a new
interpreter's imports of torch, scipy and transformers for each: about 5 s a command). The
tutorial's zoo names timm and torchvision models, which need their weights
(tests/vision/test_examples_on_real_models.py runs it in the vision environment); here its commands run on the zoo above,
whose task labels are Taskonomy tasks, so that `--truth taskonomy` scores it. The usual mistakes
(a typo in a field, a duplicate name, an empty or missing probe folder, a mistyped store, an unknown
model name, an ambiguous one) run in-process through `main`, like tests/cli/test_commands.py.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageFilter

from support.runs import subprocess_env
from support.paths import REPO
from modelspace.cli import main

transformers = pytest.importorskip("transformers")

DOCS = REPO / "docs"
#: The sections this file reads: (page, section title), as `RUN_ELSEWHERE` lists them.
TUTORIAL = ("getting-started/report.md", "Your models, your probe images, the report")
OWN_MODELS = ("getting-started/own-models.md", "A zoo of timm, Hugging Face and your own networks")

NETS = '''
import torch
from torch import nn


class Body(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, 2, 1), nn.ReLU())
        self.layer4 = nn.Sequential(nn.Conv2d(width, width, 3, 1, 1), nn.ReLU())

    def forward(self, x):
        return self.layer4(self.stem(x))


class SegNet(nn.Module):
    def __init__(self, width=8, classes=5):
        super().__init__()
        self.backbone = Body(width)
        self.head = nn.Conv2d(width, classes, 1)

    def forward(self, x):
        return self.head(self.backbone(x))


class DepthNet(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.encoder = Body(width)
        self.head = nn.Conv2d(width, 1, 1)

    def forward(self, x):
        return self.head(self.encoder(x))


def tiny(width=6, seed=0):
    torch.manual_seed(seed)
    return DepthNet(width)
'''

#: The user's zoo: (name, Taskonomy task, YAML fields after the task). ResNet's config states no input
#: size (the zoo gives it); ConvNeXt's and ViT's `config.image_size` give theirs (32).
ZOO = [
    ("hf_resnet", "class_1000", 'source: "hf:hf/resnet", input_size: 32'),
    ("hf_convnext", "class_places", 'source: "hf:hf/convnext"'),
    ("hf_vit", "segmentsemantic", 'source: "hf:hf/vit"'),
    ("my_net", "rgb2depth", 'source: "python:mynets:tiny", kwargs: {width: 6}, input_size: 32'),
    ("my_seg_net", "segment2d", 'source: "checkpoint:weights/seg.pt", constructor: "python:mynets:SegNet", '
                                'encoder: backbone.layer4, input_size: 32'),
    ("ts_encoder", "edge2d", 'source: "torchscript:encoder.ts", input_size: 32'),
]
NAMES = [name for name, _, _ in ZOO]
#: The model the tutorial adds ("running again after adding a model computes only that model").
ADDED = ("my_net_v2", "rgb2sfnorm", 'source: "python:mynets:tiny", kwargs: {width: 6, seed: 1}, input_size: 32')
N_IMAGES = 24


def yaml_zoo(entries) -> str:
    return "models:\n" + "".join(f"  - {{name: {n}, task: {t}, {rest}}}\n" for n, t, rest in entries)


def toml_zoo(entries) -> str:
    """The same zoo as TOML: YAML flow mappings become TOML inline fields."""
    out = []
    for name, task, rest in entries:
        fields = re.sub(r"(\w+): ", r"\1 = ", rest)
        fields = re.sub(r"encoder = ([\w.]+)", r'encoder = "\1"', fields)
        out.append(f'[[model]]\nname = "{name}"\ntask = "{task}"\n'
                   + "\n".join(f.strip() for f in re.split(r",\s*(?![^{]*})", fields)) + "\n\n")
    return "".join(out)


def photo(rng: np.random.Generator, w: int, h: int) -> Image.Image:
    """A photo-like picture: a sky-to-ground gradient, a few blurred shapes, sensor noise."""
    y = np.linspace(0, 1, h)[:, None, None]
    top, bottom = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    img = Image.fromarray(np.broadcast_to(top * (1 - y) + bottom * y, (h, w, 3)).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(rng.integers(2, 6)):
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        box = [x0, y0, x0 + int(rng.integers(w // 8 + 1, w // 2 + 2)), y0 + int(rng.integers(h // 8 + 1, h // 2 + 2))]
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape(box, fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
    img = img.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.5, 2))))
    noisy = np.asarray(img, dtype=np.float32) + rng.normal(0, 6, (h, w, 3))
    return Image.fromarray(noisy.clip(0, 255).astype(np.uint8))


def write_probe(folder: Path) -> None:
    rng = np.random.default_rng(0)
    sizes = [(64, 48), (48, 64), (120, 90), (40, 40), (300, 200), (33, 57)]
    kinds = [("street", "jpg", "RGB"), ("street", "png", "L"), ("park", "png", "RGBA"), ("park", "webp", "RGB"),
             ("indoor", "jpeg", "CMYK"), ("indoor", "bmp", "P")]
    for i in range(N_IMAGES):
        sub, ext, mode = kinds[i % len(kinds)]
        (folder / sub).mkdir(parents=True, exist_ok=True)
        photo(rng, *sizes[i % len(sizes)]).convert(mode).save(folder / sub / f"img_{i:02d}.{ext.upper() if i == 5 else ext}")
    (folder / "indoor" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 cut short: not a JPEG")
    (folder / "notes.txt").write_text("not an image, by its file name: listed as skipped, never opened\n")


@pytest.fixture(scope="module")
def user_zoo(tmp_path_factory) -> Path:
    """The zoo folder: zoo.yaml and zoo.toml (the same models), what they name, and probe images."""
    root = tmp_path_factory.mktemp("user")
    torch.manual_seed(0)
    transformers.ResNetModel(transformers.ResNetConfig(
        embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic")).save_pretrained(root / "hf/resnet")
    transformers.ConvNextModel(transformers.ConvNextConfig(
        num_stages=2, hidden_sizes=[8, 16], depths=[1, 1], image_size=32)).save_pretrained(root / "hf/convnext")
    transformers.ViTModel(transformers.ViTConfig(
        image_size=32, patch_size=8, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32), add_pooling_layer=False).save_pretrained(root / "hf/vit")
    (root / "mynets.py").write_text(NETS)
    namespace: dict = {}
    exec(compile(NETS, str(root / "mynets.py"), "exec"), namespace)  # noqa: S102 - our own module text
    (root / "weights").mkdir()
    torch.manual_seed(1)
    torch.save(namespace["SegNet"]().state_dict(), root / "weights" / "seg.pt")
    torch.manual_seed(2)
    with warnings.catch_warnings():  # torch 2.13 deprecates TorchScript, which users still have files of
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.trace(namespace["Body"](8).eval(), torch.rand(1, 3, 32, 32)).save(str(root / "encoder.ts"))
    (root / "zoo.yaml").write_text(yaml_zoo(ZOO))
    (root / "zoo.toml").write_text(toml_zoo(ZOO))
    write_probe(root / "probe_dir")
    return root


def page_section(page: str, title: str) -> str:
    """The text of section ``## title`` of a docs page, up to the next ``## `` heading."""
    text = (DOCS / page).read_text(encoding="utf-8")
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end != -1 else None]


def shell_block(page: str, title: str, after: str = "") -> list[str]:
    """The command lines of the first ```sh block of a page's section (after the text `after`),
    comments dropped and `a ; b` split into two commands."""
    text = page_section(page, title)
    text = text[text.index(after):] if after else text
    body = next(m.group(2) for m in re.finditer(r"^```(\w*)\n(.*?)^```", text, re.S | re.M) if m.group(1) == "sh")
    lines = [line.split("#")[0].strip() for line in body.splitlines()]
    return [cmd.strip() for line in lines if line for cmd in line.split(" ; ")]


def modelspace(command: str, cwd: Path, **subst: str) -> subprocess.CompletedProcess:
    """A page's command line run as typed (its words substituted by `subst`), in `cwd`."""
    argv = shlex.split(command)
    assert argv[0] == "modelspace", command
    argv = [subst.get(word, word) for word in argv[1:]]
    done = subprocess.run([sys.executable, "-m", "modelspace.cli", *argv], cwd=cwd, capture_output=True, text=True,
                          env=subprocess_env(), timeout=600)
    done.command = command
    return done


def no_false_plurals(text: str) -> None:
    """`1 models`, `1 files`, `1 pairs`... (never "1 models")."""
    assert not re.search(r"(?<![\d.])(?<!and )1 (models|files|images|pairs|failures|units|shards|clusters)\b", text), text


def summary_text(page: Path) -> str:
    html = page.read_text(encoding="utf-8")
    start = html.index('id="summary"')
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html[start:html.index("<h2", start + 20)]))


def affinity_models(csv: Path) -> list[str]:
    return csv.read_text().splitlines()[0].split(",")[1:]


def results_json(folder: Path) -> dict:
    return json.loads((folder / "results.json").read_text())


def computed_steps(stderr: str) -> list[str]:
    """The models a run computed maps of: its log lines `modelspace: NAME · METHODS: 1 shard in ...`."""
    return re.findall(r"^modelspace: (\S+) · \S+: \d+ shards? in", stderr, re.M)


# ------------------------------------------------------------------------------------------ tutorial


@pytest.mark.slow
def test_the_tutorial_runs_as_written_on_a_user_zoo(user_zoo, tmp_path) -> None:
    section = page_section(*TUTORIAL)
    (run,) = shell_block(*TUTORIAL)
    assert run == "modelspace run zoo.yaml probe_images/"
    where = {"zoo.yaml": str(user_zoo / "zoo.yaml"), "probe_images/": str(user_zoo / "probe_dir")}
    work = tmp_path  # the user's working folder, elsewhere than the zoo (its python: module is found beside it)

    # 2. "Point it at a folder of images": everything goes to modelspace-out/.
    first = modelspace(run, work, **where)
    out, err = first.stdout, first.stderr
    assert first.returncode == 1, err[-3000:]  # ts_encoder cannot take ε-LRP: "1 some models failed"
    assert f"probe: {N_IMAGES} images" in out and "2 files skipped" in out
    assert re.search(r"skipped indoor/broken\.jpg: corrupt or truncated", out)
    assert re.search(r"skipped notes\.txt: not an image: its extension '\.txt'", out)
    for method in ("saliency", "gradient_x_input"):
        assert f"{method}: 6 models" in out
    assert "lrp_epsilon(epsilon=1e-06): 5 models" in out and "failed: ts_encoder" in out
    assert "ts_encoder: ε-LRP needs the Python module; a TorchScript model" in err
    assert "1 of 6 models failed (ts_encoder); the others' results are written (exit 1)" in err
    assert "maps are stored in modelspace-out/store" in err
    assert sorted(set(computed_steps(err))) == sorted(NAMES)
    no_false_plurals(out)

    result = work / "modelspace-out"
    assert affinity_models(result / "affinity_saliency.csv") == NAMES
    assert affinity_models(result / "affinity_lrp_epsilon.csv") == [n for n in NAMES if n != "ts_encoder"]
    summary = results_json(result)
    assert summary["probe"]["n_images"] == N_IMAGES and summary["probe"]["size"] == 32  # the zoo's largest input
    # 6 models × 3 methods, less ts_encoder's ε-LRP; the activations DDS compares, once per model
    assert summary["work"] == {"computed": 17, "reused": 0, "activations_computed": 6, "activations_reused": 0}
    got = {m["name"]: m["preprocessing"] for m in summary["models"]}
    assert "hf config" in json.dumps(got["hf_convnext"]) and "zoo" in json.dumps(got["hf_resnet"])

    # 3. "Open modelspace-out/report.html": one file, the summary first.
    page = result / "report.html"
    assert page.is_file() and "http://" not in page.read_text().split("<body", 1)[1].replace("http://www.w3.org", "")
    html = page.read_text()
    assert html.index('id="summary"') < html.index("<h2>Failures") < html.index("<h2>Attribution maps")
    text = summary_text(page)
    assert "No ground truth was given" in text and "Closest pair:" in text
    no_false_plurals(text)
    for name in NAMES:
        assert name in html

    # Adding a model computes only that model.
    (user_zoo / "zoo.yaml").write_text(yaml_zoo([*ZOO, ADDED]))
    try:
        again = modelspace(run, work, **where)
    finally:
        (user_zoo / "zoo.yaml").write_text(yaml_zoo(ZOO))
    assert again.returncode == 1, again.stderr[-3000:]  # ts_encoder: skipped, failed before
    assert computed_steps(again.stderr) == ["my_net_v2"] * 2  # saliency+gradient_x_input, then ε-LRP
    assert results_json(result)["work"] == {"computed": 3, "reused": 17, "activations_computed": 1,
                                            "activations_reused": 6}
    (failure,) = results_json(result)["failures"]
    assert failure["model"] == "ts_encoder" and "failed before" in json.dumps(failure)
    assert affinity_models(result / "affinity_saliency.csv") == [*NAMES, "my_net_v2"]
    assert "my_net_v2" in page.read_text()

    # `modelspace report FOLDER [--truth T]` rebuilds the page, here with the truth.
    report = re.search(r"`(modelspace report FOLDER \[--truth T\])`", section).group(1)
    rebuilt = modelspace(report.replace("[--truth T]", "--truth taskonomy"), work, FOLDER="modelspace-out")
    assert rebuilt.returncode == 0, rebuilt.stderr[-3000:]
    assert rebuilt.stdout.strip() == "report: modelspace-out/report.html"
    text = summary_text(page)
    assert "No ground truth was given" not in text and "random" in text


# ------------------------------------------------------------------------------ the own-models page


@pytest.fixture
def in_work(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    sys.modules.pop("mynets", None)


class Done:
    """What one in-process command gave: its exit code, stdout and stderr."""

    def __init__(self, returncode: int, stdout: str, stderr: str):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def in_process(command: str, capsys, **subst: str) -> Done:
    """A page's command line run through `modelspace.cli.main` in this process (in the current folder):
    the same code as the console script, without a new interpreter's imports (4-8 s a command here)."""
    argv = shlex.split(command)
    assert argv[0] == "modelspace", command
    code = main([subst.get(word, word) for word in argv[1:]])
    out, err = capsys.readouterr()
    return Done(code, out, err)


@pytest.mark.slow
def test_the_commands_of_your_own_models_run_as_written(user_zoo, in_work, capsys) -> None:
    """The tutorial above runs in subprocesses; these eleven commands run in-process, to keep the
    test's time down, on the same zoo (as TOML)."""
    commands = shell_block(*OWN_MODELS, after="### The commands")
    assert [c.split()[1] for c in commands] == ["run", "probe", "embed", "affinity", "tree", "evaluate", "report",
                                                "models", "remove", "methods", "gc"]
    work = in_work
    where = {"zoo.toml": str(user_zoo / "zoo.toml"), "probe_images/": str(user_zoo / "probe_dir")}
    done = {}
    for command in commands:
        name = command.split()[1]
        if name == "gc":  # a model dropped from the zoo leaves a stale entry for gc to find
            kept = [entry for entry in ZOO if entry[0] != "ts_encoder"]
            (user_zoo / "zoo.toml").write_text(toml_zoo(kept))
            try:
                done["gc --dry-run"] = in_process(command, capsys, **where)
                done[name] = in_process(command.replace(" --dry-run", ""), capsys, **where)
            finally:
                (user_zoo / "zoo.toml").write_text(toml_zoo(ZOO))
            continue
        done[name] = in_process(command, capsys, **where)
        if name == "run":  # its page, before `affinity` writes results/ again (and removes it: not its file)
            run_summary = summary_text(work / "results" / "report.html")
    rc = {name: d.returncode for name, d in done.items()}
    expected_rc = {name: 0 for name in done} | {"run": 1, "embed": 1, "affinity": 1}  # ts_encoder's ε-LRP
    assert rc == expected_rc, {n: done[n].stderr[-2000:] for n in rc if rc[n] != expected_rc[n]}
    for d in done.values():
        no_false_plurals(d.stdout)

    # run --out results/ --truth taskonomy: the evaluation table and a report with a verdict.
    out = done["run"].stdout
    assert "P@" in out and "random" in out and "oracle" in out and "nan" not in out
    assert "wrote results/\n" in out and "report: results/report.html" in out  # as typed: no "results//"
    assert "maps are stored in results/store" in done["run"].stderr
    assert "No ground truth was given" not in run_summary
    # probe --probe-size 64: 24 images, the corrupt one listed.
    assert done["probe"].stdout.startswith(f"{N_IMAGES} images at 64×64 (hash ")
    assert "2 skipped → probe.npz" in done["probe"].stdout and "indoor/broken.jpg" in done["probe"].stdout
    # embed into store/: every unit computed, nothing from results/store.
    assert "maps of 6 models in store/; 1 failure; 17 units computed, 0 found in the store" in done["embed"].stdout
    # affinity on the same store: nothing computed again.
    assert computed_steps(done["affinity"].stderr) == []
    assert results_json(work / "results")["work"] == {"computed": 0, "reused": 17, "activations_computed": 0,
                                                      "activations_reused": 6}
    assert results_json(work / "results")["probe"]["size"] == 64
    assert affinity_models(work / "results" / "affinity_saliency.csv") == NAMES
    assert not (work / "results" / "report.html").exists()  # the run's page went with the run's results
    # tree, evaluate, report.
    assert (work / "results" / "tree_saliency.nwk").is_file()
    assert "P@" in done["evaluate"].stdout and "nan" not in done["evaluate"].stdout
    page = work / "results" / "page.html"
    assert done["report"].stdout.strip() == "report: results/page.html" and page.is_file()
    assert "No ground truth was given" in summary_text(page)  # `affinity` rewrote results/, without a truth
    # models, remove my_seg_net, methods.
    assert [line.split("\t")[0] for line in done["models"].stdout.splitlines()] == NAMES
    assert done["remove"].stdout.startswith("removed my_seg_net ")
    assert "saliency" in done["methods"].stdout and "lrp_epsilon" in done["methods"].stdout
    # gc --keep-zoo (ts_encoder dropped from the zoo): --dry-run lists it and deletes nothing; then gc removes it.
    assert "would remove ts_encoder" in done["gc --dry-run"].stdout
    assert "would remove 1 model, kept 4 of 5" in done["gc --dry-run"].stdout
    assert "removed ts_encoder" in done["gc"].stdout and "removed 1 model, kept 4 of 5" in done["gc"].stdout
    final = in_process("modelspace models --store store/", capsys)
    assert [line.split("\t")[0] for line in final.stdout.splitlines()] == ["hf_resnet", "hf_convnext", "hf_vit",
                                                                           "my_net"]


# ------------------------------------------------------------------------------------ usual mistakes


def test_the_usual_mistakes_get_a_message_and_exit_2(user_zoo, in_work, capsys) -> None:
    zoo = (user_zoo / "zoo.yaml").read_text()
    typo = in_work / "typo.yaml"
    typo.write_text(zoo.replace("{name: hf_vit, task:", "{name: hf_vit, tsak:"))
    duplicate = in_work / "duplicate.yaml"
    duplicate.write_text(zoo.replace("name: hf_vit,", "name: hf_resnet,"))
    (in_work / "empty").mkdir()
    probe = str(user_zoo / "probe_dir")
    cases = [
        (["run", str(typo), probe], f"{typo}: model 'hf_vit': field 'tsak': unknown field; known fields are"),
        (["run", str(duplicate), probe], f"{duplicate}: model 'hf_resnet' (#3): field 'name': duplicate of model #1"),
        (["run", str(user_zoo / "zoo.yaml"), "empty"], "probe folder 'empty' holds no image file (looked for .png"),
        (["run", str(user_zoo / "zoo.yaml"), "probe_dri/"], "probe folder 'probe_dri' does not exist"),
        (["models", "--store", "stroe/"], "store 'stroe/' does not exist"),
        (["remove", "my_net", "--store", "stroe/"], "store 'stroe/' does not exist"),
        (["gc", "--keep-zoo", str(user_zoo / "zoo.yaml"), "--store", "stroe/"], "store 'stroe/' does not exist"),
    ]
    for argv, message in cases:
        code = main(argv)
        out, err = capsys.readouterr()
        assert (code, out) == (2, ""), (argv, code, out, err)
        assert message in err, (argv, err)
        assert "Traceback" not in err
    assert not (in_work / "stroe").exists()  # a mistyped store is not created
    assert not (in_work / "modelspace-out" / "store" / "manifest.sqlite").exists()  # nothing computed

    # An unknown model name, and a name that is ambiguous in the store: listed, nothing removed.
    store = str(in_work / "s")
    assert main(["embed", str(user_zoo / "zoo.yaml"), probe, "--store", store, "--methods", "saliency", "--quiet"]) == 0
    (user_zoo / "v2.yaml").write_text(zoo.replace("kwargs: {width: 6}", "kwargs: {width: 5}"))  # my_net changed
    try:
        assert main(["embed", str(user_zoo / "v2.yaml"), probe, "--store", store, "--methods", "saliency",
                     "--quiet"]) == 0
    finally:
        (user_zoo / "v2.yaml").unlink()
    capsys.readouterr()
    code = main(["remove", "my_nett", "--store", store])
    out, err = capsys.readouterr()
    assert code == 2 and f"no model named or keyed 'my_nett' in store {store}" in err
    code = main(["remove", "my_net", "--store", store])
    out, err = capsys.readouterr()
    assert code == 2 and f"'my_net' names 2 models in store {store}; nothing removed" in err
    assert '"width": 5' in err and '"width": 6' in err
    code = main(["models", "--store", store])
    out, _ = capsys.readouterr()
    assert sorted(line.split("\t")[0] for line in out.splitlines()) == sorted([*NAMES, "my_net"])
