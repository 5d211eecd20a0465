"""Runs of modelspace as the tests start and read them: a subprocess's environment, a run's work line,
and model identity keys as an earlier version wrote them."""

from __future__ import annotations

import hashlib
import json
import os

from support.paths import SRC, TESTS


def map_units(work: dict) -> dict[str, int]:
    """The map units of a run's work line (``work_``, results.json's ``work``): computed and found stored.
    Its counts of encoder activations are checked by tests/cli/test_user_workflow.py."""
    return {"computed": work["computed"], "reused": work["reused"]}


def subprocess_env() -> dict[str, str]:
    """The environment of a `modelspace` subprocess: this checkout's sources and the toy models."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), str(TESTS)])}


def key_before_preprocessing(spec: dict, state_hash: str) -> str:
    """A model's identity key as modelspace computed it before models stated their own preprocessing:
    sha256 of the canonical JSON of the eleven spec fields it had, a newline and the state-dict hash."""
    fields = ("name", "source", "task", "encoder", "input_size", "mean", "std", "constructor", "kwargs",
              "pretrained", "trust_checkpoint")
    text = json.dumps({k: spec[k] for k in fields}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256((text + "\n" + state_hash).encode()).hexdigest()


def run(capsys, *argv: str) -> tuple[int, str, str]:
    """``modelspace ARGV`` in this process: its exit code, stdout and stderr."""
    from modelspace.cli import main

    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err
