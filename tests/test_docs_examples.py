"""Every bash and python block of README.md and docs/ either runs here, as written, or says why not.

A runnable block runs with bash in a folder holding the files the examples name: `ckpt/` (a small checkpoint:
default architecture, small frames), `model.onnx` (its export), `images/` and `boxes.json`. A block that cannot run
here is preceded by `<!-- not-run: why -->`; one that another test runs (a client against a stand-in server) by
`<!-- run-by: tests/test_x.py ... -->`, and that test must read the page.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

BLOCK = re.compile(
    r"^(?:<!-- (?P<marker>not-run|run-by): (?P<why>.+?) -->\n)?```(?P<lang>\w*)\n(?P<code>.*?)^```$", re.M | re.S
)
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
CODE = ("bash", "sh", "python")
BOXES = "[[10, 10, 60, 50], [40, 30, 150, 110], [0, 0, 159, 119]]"


def blocks() -> list[tuple[str, int, str | None, str, str]]:
    found = []
    for page in PAGES:
        text = page.read_text()
        for m in BLOCK.finditer(text):
            if m["lang"] in CODE:
                line = text[: m.start()].count("\n") + 1 + (m["marker"] is not None)
                found.append((f"{page.relative_to(ROOT)}:{line}", m["marker"], m["why"], m["lang"], m["code"]))
    return found


BLOCKS = blocks()
RUNNABLE = [b for b in BLOCKS if b[1] is None]


def test_every_code_block_runs_or_says_why_not():
    assert len(RUNNABLE) >= 4, [b[0] for b in RUNNABLE]
    for where, marker, why, lang, _ in BLOCKS:
        assert marker or lang != "python", f"{where}: a python block needs a run-by marker naming its test"
        if marker == "run-by":
            test = ROOT / why.split()[0]
            assert test.is_file(), f"{where}: {test} does not exist"
            assert where.split(":")[0] in test.read_text(), f"{where}: {test.name} does not read this page"
        elif marker == "not-run":
            assert len(why) > 10, f"{where}: say why the block cannot run here"


@pytest.fixture(scope="module")
def kit(tmp_path_factory, small_checkpoint, small_onnx) -> Path:
    """The files the examples name."""
    import cv2
    from conftest import make_frame

    folder = tmp_path_factory.mktemp("kit")
    shutil.copytree(small_checkpoint, folder / "ckpt")
    shutil.copy(small_onnx, folder / "model.onnx")
    (folder / "images").mkdir()
    for k, name in enumerate(("a.png", "b.jpg")):
        assert cv2.imwrite(str(folder / "images" / name), make_frame(120, 160, k))
    (folder / "boxes.json").write_text(BOXES)
    return folder


@pytest.mark.parametrize("where, code", [(b[0], b[4]) for b in RUNNABLE], ids=[b[0] for b in RUNNABLE])
def test_runnable_block_runs_as_written(kit, tmp_path, where, code):
    work = tmp_path / "work"
    shutil.copytree(kit, work)
    script = f'set -euo pipefail\nsrg-deploy() {{ "{sys.executable}" -m srg_deploy.cli "$@"; }}\n{code}'
    result = subprocess.run(
        ["bash", "-c", script],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert result.returncode == 0, f"{where}\n{code}\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
    assert "Traceback" not in result.stderr, result.stderr
