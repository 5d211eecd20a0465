"""The code examples of a Markdown page, read and run as a reader meets them.

A page's fenced blocks are taken in order and grouped by section (its ``## `` heading); a section is
one story, run in a fresh folder. A block's info string says what it is:

- ``python``: a script, run with the interpreter in the section's folder; when its first line is
  ``# file: PATH``, a file the reader saves as PATH instead;
- ``toml``, ``yaml``: a file the reader saves, named by its first line ``# file: PATH``;
- ``sh``: commands, run one after another by bash (``set -e``): the exit code of each must be 0;
- no info string, or ``text``: output or a listing, not run.

Whatever else a block names must be defined by an earlier block of its section, so that a reader
who copies a section's blocks in order gets the same result.
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

RUN = ("python", "toml", "yaml", "sh")
SHOWN = ("", "text")
FILE_LINE = re.compile(r"#\s*file:\s*(\S+)")


@dataclass(frozen=True)
class Block:
    """One fenced block of a page."""

    section: str
    language: str
    text: str
    line: int  # of its opening fence, 1-based

    @property
    def file(self) -> str | None:
        """The PATH of a first line ``# file: PATH``: the block is a file to save there."""
        first = self.text.split("\n", 1)[0]
        match = FILE_LINE.fullmatch(first.strip())
        return match.group(1) if match else None

    @property
    def where(self) -> str:
        return f"line {self.line} ({self.section!r}, ```{self.language})"


def blocks(page: Path) -> list[Block]:
    """Every fenced block of ``page``, in order, with the ``## `` section it is in."""
    found, section, fence = [], "", None
    lines = page.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, 1):
        if fence is None and line.startswith("## "):
            section = line[3:].strip()
        elif fence is None and line.startswith("```"):
            fence = (number, line[3:].strip(), [])
        elif fence is not None and line.startswith("```"):
            found.append(Block(section, fence[1], "\n".join(fence[2]) + "\n", fence[0]))
            fence = None
        elif fence is not None:
            fence[2].append(line)
    if fence is not None:
        raise ValueError(f"{page}: the block opened at line {fence[0]} is never closed")
    return found


def sections(page: Path) -> dict[str, list[Block]]:
    """The runnable blocks of ``page`` by section (sections without one are left out)."""
    grouped: dict[str, list[Block]] = {}
    for block in blocks(page):
        if block.language in RUN:
            grouped.setdefault(block.section, []).append(block)
        elif block.language not in SHOWN:
            raise ValueError(f"{page}, {block.where}: unknown info string {block.language!r}; "
                             f"expected one of {RUN + SHOWN}")
    return grouped


def run_section(section: list[Block], folder: Path, env: dict[str, str], timeout: float = 1200,
                before_commands=None) -> list[subprocess.CompletedProcess]:
    """Run a section's blocks in ``folder``: files saved, scripts and commands run, in order.

    ``before_commands(folder)`` is called before each script or command, once the files a reader saved
    before it are there (to put in place what the page leaves to its reader's machine: images, cached
    weights). Raises AssertionError naming the block whose run fails."""
    done = []
    bin_dir = str(Path(sys.executable).parent)
    env = {**env, "PATH": bin_dir + ":" + env.get("PATH", "")}  # `modelspace` is this interpreter's
    for block in section:
        path = block.file
        if block.language in ("toml", "yaml") and path is None:
            raise AssertionError(f"{block.where}: a {block.language} block starts with '# file: PATH'")
        if path is not None:
            (folder / path).parent.mkdir(parents=True, exist_ok=True)
            (folder / path).write_text(block.text, encoding="utf-8")
            continue
        if before_commands is not None:
            before_commands(folder)
        if block.language == "python":
            script = folder / f"_block_{block.line}.py"
            script.write_text(block.text, encoding="utf-8")
            argv = [sys.executable, script.name]
        else:
            argv = ["bash", "-e", "-c", block.text]
        result = subprocess.run(argv, cwd=folder, env=env, capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            raise AssertionError(f"{block.where} exited {result.returncode}:\n{block.text}\n--- stderr:\n"
                                 f"{result.stderr[-4000:]}\n--- stdout:\n{result.stdout[-2000:]}")
        done.append(result)
    return done


#: The sections of the docs' pages that a dedicated test runs, or CI itself, instead of the test that runs
#: every page's examples: (page path relative to docs/, section title) -> what runs it, and why there.
RUN_ELSEWHERE: dict[tuple[str, str], str] = {
    ("getting-started/install.md", "Set up"):
        ".ci/run runs both set-up commands as written (tests/cli/test_user_workflow.py checks they are the README's)",
    ("getting-started/install.md", "timm and torchvision"):
        ".ci/run builds its vision environment with these pins (tests/cli/test_user_workflow.py checks they agree)",
    ("getting-started/install.md", "This documentation"): "tests/docs/ builds the site",
    ("getting-started/demo.md", "Run it"):
        ".ci/run runs the demo as written; tests/world/test_oracle.py runs a quick demo end to end",
    ("getting-started/own-models.md", "A zoo of timm, Hugging Face and your own networks"):
        "tests/vision/test_examples_on_real_models.py, in the vision environment (its zoo names timm and Hugging Face "
        "models); tests/cli/test_docs_tutorial.py runs its commands on a zoo of every source kind",
    ("getting-started/report.md", "Your models, your probe images, the report"):
        "tests/vision/test_examples_on_real_models.py, in the vision environment (its zoo names timm and torchvision "
        "models); tests/cli/test_docs_tutorial.py runs its commands on a zoo of every source kind",
}
