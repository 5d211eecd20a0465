"""Regenerate the built-in world's artifacts: the trained zoo and the measured transfer oracle.

    python -m modelspace.world.build                 # everything, into src/modelspace/world/zoo/
    python -m modelspace.world.build --oracle-only   # keep the weights, re-measure the oracle

Writes `<name>.pt` (float16 state dicts, loaded with weights_only=True), `zoo.toml` (the zoo
file `modelspace` reads), `zoo.json` (groups, domains, recipe, own held-out losses),
`oracle_ranking.csv` and `transfer_matrix.csv` (the ground-truth formats of
`modelspace.evaluation`), and `oracle.json` (protocol, seeds, budgets, from-scratch and
pixel-readout losses, repeatability). Uses a GPU when one is present; on 2 CPU cores the
whole run took 51 minutes (rendering 1, training 28, oracle 22; the oracle has since been made faster
for wide label maps by an exact row-space shortcut).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ..models.sources import load_model
from ..models import load_zoo
from . import labels, oracle, train
from .nets import ENCODERS
from .render import render_batch

ZOO_DIR = Path(__file__).parent / "zoo"
SEEDS = {"train": 1000, "test": 2000, "shifted": 3000}


@dataclass(frozen=True)
class Entry:
    """One model of the built-in zoo."""

    name: str
    task: str
    arch: str = "tasknet"
    input_size: int = 64
    domain: str = "train"
    group: int = 1
    kwargs: dict = field(default_factory=dict)


GROUP1 = [Entry(task, task) for task in labels.TASKS]
GROUP2 = [
    Entry("depth_z@vgg48", "depth_z", "vgg", 48, group=2),
    Entry("depth_z@resnet80", "depth_z", "resnet", 80, group=2),
    Entry("depth_z@mobilenet64", "depth_z", "mobilenet", 64, group=2),
    Entry("normals@vgg64", "normals", "vgg", 64, group=2),
    Entry("normals@resnet48", "normals", "resnet", 48, group=2),
    Entry("segment_semantic@mobilenet80", "segment_semantic", "mobilenet", 80, group=2),
    Entry("segment_semantic@resnet64", "segment_semantic", "resnet", 64, group=2),
    Entry("object_class@vgg64", "object_class", "vgg", 64, group=2, kwargs={"depth": 1}),
    Entry("depth_z@shifted", "depth_z", "tasknet", 64, domain="shifted", group=2),
    Entry("normals@shifted", "normals", "tasknet", 64, domain="shifted", group=2),
]
ZOO = GROUP1 + GROUP2


def zoo_toml(entries: list[Entry]) -> str:
    """The zoo file: checkpoint sources with the world's constructor."""
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


def render_sets(n_train: int, n_test: int, domains: set[str]) -> dict[str, dict]:
    sets = {"train": render_batch(n_train, SEEDS["train"]), "test": render_batch(n_test, SEEDS["test"])}
    for domain in domains - {"train"}:
        sets[domain] = render_batch(n_train, SEEDS[domain], domain=domain)
    return sets


def train_zoo(entries: list[Entry], out: Path, data: dict[str, dict], recipe: train.Recipe, device: str,
              resume: bool) -> dict:
    """Train every entry (or keep its weights with --resume); returns the zoo.json record."""
    record_path = out / "zoo.json"
    record = json.loads(record_path.read_text()) if record_path.exists() else {"models": {}}
    record["recipe"] = asdict(recipe)
    record["data"] = {"n_train": len(data["train"]["rgb"]), "n_test": len(data["test"]["rgb"]), "seeds": SEEDS}
    for index, e in enumerate(entries):
        weights = out / f"{e.name}.pt"
        if resume and weights.exists() and e.name in record["models"]:
            continue
        print(f"[{index + 1}/{len(entries)}] {e.name}: {e.arch}, input {e.input_size}, domain {e.domain}", flush=True)
        torch.manual_seed(10_000 + ZOO.index(e))  # each model its own initialisation
        model = train.make_model(e.arch, e.task, **e.kwargs)
        log = train.train_model(model, e.task, data[e.domain], e.input_size, recipe, device)
        loss = train.held_out_loss(model, e.task, data["test"], e.input_size, device=device)
        state = {k: (v.half() if v.is_floating_point() else v) for k, v in model.cpu().state_dict().items()}
        torch.save(state, weights)
        record["models"][e.name] = {**asdict(e), **log, "held_out_loss": loss}
        record_path.write_text(json.dumps(record, indent=1))
        print(f"    held-out loss {loss:.4f} ({log['seconds']} s)", flush=True)
    return record


