#!/usr/bin/env bash
# Regenerate benchmarks/RESULTS.md whole, on an otherwise idle machine, from the repository root:
#
#     bash benchmarks/regenerate.sh [BEFORE]
#
# Sections 1-8 run in the test environment (`python`, or $PYTHON), which writes a new file; sections 9-12 run in
# the vision environment of DEVELOPERS.md (.venv-vision, or $VISION_PYTHON; 9 and 11 need its timm, torchvision
# and Zennit), each appending its part. BEFORE is the commit memory.py compares against (default c8459ab, the
# code before a pass's memory was bounded); it is checked out in a temporary worktree.
set -euo pipefail
PYTHON="${PYTHON:-python}"
VISION_PYTHON="${VISION_PYTHON:-.venv-vision/bin/python}"
BEFORE="${1:-c8459ab}"
RESULTS=benchmarks/RESULTS.md

worktree="$(mktemp -d)/before"
git worktree add --detach -q "$worktree" "$BEFORE"
trap 'git worktree remove --force "$worktree"' EXIT

"$PYTHON" benchmarks/bench.py --sections attribution captum affinity insertion levers sketch gpu world
"$VISION_PYTHON" benchmarks/bench.py --sections real --append
"$VISION_PYTHON" benchmarks/confidence.py --repeats 2 --append "$RESULTS"
"$VISION_PYTHON" benchmarks/memory.py --before "$worktree/src" --images 32 24 --append "$RESULTS"
"$VISION_PYTHON" benchmarks/taskonomy.py --quiet --append "$RESULTS"
