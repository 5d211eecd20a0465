"""The built-in world's page renders its figures from the world's files (docs/_ext/modelspace_world.py):
checked on small records whose figures are worked out by hand here, and on the shipped files against the
criteria tests/world/test_oracle.py enforces."""

from __future__ import annotations

import json

import pytest

from support.docs_site import extension
from support.paths import REPO

world = extension("modelspace_world")

ORACLE = REPO / "src" / "modelspace" / "data" / "world" / "zoo" / "oracle.json"
RECORDS = REPO / "scripts" / "world" / "records"


def table(markdown: str, header_start: str) -> list[list[str]]:
    """The body rows of the Markdown table whose header starts with ``header_start``, as cells."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split("|")])
    return rows


def small_oracle() -> dict:
    # Three targets; b's own encoder is 2nd, 0.3 behind a with a noise of 0.1: 3.00 units.
    validity = {"a": {"own_rank": 1, "best_source": "a", "best_minus_median": 0.4, "readout_noise": 0.05,
                      "gap_over_noise": 8.0},
                "b": {"own_rank": 2, "best_source": "a", "best_minus_median": 0.6, "readout_noise": 0.1,
                      "gap_over_noise": 6.0},
                "c": {"own_rank": 1, "best_source": "c", "best_minus_median": 0.9, "readout_noise": 0.01,
                      "gap_over_noise": 90.0}}
    return {"tasks": ["a", "b", "c"], "transfer_loss": [[0.1, 0.5, 0.6], [0.2, 0.5, 0.9], [0.8, 0.9, 0.05]],
            "validity": validity, "own_best_count": 2, "top5_agreement_between_seeds": 0.9,
            "zoo_retraining": {"twinned_models": ["a@seed1"], "targets": {"a": {}}, "top5_agreement": 0.8,
                               "own_best_first_copy": 1, "own_best_second_copy": 0}}


def test_oracle_validity_on_a_small_oracle() -> None:
    text = world.oracle_validity_markdown(small_oracle())
    summary = {row[0]: row[1] for row in table(text, "| figure |")}
    assert summary["a target's own encoder is its best source"] == "2 of 3 targets; 2nd at worst (b)"
    assert summary["best − median source, in readout seed-to-seed noise"] == "6.0 (b) to 90 (c)"
    assert summary["top-5 sources kept when 1 task models are retrained from another seed"] == "0.80"
    assert summary["own encoder best on the 1 twinned targets, first copy / second copy of the zoo"] == "1 / 0 of 1"
    per_target = table(text, "| target |")
    assert per_target == [["a", "1", "a", "–", "8.0"], ["b", "2", "a", "3.00", "6.0"], ["c", "1", "c", "–", "90.0"]]


@pytest.mark.parametrize(("values", "chosen"), [
    ({"8": 1.0, "16": 0.9, "32": 0.89}, 16),   # 8 → 16 gains 10 %, 16 → 32 1.1 %: 16 is enough
    ({"8": 1.0, "16": 0.9, "32": 0.8}, 32),    # every step gains over 2 %: the last rung
    ({"8": 1.0, "16": 1.05, "32": 0.5}, 8),    # the first step loses: 8, whatever comes after
])
def test_readout_check_picks_the_rung_of_its_rule(values, chosen) -> None:
    record = {"t<-t": {**values, "s8": 1.0}, "t<-u": dict(values)}
    text = world.readout_check_markdown(record, "epochs")
    rows = table(text, "| epochs |")
    assert [r[0] for r in rows] == ["8", "16", "32"] and {r[1] for r in rows} == {"2"}
    expected_change = 100 * (values["16"] - values["8"]) / values["8"]
    assert rows[1][3] == f"{expected_change:+.1f} %"
    assert f"picks **{chosen} epochs**" in text


def test_the_shipped_files_render_the_recipe_the_oracle_uses() -> None:
    oracle = json.loads(ORACLE.read_text(encoding="utf-8"))
    text = world.oracle_validity_markdown(oracle)
    assert [r[0] for r in table(text, "| target |")] == oracle["tasks"]
    recipe = oracle["readout"]
    # The budget was measured on 2 000 scenes: the oracle keeps its number of steps on its own scenes.
    budget = world.readout_check_markdown(json.loads((RECORDS / "readout_budget.json").read_text()), "epochs")
    steps = int(budget.split("picks **")[1].split()[0]) * 2000
    assert steps == recipe["epochs"] * recipe["n_train"]
    scenes = world.readout_check_markdown(json.loads((RECORDS / "readout_scenes.json").read_text()), "scenes")
    assert f"picks **{recipe['n_train']} scenes**" in scenes
    width = world.readout_check_markdown(json.loads((RECORDS / "readout_width.json").read_text()), "channels")
    assert f"picks **{recipe['width']} channels**" in width
