"""Regenerate the built-in world's artifacts: the trained zoo and the measured transfer oracle.

    python -m modelspace.world.build --resume            # everything, resuming model by model
    python -m modelspace.world.build --only depth_z       # (re)train some models, then the oracle
    python -m modelspace.world.build --skip-oracle        # train only
    python -m modelspace.world.build --resume --skip-oracle --worker 0/2 &   # two processes side by
    python -m modelspace.world.build --resume --skip-oracle --worker 1/2 &   # side: the models...
    wait
    python -m modelspace.world.build --oracle-only --worker 0/2 &            # ...the oracle's
    python -m modelspace.world.build --oracle-only --worker 1/2 &            # readouts, half the
    wait; python -m modelspace.world.build --oracle-only                     # sources each; merged
    python -m modelspace.world.build --quick --out DIR    # a miniature: 3 tasks, a few steps

Writes into `--out` (default: the package's `data/world/zoo/`):

- `<name>.pt`: float16 state dicts, loaded with weights_only=True;
- `records/<name>.json`: each model's recipe, training curve and held-out figures beside the
  image-blind predictor's, written as the model finishes (the resume point);
- `transfers.json` (`transfers-<i>of<n>.json` from worker i of n): every trained readout's
  held-out loss, written after each target (the oracle's resume point);
- `zoo.toml` (the zoo file `modelspace` reads), `zoo.json` (groups, domains, recipe, figures),
  `oracle_ranking.csv` and `transfer_matrix.csv` (the ground-truth formats of
  `modelspace.evaluation`) and `oracle.json` (protocol, losses, validity figures).

Rendered scenes are cached in `--cache` (deterministic: scene i depends only on its seed).
The same command runs on a GPU when one is present (`--device`).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import time
import zlib
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from ..models import load_model, load_zoo, state_dict_hash
from . import labels, oracle, train
from .nets import ENCODERS
from .registration import DATA_DIR
from .render import render_batch

ZOO_DIR = DATA_DIR / "zoo"
SEEDS = {"train": 1000, "validation": 1500, "test": 2000, "shifted": 3000}
RECIPE = train.Recipe(steps=20_000, batch=32, lr=2e-3, eval_every=250, min_steps=3000, plateau=0.02, halvings=2,
                      patience=2, precision="bfloat16", channels_last=True)
"""Every model's recipe: Adam until the held-out loss stops improving (see `train`). `steps` is a
cap that only a run still improving binds; runs that stop earlier are the same under any cap."""
SCENES = {"train": 10_000, "validation": 500, "test": 1000}
CACHE_VERSION = 3
"""Part of the render cache's folder names: raise it whenever a label's definition changes."""


@dataclass(frozen=True)
class Entry:
    """One model of the built-in zoo.

    `seed` selects the initialisation and the batch order; two entries that differ only in
    their seed are seed twins.

    Parameters
    ----------
    name : str
        The model's name in the zoo (and its files' stem).
    task : str
        A key of `labels.TASKS`.
    arch : str, default "restasknet"
        A key of `nets.ARCHITECTURES`.
    input_size : int, default 64
        The side the images are resized to.
    domain : str, default "train"
        The domain of its training, validation and test scenes (`scene.DOMAINS`).
    group : int, default 1
        1 the Taskonomy-like models, 2 other architectures and domains, 3 seed twins.
    seed : int, default 0
        The recipe's seed (batch order and input noise).
    kwargs : dict, default {}
        The architecture's other keyword arguments, written into the zoo file.
    train_scenes : int, optional
        Training scenes; by default the build's (``SCENES["train"]``).
    mirror : bool, default False
        Flip half of each batch (`train.Recipe.mirror`).
    min_steps : int, optional
        No stop before this many steps; by default the recipe's.
    """

    name: str
    task: str
    arch: str = "restasknet"
    input_size: int = 64
    domain: str = "train"
    group: int = 1
    seed: int = 0
    kwargs: dict = field(default_factory=dict)
    train_scenes: int | None = None
    mirror: bool = False
    min_steps: int | None = None


MORE_DATA = {"train_scenes": 40_000, "mirror": True}
"""For image classification. On 10 000 scenes object_class over-fitted (its losses and accuracy against
the learned threshold: zoo/first-attempt/object_class.json), so these models see four times the
scenes, mirrored at random (`train.Recipe.mirror`)."""


LONGER = {"keypoints3d": {"train_scenes": 40_000, "min_steps": 10_000}}
"""Tasks whose sparse, low-variance labels leave a noisy held-out curve that the stopping rule reads
as flat too early: keypoints3d stopped while its loss was still falling (zoo/first-attempt/keypoints3d.json,
and keypoints3d-smoothed-sigma3.json beside it). It trains at least 10 000 steps on four times the scenes."""


def _task_settings(task: str) -> dict:
    return MORE_DATA if labels.TASKS[task][0] == labels.IMAGE_CLASSIFICATION else LONGER.get(task, {})


GROUP1 = [Entry(task, task, **_task_settings(task)) for task in labels.TASKS]
_AA = {"antialias": True, "predict_size": 32}
GROUP2 = [
    Entry("depth_z@vgg48", "depth_z", "vgg", 48, group=2, kwargs={"predict_size": 32}),
    Entry("depth_z@resnet80", "depth_z", "resnet", 80, group=2, kwargs=_AA),
    Entry("depth_z@mobilenet64", "depth_z", "mobilenet", 64, group=2, kwargs=_AA),
    Entry("normals@vgg64", "normals", "vgg", 64, group=2, kwargs={"predict_size": 32}),
    Entry("normals@resnet48", "normals", "resnet", 48, group=2, kwargs=_AA),
    Entry("segment_semantic@mobilenet80", "segment_semantic", "mobilenet", 80, group=2, kwargs=_AA),
    Entry("segment_semantic@resnet64", "segment_semantic", "resnet", 64, group=2, kwargs=_AA),
    # No group-2 object_class: neither a VGG (accuracy 0.641 with one convolution per stage, 0.784 with
    # two) nor a residual network (0.751) of this size learned it, where twice the majority class, 0.798,
    # counts as learned (records in first-attempt/); group 1's reaches 0.815.
    Entry("depth_z@shifted", "depth_z", domain="shifted", group=2),
    Entry("normals@shifted", "normals", domain="shifted", group=2),
]
TWIN_TASKS = ("depth_z", "normals", "reshading", "keypoints2d", "segment_semantic", "segment2d", "room_layout",
              "vanishing_point")
GROUP3 = [Entry(f"{task}@seed1", task, group=3, seed=1) for task in TWIN_TASKS]
"""Seed twins: group-1 tasks trained again from another initialisation and batch order."""
ZOO = GROUP1 + GROUP3 + GROUP2
"""In training order: the oracle needs groups 1 and 3."""

QUICK_TASKS = ("depth_z", "normals", "object_count")


def quick_zoo() -> list[Entry]:
    """The miniature: three tasks, one twin (what CI builds).

    Returns
    -------
    list of Entry
        The group-1 entries of `QUICK_TASKS` on the default number of scenes, and one seed twin.
    """
    first = [replace(e, train_scenes=None) for e in GROUP1 if e.task in QUICK_TASKS]
    return first + [Entry("depth_z@seed1", "depth_z", group=3, seed=1)]


# --------------------------------------------------------------------------------------------
# Scenes


def _render_chunk(args: tuple[int, int, str, int]) -> dict:
    n, seed, domain, start = args
    return render_batch(n, seed, domain=domain, start=start)


def render_set(n: int, seed: int, domain: str, cache: Path | None, workers: int = 2,
               chunk: int = 2000) -> dict[str, np.ndarray]:
    """Scenes 0..n-1 of `seed`, rendered `chunk` at a time in `workers` processes.

    Cached as one .npy per label in `cache` (written chunk by chunk, so memory stays bounded) and
    read back memory-mapped, so that parallel builds share one copy in the page cache.

    Parameters
    ----------
    n : int
        The number of scenes.
    seed : int
        The set's seed (`SEEDS`).
    domain : str
        The scenes' domain.
    cache : Path or None
        The cache folder; None renders without caching.
    workers : int, default 2
        Rendering processes.
    chunk : int, default 2000
        Scenes per rendering task.

    Returns
    -------
    dict of str to np.ndarray
        Key -> the n scenes' arrays (memory-mapped when cached), as `render.render_batch` gives them.
    """
    chunks = [(len(part), seed, domain, int(part[0])) for part in np.array_split(np.arange(n), -(-n // chunk))]
    folder = cache / f"v{CACHE_VERSION}_{domain}_{seed}_{n}" if cache else None
    if folder is None:
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            parts = pool.map(_render_chunk, chunks)
        data = {key: np.concatenate([p[key] for p in parts]) for key in parts[0] if key not in labels.IMAGE_TARGETS}
    else:
        if not (folder / "done").exists():
            folder.mkdir(parents=True, exist_ok=True)
            arrays = {}
            with multiprocessing.get_context("spawn").Pool(workers) as pool:
                for (count, _, _, start), part in zip(chunks, pool.imap(_render_chunk, chunks)):
                    for key, value in part.items():
                        if key in labels.IMAGE_TARGETS:
                            continue
                        if key not in arrays:
                            arrays[key] = np.lib.format.open_memmap(folder / f"{key}.npy", mode="w+", dtype=value.dtype,
                                                                    shape=(n, *value.shape[1:]))
                        arrays[key][start : start + count] = value
            for array in arrays.values():
                array.flush()
            (folder / "done").write_text(json.dumps(sorted(arrays)))
        data = {key: np.load(folder / f"{key}.npy", mmap_mode="r") for key in json.loads((folder / "done").read_text())}
    data.update({task: data["rgb"] for task in labels.IMAGE_TARGETS})
    return data


def native_bfloat16(device: str) -> bool:
    """Whether bfloat16 autocast pays on `device`.

    On a CPU with AVX-512 BF16 it did; on one without (AVX2 only) the bfloat16 kernels are emulated
    and a training step took many times as long as in float32 (benchmarks/RESULTS.md; docs/world.md, "Regenerating the built-in world"). A CPU counts
    when it reports the avx512_bf16 or amx_bf16 flag (Linux's /proc/cpuinfo; elsewhere: float32).

    Parameters
    ----------
    device : str
        A torch device name.

    Returns
    -------
    bool
        True for any device but a CPU, and for a CPU with the flag.
    """
    if torch.device(device).type != "cpu":
        return True
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def train_key(e: Entry, scenes: dict[str, int]) -> tuple[str, int]:
    """Which rendered set an entry trains on.

    Parameters
    ----------
    e : Entry
        The entry.
    scenes : dict of str to int
        Scenes per split (`SCENES`).

    Returns
    -------
    domain : str
        The entry's domain.
    n : int
        Its number of training scenes.
    """
    return e.domain, e.train_scenes or scenes["train"]


def render_sets(entries: list[Entry], scenes: dict[str, int], cache: Path | None) -> dict:
    """Every rendered set the entries need.

    Parameters
    ----------
    entries : list of Entry
        The models to train (empty: only the training domain's three sets).
    scenes : dict of str to int
        Scenes per split (`SCENES`).
    cache : Path or None
        The render cache.

    Returns
    -------
    dict
        "train", "validation" and "test" (the train domain), each entry's training set under
        `train_key`, and ("validation", domain) / ("test", domain) for the other domains' entries.
    """
    sets = {split: render_set(scenes[split], SEEDS[split], "train", cache) for split in ("train", "validation", "test")}
    sets[("train", scenes["train"])] = sets["train"]
    for domain, n in sorted({train_key(e, scenes) for e in entries} - {("train", scenes["train"])}):
        sets[(domain, n)] = render_set(n, SEEDS[domain], domain, cache)
    for domain in sorted({e.domain for e in entries} - {"train"}):
        for split in ("validation", "test"):
            sets[(split, domain)] = render_set(scenes[split], SEEDS[split], domain, cache)
    return sets


def entry_sets(e: Entry, data: dict, scenes: dict[str, int]) -> dict:
    """The scenes an entry is trained on, stopped by and judged on, all of its own domain.

    A model of the shifted domain is learned when it does its task there.

    Parameters
    ----------
    e : Entry
        The entry.
    data : dict
        The rendered sets (`render_sets`).
    scenes : dict of str to int
        Scenes per split.

    Returns
    -------
    dict
        ``{"train", "validation", "test"}`` -> rendered set.
    """
    if e.domain == "train":
        return {"train": data["train"], "validation": data["validation"], "test": data["test"]}
    return {"train": data[train_key(e, scenes)], "validation": data[("validation", e.domain)],
            "test": data[("test", e.domain)]}


# --------------------------------------------------------------------------------------------
# Models


def zoo_toml(entries: list[Entry]) -> str:
    """The zoo file: checkpoint sources with the world's constructor.

    Parameters
    ----------
    entries : list of Entry
        The models, in the file's order.

    Returns
    -------
    str
        The TOML text, one ``[[model]]`` block per entry.
    """
    blocks = ["# The built-in zoo, written by `python -m modelspace.world.build`. Paths are relative to this file."]
    mean, std = train.WORLD_NORMALISATION["mean"], train.WORLD_NORMALISATION["std"]
    for e in entries:
        kind, channels = train.task_kind(e.task)
        kwargs = {"arch": e.arch, "out_channels": channels, "dense": kind.startswith("dense"), **e.kwargs}
        inline = ", ".join(f"{k} = {json.dumps(v)}" for k, v in kwargs.items())
        blocks.append(
            f'[[model]]\nname = "{e.name}"\ntask = "{e.task}"\nsource = "checkpoint:{e.name}.pt"\n'
            f'constructor = "python:modelspace.world.nets:build"\nkwargs = {{ {inline} }}\n'
            f'encoder = "{ENCODERS[e.arch]}"\ninput_size = {e.input_size}\nmean = {list(mean)}\nstd = {list(std)}\n'
        )
    return "\n".join(blocks)


def task_figures(task: str, model, data: dict[str, dict], input_size: int, device: str) -> dict:
    """A trained model's held-out figures beside the image-blind predictor's, and whether it learned its task.

    A task counts as learned at a normalised loss ≤ 0.3 (regression), or an accuracy ≥ 2× the
    majority class's (classification).

    Parameters
    ----------
    task : str
        The model's task.
    model : nn.Module
        The trained network.
    data : dict of str to dict
        The entry's sets (`entry_sets`): "train" fits the image-blind predictor, "test" judges.
    input_size : int
        The side the images are resized to.
    device : str
        Where to run.

    Returns
    -------
    dict
        ``"held_out"`` (`train.held_out_metrics`), ``"trivial"`` (`train.trivial_metrics`),
        ``"learned"``, and for regression ``"normalised_loss"``.
    """
    metrics = train.held_out_metrics(model, task, data["test"], input_size, device=device)
    trivial = train.trivial_metrics(task, data["train"], data["test"])
    figures = {"held_out": metrics, "trivial": trivial}
    if "accuracy" in metrics:
        figures["learned"] = metrics["accuracy"] >= 2 * trivial["majority_accuracy"]
    else:
        figures["normalised_loss"] = metrics["loss"] / trivial["variance"]
        figures["learned"] = figures["normalised_loss"] <= 0.3
    return figures


def train_entry(e: Entry, out: Path, data: dict, scenes: dict[str, int], recipe: train.Recipe, device: str) -> dict:
    """Train one entry, save its weights, then its record (the record marks it done).

    Parameters
    ----------
    e : Entry
        The entry.
    out : Path
        The zoo folder: ``<name>.pt`` (float16) and ``records/<name>.json`` go there.
    data : dict
        The rendered sets (`render_sets`).
    scenes : dict of str to int
        Scenes per split.
    recipe : train.Recipe
        The build's recipe; the entry's seed, mirror and min_steps replace its own.
    device : str
        Where to train.

    Returns
    -------
    dict
        The record: the entry, the recipe, the training log and `task_figures`.
    """
    torch.manual_seed(zlib.crc32(e.name.encode()))  # each model its own initialisation
    model = train.make_model(e.arch, e.task, **e.kwargs)
    recipe = replace(recipe, seed=e.seed, mirror=e.mirror, min_steps=e.min_steps or recipe.min_steps)
    own = entry_sets(e, data, scenes)
    log = train.train_model(model, e.task, data[train_key(e, scenes)], e.input_size, recipe, device,
                            validation=own["validation"])
    state = {k: (v.half() if v.is_floating_point() else v) for k, v in model.cpu().state_dict().items()}
    torch.save(state, out / f"{e.name}.pt")
    # The figures come from the float16 weights, as a user will load them.
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    record = {**asdict(e), "recipe": asdict(recipe), **log, **task_figures(e.task, model.to(device), own, e.input_size, device)}
    _write_json(out / "records" / f"{e.name}.json", record)
    return record


def _write_json(path: Path, value) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(value, indent=1))
    partial.replace(path)


def _records(out: Path) -> dict[str, dict]:
    folder = out / "records"
    return {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))} if folder.exists() else {}


def train_zoo(entries: list[Entry], out: Path, data: dict, scenes: dict[str, int], recipe: train.Recipe, device: str,
              resume: bool, worker: tuple[int, int] = (0, 1)) -> None:
    """Train every `n`-th entry from the `i`-th of those left to do.

    Those left are all, or with `resume` the unfinished ones, so that resumed workers share what is
    left evenly.

    Parameters
    ----------
    entries : list of Entry
        The models.
    out : Path
        The zoo folder.
    data : dict
        The rendered sets (`render_sets`).
    scenes : dict of str to int
        Scenes per split.
    recipe : train.Recipe
        The build's recipe.
    device : str
        Where to train.
    resume : bool
        Skip entries whose weights and record are already in `out`.
    worker : tuple of int, default (0, 1)
        (i, n): this worker's index and the number of workers.
    """
    i, n = worker
    todo = [(index, e) for index, e in enumerate(entries)
            if not (resume and (out / "records" / f"{e.name}.json").exists() and (out / f"{e.name}.pt").exists())]
    for index, e in todo[i::n]:
        if resume and (out / "records" / f"{e.name}.json").exists():
            continue  # finished meanwhile by another process (e.g. one started with --only)
        print(f"[{index + 1}/{len(entries)}] {e.name}: {e.arch}, input {e.input_size}, domain {e.domain}, seed {e.seed}",
              flush=True)
        record = train_entry(e, out, data, scenes, recipe, device)
        figure = (f"accuracy {record['held_out']['accuracy']:.3f} vs majority {record['trivial']['majority_accuracy']:.3f}"
                  if "accuracy" in record["held_out"] else f"normalised loss {record['normalised_loss']:.3f}")
        print(f"    {e.name}: {figure}, {record['steps']} steps, converged {record['converged']} "
              f"({record['seconds']:.0f} s)", flush=True)


# --------------------------------------------------------------------------------------------
# Oracle


def oracle_pairs(entries: list[Entry]) -> list[tuple[str, str]]:
    """Every (target task, source model) the oracle trains a readout for.

    All group-1 pairs, and each twin as a source for the targets its zoo copy covers (the twinned tasks).

    Parameters
    ----------
    entries : list of Entry
        The zoo.

    Returns
    -------
    list of tuple of str
        (target task, source name) pairs.
    """
    group1 = [e for e in entries if e.group == 1]
    twins = [e for e in entries if e.group == 3]
    pairs = [(t.task, s.name) for t in group1 for s in group1]
    twinned = {e.task for e in twins}
    pairs += [(t.task, s.name) for t in group1 if t.task in twinned for s in twins]
    return pairs


def measure(entries: list[Entry], out: Path, data: dict[str, dict], readout: oracle.ReadoutRecipe,
            worker: tuple[int, int] = (0, 1), progress: bool = True) -> dict | None:
    """The oracle from the shipped (float16) weights, as any user would load them.

    Worker `i` of `n` trains every target's readouts on every `n`-th source from the `i`-th (so that
    each worker computes the frozen features of its own sources only), saves them into
    `transfers-<i>of<n>.json` after each target and returns None; the single run (0 of 1) reuses
    every progress file measured under the same readout recipe, measures what is missing and
    returns `oracle_summary`.

    Parameters
    ----------
    entries : list of Entry
        The zoo; its group-1 and group-3 models are the sources.
    out : Path
        The zoo folder, with ``zoo.toml``, the trained weights and records.
    data : dict of str to dict
        The rendered sets; "train" and "test" are used.
    readout : oracle.ReadoutRecipe
        The readouts' recipe.
    worker : tuple of int, default (0, 1)
        (i, n): this worker's index and the number of workers.
    progress : bool, default True
        Print each target's best sources.

    Returns
    -------
    dict or None
        `oracle_summary` with the seconds taken, or None for a worker of several.

    Raises
    ------
    SystemExit
        A group-1 or group-3 model not trained yet.
    """
    missing = [e.name for e in entries if e.group in (1, 3) and not (out / "records" / f"{e.name}.json").exists()]
    if missing:
        raise SystemExit(f"{out}: the oracle needs every group-1 and group-3 model; not trained yet: {', '.join(missing)}")
    specs = {s.name: s for s in load_zoo(out / "zoo.toml")}
    names = [e.name for e in entries if e.group in (1, 3)]
    models = {name: load_model(specs[name]) for name in names}
    i, n = worker
    pairs = oracle_pairs(entries)
    sources = list(dict.fromkeys(s for _, s in pairs))
    pairs = [(t, s) for t, s in pairs if sources.index(s) % n == i]
    progress_path = out / ("transfers.json" if n == 1 else f"transfers-{i}of{n}.json")
    weights = {name: state_dict_hash(m.module) for name, m in models.items()}
    save = lambda r: _write_json(progress_path, {"readout": asdict(readout), "weights": weights, "loss": r.loss})  # noqa: E731
    start = time.time()
    result = oracle.measure_transfers(models, {e.name: e.task for e in entries}, pairs, data["train"], data["test"],
                                      readout, done=_measured(out, readout, weights), on_target=save, progress=progress)
    save(result)
    if n > 1:
        return None
    info = oracle_summary(entries, result, readout)
    info["seconds"] = round(time.time() - start, 1)
    return info


def _measured(out: Path, readout: oracle.ReadoutRecipe, weights: dict[str, str]) -> dict:
    """Every readout loss in `out`'s progress files measured under this recipe from these weights.

    `weights` maps a source name to its state-dict hash; a retrained source is measured again.
    """
    done: dict = {}
    recipe = json.loads(json.dumps(asdict(readout)))  # as saved: tuples become lists
    for path in sorted(out.glob("transfers*.json")):
        saved = json.loads(path.read_text())
        if saved["readout"] != recipe:
            continue
        for seed, by_target in saved["loss"].items():
            for target, row in by_target.items():
                kept = {s: v for s, v in row.items() if saved["weights"].get(s) == weights.get(s)}
                done.setdefault(int(seed), {}).setdefault(target, {}).update(kept)
    return done


def oracle_summary(entries: list[Entry], result: oracle.TransferResult, readout: oracle.ReadoutRecipe) -> dict:
    """oracle.json: protocol, losses, and the validity figures the shipped-data tests enforce.

    Parameters
    ----------
    entries : list of Entry
        The zoo.
    result : oracle.TransferResult
        Every pair's measured losses.
    readout : oracle.ReadoutRecipe
        The readouts' recipe (its seeds index the losses).

    Returns
    -------
    dict
        The protocol, the readout recipe, the tasks, the mean and per-seed transfer losses, each
        target's validity figures and the seed twins' agreement.
    """
    group1 = [e for e in entries if e.group == 1]
    tasks = [e.task for e in group1]
    seeds = list(readout.seeds)
    by_seed = np.array([[[result.loss[s][t][src] for src in tasks] for t in tasks] for s in seeds])
    loss = by_seed.mean(0)
    # A readout's noise: the standard deviation between seeds of one pair, pooled over the sources.
    noise = {t: float(np.sqrt(np.mean(by_seed[:, i, :].var(0, ddof=1)))) for i, t in enumerate(tasks)}
    validity = {}
    for i, t in enumerate(tasks):
        order = np.argsort(loss[i], kind="stable")
        others = np.delete(loss[i], i)
        validity[t] = {
            "own_rank": int(np.where(order == i)[0][0]) + 1,
            "best_source": tasks[order[0]],
            "best_minus_median": float(np.median(others) - others.min()),
            "readout_noise": noise[t],
        }
        validity[t]["gap_over_noise"] = validity[t]["best_minus_median"] / max(noise[t], 1e-12)
    ranking = _ranking(tasks, loss)
    by_seed_ranking = [_ranking(tasks, m) for m in by_seed]
    twins = [e for e in entries if e.group == 3]
    twin_of = {e.task: e.name for e in twins}
    retrain = {}
    for t in twin_of:
        row = {src: np.mean([result.loss[s][t][twin_of.get(src, src)] for s in seeds]) for src in tasks}
        order = sorted(row, key=row.get)
        second = [src for src in order if src != t][:5]
        # Criterion 2a's own rank again, in the second copy: how much of 2a the zoo's seeds decide.
        retrain[t] = {"top5_first_copy": ranking[t][:5], "top5_second_copy": second,
                      "agreement": len(set(second) & set(ranking[t][:5])) / 5,
                      "own_rank_first_copy": validity[t]["own_rank"], "own_rank_second_copy": order.index(t) + 1}
    return {
        "protocol": oracle.PROTOCOL,
        "readout": asdict(readout),
        "tasks": tasks,
        "trivial_loss": {t: result.trivial[t] for t in tasks},
        "transfer_loss": loss.round(6).tolist(),
        "transfer_loss_by_seed": by_seed.round(6).tolist(),
        "validity": validity,
        "own_best_count": sum(v["own_rank"] == 1 for v in validity.values()),
        "top5_agreement_between_seeds": float(np.mean([len(set(by_seed_ranking[0][t][:5]) & set(by_seed_ranking[1][t][:5])) / 5
                                                       for t in tasks])),
        "zoo_retraining": {"twinned_models": [e.name for e in twins], "targets": retrain,
                           "top5_agreement": float(np.mean([v["agreement"] for v in retrain.values()])) if retrain else None,
                           "own_best_first_copy": sum(v["own_rank_first_copy"] == 1 for v in retrain.values()),
                           "own_best_second_copy": sum(v["own_rank_second_copy"] == 1 for v in retrain.values())},
    }


def _ranking(tasks: list[str], loss: np.ndarray) -> dict[str, list[str]]:
    """Per target, the other tasks as sources, lowest loss first."""
    return {t: [tasks[j] for j in np.argsort(loss[i], kind="stable") if j != i] for i, t in enumerate(tasks)}


def write_oracle(out: Path, info: dict) -> None:
    """Write the oracle's ground-truth files and its summary.

    ``oracle_ranking.csv`` and ``transfer_matrix.csv`` (1 − loss: higher is better), in the formats
    `modelspace.evaluation` reads, and ``oracle.json``.

    Parameters
    ----------
    out : Path
        The zoo folder.
    info : dict
        `oracle_summary`'s dict.
    """
    tasks, loss = info["tasks"], np.asarray(info["transfer_loss"])
    with open(out / "oracle_ranking.csv", "w") as fh:
        fh.write("target," + ",".join(f"rank{k}" for k in range(1, len(tasks))) + "\n")
        for target, ranked in _ranking(tasks, loss).items():
            fh.write(f"{target},{','.join(ranked)}\n")
    with open(out / "transfer_matrix.csv", "w") as fh:  # higher = better, as the matrix format expects
        fh.write("target\\source," + ",".join(tasks) + "\n")
        for i, target in enumerate(tasks):
            fh.write(target + "," + ",".join(f"{1 - v:.6f}" for v in loss[i]) + "\n")
    _write_json(out / "oracle.json", info)


def write_zoo_record(entries: list[Entry], out: Path, scenes: dict[str, int], recipe: train.Recipe) -> dict:
    """Write ``zoo.json``: the recipe, the scenes and seeds, and every model's record.

    Parameters
    ----------
    entries : list of Entry
        The zoo.
    out : Path
        The zoo folder, with every model's record.
    scenes : dict of str to int
        Scenes per split.
    recipe : train.Recipe
        The build's recipe.

    Returns
    -------
    dict
        What was written.

    Raises
    ------
    SystemExit
        A model not trained yet.
    """
    records = _records(out)
    missing = [e.name for e in entries if e.name not in records]
    if missing:
        raise SystemExit(f"{out}: {len(missing)} models are not trained yet ({', '.join(missing[:5])}…); "
                         "run the build again with --resume")
    record = {"recipe": asdict(recipe), "data": {"scenes": scenes, "seeds": SEEDS},
              "models": {e.name: records[e.name] for e in entries}}
    _write_json(out / "zoo.json", record)
    return record


def main(argv: list[str] | None = None) -> int:
    """The command line (see the module docstring).

    Parameters
    ----------
    argv : list of str, optional
        The arguments; by default ``sys.argv[1:]``.

    Returns
    -------
    int
        The exit status, 0.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ZOO_DIR, help="where the artifacts go (default: %(default)s)")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "modelspace" / "world",
                        help="rendered scenes (default: %(default)s)")
    parser.add_argument("--only", nargs="*", help="train only these model names")
    parser.add_argument("--resume", action="store_true",
                        help="keep models already trained (readouts are always kept when measured under the same "
                             "readout recipe from the same source weights)")
    parser.add_argument("--skip-oracle", action="store_true", help="train only")
    parser.add_argument("--oracle-only", action="store_true", help="measure the oracle from the trained models")
    parser.add_argument("--worker", default="0/1",
                        help="I/N: train every N-th model from the I-th, or with --oracle-only train the oracle's readouts "
                             "on every N-th source from the I-th (parallel builds; a last run without --worker merges "
                             "and writes the oracle)")
    parser.add_argument("--quick", action="store_true", help="a miniature: 3 tasks and a twin, few scenes and steps")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--precision", choices=("auto", "bfloat16", "float32"), default="auto",
                        help="training precision; auto: bfloat16 autocast where the device computes it natively "
                             "(a GPU, or a CPU with AVX-512 BF16 / AMX), else float32. Each record says which")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    entries, scenes, recipe, readout = ZOO, SCENES, RECIPE, oracle.ReadoutRecipe()
    precision = args.precision if args.precision != "auto" else "bfloat16" if native_bfloat16(args.device) else "float32"
    recipe = replace(recipe, precision=precision)
    if args.quick:
        entries = quick_zoo()
        scenes = {"train": 256, "validation": 64, "test": 64}
        recipe = replace(recipe, steps=40, eval_every=10, min_steps=20, batch=16, halvings=0)
        readout = oracle.ReadoutRecipe(epochs=2, n_train=256, batch=64)
    worker = tuple(int(v) for v in args.worker.split("/"))
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.time()
    # the oracle reads only the training domain's three sets, not the other entries' training sets
    data = render_sets([] if args.oracle_only else entries, scenes, args.cache)
    print(f"scenes ready in {time.time() - start:.0f} s", flush=True)
    (args.out / "zoo.toml").write_text(zoo_toml(entries))
    chosen = [e for e in entries if not args.only or e.name in args.only]
    if not args.oracle_only:
        train_zoo(chosen, args.out, data, scenes, recipe, args.device, args.resume and not args.only, worker)
    if args.skip_oracle:
        return 0
    if worker != (0, 1):
        measure(entries, args.out, data, readout, worker)
        return 0
    if not args.oracle_only:  # the zoo's record describes how its models were trained, not this machine
        write_zoo_record(entries, args.out, scenes, recipe)
    info = measure(entries, args.out, data, readout)
    write_oracle(args.out, info)
    print(f"oracle: own encoder best for {info['own_best_count']}/{len(info['tasks'])} targets; "
          f"zoo-retraining top-5 agreement {info['zoo_retraining']['top5_agreement']}; done in {time.time() - start:.0f} s",
          flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
