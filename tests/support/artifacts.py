"""Screenshots the browser tests keep: tests/artifacts/, $MODELSPACE_ARTIFACTS, and small enough to commit."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from PIL import Image

from support.paths import TESTS

ARTIFACTS = TESTS / "artifacts"  # .gitignored; the small palette versions are committed with `git add -f`


def modest(path: Path, width: int = 1100) -> Path:
    """Shrink a screenshot to `width` px and a 128-colour palette, so that committing it costs little."""
    image = Image.open(path).convert("RGB")
    image = image.resize((width, round(image.height * width / image.width)), Image.Resampling.LANCZOS)
    image.quantize(128, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    return path


def keep(path: Path) -> Path:
    """Copy a screenshot to $MODELSPACE_ARTIFACTS too, when CI asks for it."""
    target = os.environ.get("MODELSPACE_ARTIFACTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(target) / path.name)
    return path
