"""The benchmark harness: configurations, the markdown results writer, timers and synthetic maps.

Every figure is a ratio of two things measured side by side in one run, on the same inputs: the
variants of a row are timed interleaved (round robin, after warm-up), so that a change of machine
load hits all of them alike, and the median over the repeats is kept.
"""


import argparse
import contextlib
import datetime as dt
import gc
import importlib.metadata
import io
import math
import os
import platform
import shlex
import statistics
import sys
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

import modelspace



HERE = Path(__file__).resolve().parent
GIB = 2**30


# ------------------------------------------------------------------------------------ configuration


@dataclass(frozen=True)
class Config:
    repeats: int            # timed repeats per variant (median kept), after `warmup` calls
    warmup: int
    zoo_batch: int          # batch of the built-in zoo's models (their own input sizes, 48-80 px)
    hf_batch: int           # batch of the Hugging Face ResNet / ViT models
    hf_size: int            # their input size
    n_images: int           # Np, probe images per model (affinity, insertion)
    map_size: int           # S: maps are 3 × S × S (F = 3·S²)
    affinity_ns: tuple      # N for the streamed matrix
    naive_max: int          # the naive loop is run whole up to this N, estimated beyond
    naive_subset: int       # models of the subset the estimate is timed on
    matrix_repeats: int     # repeats of the streamed matrix for N <= 100
    insertion_ns: tuple     # N already in the space before one model is added
    min_sample: float       # attribution: a timed sample is the mean of as many calls as fill this (s)


FULL = Config(repeats=7, warmup=1, zoo_batch=16, hf_batch=8, hf_size=224, n_images=1000, map_size=64,
              affinity_ns=(20, 100, 500), naive_max=20, naive_subset=8, matrix_repeats=3,
              insertion_ns=(10, 20, 50, 100), min_sample=0.2)
QUICK = Config(repeats=1, warmup=1, zoo_batch=2, hf_batch=1, hf_size=32, n_images=64, map_size=16,
               affinity_ns=(5, 10, 20), naive_max=5, naive_subset=3, matrix_repeats=1,
               insertion_ns=(3, 5, 10), min_sample=0.0)


# ------------------------------------------------------------------------------------ report


def progress(text: str) -> None:
    """A line of progress, on stderr: stdout carries the results only."""
    print(text, file=sys.stderr, flush=True)


class Report:
    """Markdown lines, echoed to stdout as they come and written to `out` after each section."""

    def __init__(self, out: Path, append: bool = False) -> None:
        self.out = out
        # appending keeps the file's lines (the sections another environment ran) and adds this run's after them
        self.lines: list[str] = out.read_text().rstrip("\n").split("\n") + [""] if append else []

    def add(self, text: str = "") -> None:
        self.lines.append(text)
        print(text, flush=True)

    def table(self, headers: list[str], rows: list[list[Any]]) -> None:
        self.add("| " + " | ".join(headers) + " |")
        self.add("|" + "|".join("---" for _ in headers) + "|")
        for row in rows:
            self.add("| " + " | ".join(str(c) for c in row) + " |")
        self.add()

    def target(self, what: str, met: bool | None, detail: str) -> None:
        verdict = "n/a" if met is None else ("**met**" if met else "**missed**")
        self.add(f"- {what}: {verdict} ({detail})")

    def write(self) -> None:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.out.write_text("\n".join(self.lines) + "\n")


class _Tee(io.TextIOBase):
    def __init__(self, *streams: Any) -> None:
        self.streams = streams

    def write(self, text: str) -> int:
        for stream in self.streams:
            stream.write(text)
        return len(text)

    def flush(self) -> None:
        for stream in self.streams:
            stream.flush()


