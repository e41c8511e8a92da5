"""The import direction of docs/layers.md, enforced for every module of every layer.

The tables are read from docs/layers.md itself (one source of truth). Two checks:
- import time: each layer's modules are imported in a fresh interpreter whose meta-path hook records every module
  loaded and the module whose `import` asked for it; nothing a layer may not load may appear.
- source: every import statement, inside functions too, names only layers the table allows there; the torch family
  is never imported, even lazily, by the layers a device runs (core, datasets, validate, runtime).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIRS = {  # pyproject's package-dir
    "srg_deploy": ROOT / "srg_deploy",
    "srg_deploy.export": ROOT / "export",
    "srg_deploy.runtime": ROOT / "runtime",
    "srg_deploy.plugins": ROOT / "plugins",
}
TORCH_FAMILY = {"torch", "torchvision", "safetensors", "triton"}
DEVICE_LAYERS = {"core", "datasets", "validate", "runtime"}
MODEL_MODULES = {"model", "detector", "checkpoint", "detectron2_import"}


def _names(cell: str) -> set[str]:
    return {n.strip() for n in cell.replace("every layer", "*").split(",") if n.strip()}


def _tables() -> tuple[dict[str, dict], dict[str, set[str]]]:
    """(layer -> {imports, lazy, never}, module -> extra layers or packages) from docs/layers.md."""
    layers: dict[str, dict] = {}
    extra: dict[str, set[str]] = {}
    for line in (ROOT / "docs" / "layers.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[0] not in ("layer", "---"):
            layers[cells[0]] = {
                "imports": _names(cells[2]) | {cells[0]},
                "lazy": _names(cells[3]),
                "never": _names(cells[4]),
            }
        elif len(cells) == 3 and cells[0].startswith("`srg_deploy."):
            extra[cells[0].strip("`")] = _names(cells[1])
    return layers, extra


LAYERS, EXTRA = _tables()


def layer_of(module: str) -> str:
    parts = module.split(".")
    if parts[0] != "srg_deploy":
        raise ValueError(module)
    if len(parts) == 1:
        return "core"
    if parts[1] in MODEL_MODULES:
        return "model"
    if parts[1] in LAYERS and parts[1] != "core":
        return parts[1]
    return "core"


def all_modules() -> dict[str, Path]:
    modules = {}
    for package, folder in PACKAGE_DIRS.items():
        for path in sorted(folder.rglob("*.py")):
            parts = [p for p in path.relative_to(folder).with_suffix("").parts if p != "__init__"]
            if package == "srg_deploy" and parts and f"srg_deploy.{parts[0]}" in PACKAGE_DIRS:
                continue
            modules[".".join([package, *parts])] = path
    return modules


MODULES = all_modules()

# Imports every module named on the command line, one after the other, and prints, for each, what loading it
# loaded for the first time and which module's import statement asked for it (a module whose optional dependency,
# e.g. tensorrt, is missing here is judged on what it loaded up to that point).
PROBE = r"""
import importlib, json, sys

class Recorder:
    def __init__(self):
        self.loaded = []

    def find_spec(self, name, path=None, target=None):
        frame, importer = sys._getframe(1), "?"
        while frame is not None:
            caller = frame.f_globals.get("__name__", "")
            if not caller.startswith(("importlib", "_frozen_importlib")) and frame.f_globals is not globals():
                importer = caller
                break
            frame = frame.f_back
        self.loaded.append((name, importer))
        return None

recorder = Recorder()
sys.meta_path.insert(0, recorder)
report = {}
for module in sys.argv[1:]:
    recorder.loaded = []
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as e:  # an optional dependency not installed here: what it loaded before still counts
        if (e.name or "").startswith("srg_deploy"):
            raise
    report[module] = recorder.loaded
print(json.dumps(report))
"""


def _allowed(module: str, loaded: str, at_import: bool) -> bool:
    rules, extra = LAYERS[layer_of(module)], EXTRA.get(module, set())
    if loaded.split(".")[0] == "srg_deploy":
        target = layer_of(loaded)
        return target in rules["imports"] or target in extra or (not at_import and ({target, "*"} & rules["lazy"]))
    return loaded.split(".")[0] not in rules["never"] - extra


def _import_time_offences(layer: str) -> list[str]:
    modules = sorted((m for m in MODULES if layer_of(m) == layer), key=lambda m: (m in EXTRA, m))
    result = subprocess.run([sys.executable, "-c", PROBE, *modules], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    offences = []
    for module, loaded in json.loads(result.stdout).items():
        for name, importer in loaded:
            # what a third-party package loads for itself (torch loading triton) is its own business
            if importer.split(".")[0] == "srg_deploy" and not _allowed(module, name, at_import=True):
                offences.append(f"{module} loads {name} (imported by {importer})")
    return offences


@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_each_layer_loads_only_what_the_table_allows(layer):
    assert _import_time_offences(layer) == []


def test_import_statements_follow_the_table_inside_functions_too():
    offences = []
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text())
        top_level = {id(node) for node in tree.body}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            else:
                continue
            at_import = id(node) in top_level
            for name in names:
                if name.split(".")[0] != "srg_deploy":
                    bad = name.split(".")[0] in TORCH_FAMILY - EXTRA.get(module, set())
                    bad = bad and layer_of(module) in DEVICE_LAYERS
                else:
                    bad = not _allowed(module, name, at_import)
                if bad:
                    offences.append(f"{module}:{node.lineno} imports {name}")
    assert offences == []


def test_the_table_covers_every_module():
    """Every module is in a layer of the table, every layer of the table has modules (so each is enforced by the
    tests above), and every exception names a module that exists."""
    layers = {layer_of(m) for m in MODULES}
    assert layers == set(LAYERS), (layers - set(LAYERS), set(LAYERS) - layers)
    for module in EXTRA:
        assert module in MODULES, f"{module} is in no file"
        assert "pending" not in (ROOT / "docs" / "layers.md").read_text(), "a pending exception is left in the table"