def measure(out: Path, data: dict[str, dict], record: dict) -> dict:
    """The oracle over group 1, from the shipped (float16) weights as any user would load them."""
    specs = {s.name: s for s in load_zoo(out / "zoo.toml")}
    models = {e.task: load_model(specs[e.name]) for e in GROUP1}
    start = time.time()
    result = oracle.measure_oracle(models, data["train"], data["test"])
    tasks = result.tasks
    with open(out / "oracle_ranking.csv", "w") as fh:
        fh.write("target," + ",".join(f"rank{k}" for k in range(1, len(tasks))) + "\n")
        for target, ranked in result.ranking().items():
            fh.write(f"{target},{','.join(ranked)}\n")
    with open(out / "transfer_matrix.csv", "w") as fh:  # higher = better, as the matrix format expects
        fh.write("target\\source," + ",".join(tasks) + "\n")
        for i, target in enumerate(tasks):
            fh.write(target + "," + ",".join(f"{1 - v:.6f}" for v in result.loss[i]) + "\n")
    info = {
        "protocol": oracle.__doc__.strip(),
        "readout": {"kind": "ridge regression (closed form)", "lambdas": list(oracle.LAMBDAS),
                    "validation_fraction": 0.2, "label_resolution": oracle.READOUT_SIZE},
        "data": record["data"],
        "seeds": {"readout_halves": [0, 1], "note": "the two readouts use disjoint halves of the training scenes"},
        "tasks": tasks,
        "transfer_loss": result.loss.round(6).tolist(),
        "transfer_loss_by_seed": [m.round(6).tolist() for m in result.loss_by_seed],
        "own_task_model_loss": {e.task: record["models"][e.name]["held_out_loss"] for e in GROUP1},
        "pixel_readout_loss": result.pixel_loss,
        "top5_agreement_between_seeds": result.top5_agreement,
        "seconds": round(time.time() - start, 1),
    }
    (out / "oracle.json").write_text(json.dumps(info, indent=1))
    print(f"oracle: top-5 agreement between the two readout seeds {result.top5_agreement:.3f}", flush=True)
    return info


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ZOO_DIR)
    parser.add_argument("--steps", type=int, default=train.Recipe.steps)
    parser.add_argument("--n-train", type=int, default=2000)
    parser.add_argument("--n-test", type=int, default=500)
    parser.add_argument("--only", nargs="*", help="train only these model names")
    parser.add_argument("--resume", action="store_true", help="keep models already trained")
    parser.add_argument("--oracle-only", action="store_true", help="re-measure the oracle from the shipped weights")
    parser.add_argument("--skip-oracle", action="store_true")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    entries = [e for e in ZOO if not args.only or e.name in args.only]
    start = time.time()
    data = render_sets(args.n_train, args.n_test, {e.domain for e in entries})
    print(f"rendered the training sets in {time.time() - start:.0f} s", flush=True)
    (args.out / "zoo.toml").write_text(zoo_toml(ZOO))
    if args.oracle_only:
        record = json.loads((args.out / "zoo.json").read_text())
    else:
        record = train_zoo(entries, args.out, data, train.Recipe(steps=args.steps), args.device, args.resume)
    if not args.skip_oracle:
        measure(args.out, data, record)
    print(f"done in {time.time() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