@contextlib.contextmanager
def appended_section(out: Path | None, title: str, script: str, markdown: bool = False) -> Iterator[None]:
    """Echo what the block prints and, when it ends without an error, append it to ``out`` as one section.

    For the scripts whose results are printed (``confidence.py``, ``memory.py``, ``taskonomy.py``): the
    section is the heading ``## TITLE (`python benchmarks/SCRIPT ARGS`)``, a line naming the machine, the
    versions, the date and the load average at its start and end, and what was printed, as a code block
    (plain text, aligned in columns) or as it is (Markdown without headings).

    Parameters
    ----------
    out : Path or None
        The results file to append to (``benchmarks/RESULTS.md``); None only echoes.
    title : str
        The section's numbered title, e.g. ``"10. The confidence's cost"``.
    script : str
        The script's file name, for the command in the heading.
    markdown : bool, default False
        Whether what the block prints is Markdown, appended as it is, rather than text for a code block.
    """
    if out is None:
        yield
        return
    if not out.is_file():
        raise SystemExit(f"--append: no results file {out} to append to")
    started, load = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), _load()
    printed = io.StringIO()
    with contextlib.redirect_stdout(_Tee(sys.stdout, printed)):
        yield
    lines = [f"## {title} ({_command(script)})", "",
             f"Run on {cpu_name()}, {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}, at {started}; "
             f"{'; '.join(_versions())}; load average at start {load}, at the end {_load()} (more than the threads "
             "means other work shared the CPUs).", ""]
    body = printed.getvalue().strip("\n")
    lines += [body, ""] if markdown else ["```", body, "```", ""]
    with out.open("a", encoding="utf-8") as results:
        results.write("\n" + "\n".join(lines))


def fmt_s(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"


def fmt_bytes(n: float) -> str:
    if n >= GIB:
        return f"{n / GIB:.2f} GiB"
    if n >= 2**20:
        return f"{n / 2**20:.0f} MiB"
    return f"{n / 2**10:.0f} KiB"


def short(text: str, limit: int = 110) -> str:
    text = " ".join(str(text).split()).replace("|", "/")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def cpu_busy(seconds: float = 1.0) -> float | None:
    """Fraction of all CPUs busy over `seconds` (from /proc/stat; None where there is none)."""
    def sample() -> tuple[int, int]:
        with open("/proc/stat") as fh:
            values = [int(v) for v in fh.readline().split()[1:]]
        idle = values[3] + (values[4] if len(values) > 4 else 0)
        return sum(values), idle

    try:
        total0, idle0 = sample()
        time.sleep(seconds)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    return 1.0 - (idle1 - idle0) / max(1, total1 - total0)


def cpu_name() -> str:
    """The processor as the kernel names it (platform.processor() is empty on Linux), with its family and model."""
    fields = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    name = fields.get("model name") or platform.processor()
    if not name:
        return "cpu unnamed"
    detail = [f"{k} {fields[k]}" for k in ("cpu family", "model") if k in fields]
    return name + (f" ({', '.join(detail)})" if detail else "")


def _versions() -> list[str]:
    versions = [f"python {platform.python_version()}", f"torch {torch.__version__}", f"numpy {np.__version__}",
                f"modelspace {modelspace.__version__}"]
    for name in ("transformers", "captum", "timm", "zennit"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):  # zennit has no __version__
            versions.append(f"{name} {importlib.metadata.version(name)}")
    return versions


def _load() -> str:
    return ", ".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"


def _command(script: str = "bench.py") -> str:
    """This run's command line as inline code (``python benchmarks/SCRIPT ARGS``)."""
    return f"`python benchmarks/{' '.join([script, *map(shlex.quote, sys.argv[1:])])}`"


def appended_header(report: Report) -> None:
    """The lines that open sections appended to a results file by a run in another environment (``--append``).

    Parameters
    ----------
    report : Report
        The report, holding the file's earlier lines.
    """
    report.add(f"Appended by {_command()}, in another environment, on "
               f"{dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')}: "
               f"{'; '.join(_versions())}; torch threads {torch.get_num_threads()}; load average at start {_load()}.")
    report.add()


def header(report: Report, cfg: Config, args: argparse.Namespace, quick: bool) -> None:
    load = _load()
    report.add("# modelspace benchmark results")
    report.add()
    if quick:
        report.add("> **Smoke configuration (`--quick`)**: tiny inputs, few repeats. The figures only show that "
                   "the script runs; do not read performance from them.")
        report.add()
    report.add(f"- date: {dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')}")
    report.add(f"- machine: {platform.platform()}, {platform.machine()}, "
               f"{cpu_name()}; {os.cpu_count()} CPUs; "
               f"torch threads {torch.get_num_threads()}; load average at start {load}")
    report.add("- " + "; ".join(_versions()))
    report.add(f"- command: {_command()}")
    report.add(f"- configuration: {cfg}")
    busy = cpu_busy()
    if busy is not None and busy > 0.2:
        report.add(f"- ⚠ **the machine was not idle at the start** ({busy:.0%} of the CPUs busy with other work): with "
                   "other work on the CPUs, torch's threads wait for each other and single calls slow down many "
                   "times over; rows marked ⚠ are unreliable, rerun on an idle machine.")
    report.add("- method: each ratio compares variants timed interleaved (round robin) in this run on the same "
               "inputs, median of the repeats after warm-up; absolute times are for context only.")
    report.add()


# ------------------------------------------------------------------------------------ timing


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def traced(fn: Callable[[], Any]) -> tuple[Any, float, int]:
    """Run `fn` once under tracemalloc: (result, seconds, peak bytes allocated during the call)."""
    gc.collect()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        out, seconds = timed(fn)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return out, seconds, peak


class Timings:
    """Per-round samples of interleaved variants: medians, and ratios paired within each round."""

    def __init__(self, samples: dict[str, list[float]]) -> None:
        self.samples = samples

    def __contains__(self, name: str) -> bool:
        return name in self.samples

    def median(self, name: str) -> float:
        return statistics.median(self.samples[name])

    def ratios(self, a: str, b: str) -> list[float]:
        return [x / y for x, y in zip(self.samples[a], self.samples[b])]

    def ratio(self, a: str, b: str) -> float:
        """Median over rounds of a / b measured in the same round (robust to slow drifts of load)."""
        return statistics.median(self.ratios(a, b))

    def cell(self, a: str, b: str) -> str:
        """'ratio (time of a)', marked when the per-round ratios scatter by more than ±15 %."""
        r, rs = self.ratio(a, b), self.ratios(a, b)
        noisy = len(rs) > 1 and (max(rs) > 1.15 * r or min(rs) < r / 1.15)
        mark = f" ⚠ rounds {min(rs):.2f}–{max(rs):.2f}" if noisy else ""
        return f"{r:.2f} ({fmt_s(self.median(a))}{mark})"


def interleaved(variants: dict[str, Callable[[], Any]], warmup: int, repeats: int,
                min_sample: float = 0.0) -> Timings:
    """Time the variants in turns: `warmup` untimed calls each, then `repeats` rounds of one sample
    each. A sample is the mean of k calls, k chosen per variant so that a sample lasts at least
    `min_sample` seconds (fast calls are otherwise at the mercy of the clock and the scheduler)."""
    calls = {}
    for name, fn in variants.items():
        for _ in range(warmup):
            fn()
        calls[name] = 1 if min_sample <= 0 else max(1, math.ceil(min_sample / max(timed(fn)[1], 1e-6)))
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            gc.collect()
            k = calls[name]
            start = time.perf_counter()
            for _ in range(k):
                fn()
            samples[name].append((time.perf_counter() - start) / k)
    return Timings(samples)



# ------------------------------------------------------------------------------------ models


def loaded_model(spec: Any, module: torch.nn.Module, encoder: str | None, key: str) -> Any:
    """A `LoadedModel` around a module built here rather than by a loader: the spec's preprocessing
    resolved as `load_model` resolves it (the model states none of its own), the transform from it."""
    from modelspace.models import LoadedModel, resolve_preprocessing
    from modelspace.models.transforms import InputTransform

    resolved, record = resolve_preprocessing(spec, {})
    return LoadedModel(spec=resolved, module=module, encoder=encoder, transform=InputTransform.from_spec(resolved),
                       key=key, preprocessing=record)


# ------------------------------------------------------------------------------------ synthetic maps


class SyntheticMaps:
    """Normalised float16 maps of many models without holding them all: model i's row k is a row
    of one shared pool (a per-model random choice of rows), read as float32 like `MapStore.read`."""

    def __init__(self, n_images: int, n_features: int, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.n_images, self.n_features = n_images, n_features
        pool = rng.random((n_images + 251, n_features), dtype=np.float32) - 0.25
        pool /= np.linalg.norm(pool, axis=1, keepdims=True)
        self.pool = pool.astype(np.float16)
        self.seed = seed

    def rows(self, model: int) -> np.ndarray:
        rng = np.random.default_rng((self.seed, model))
        return rng.permutation(len(self.pool))[: self.n_images]

    def reader(self, model: int) -> Callable[[int, int], np.ndarray]:
        idx = self.rows(model)
        return lambda start, stop: self.pool[idx[start:stop]].astype(np.float32)

    def array(self, model: int) -> np.ndarray:
        return self.pool[self.rows(model)]
