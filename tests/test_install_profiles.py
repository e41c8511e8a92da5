"""Install profiles (docs/DESIGN.md §7): the runtime stands alone. A fresh interpreter importing the runtime loads
neither torch nor the export package, and a venv with only `pip install ".[cpu]"` (no torch, as on an edge device)
runs `infer`, `bench` and `verify --reference golden.npz` on an ONNX file made by the full install. The device
builds its own engine: a venv with `pip install ".[cpu,build]"` and torch blocked converts, checks and writes the
fp16 ONNX (the same as the full install's), then stops with one line naming TensorRT. An Intel device runs OpenVINO:
a venv with `pip install ".[cpu,openvino]"` and torch blocked runs `infer --backend openvino` (fp32, and bf16 where
the CPU has it) on the same file, fp32 records equal to the full install's OpenVINO run."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import onnx
import pytest
from conftest import ROOT, make_frame, run_cli

RUNTIME_VENV = ROOT / ".venv-runtime"
BUILD_VENV = ROOT / ".venv-build"
OPENVINO_VENV = ROOT / ".venv-openvino"
# A .pth line (run at interpreter start): torch and torchvision cannot be imported, even if something pulled them in.
BLOCK_TORCH = (
    'import sys; exec("class _NoTorch:\\n def find_spec(self, name, path=None, target=None):\\n'
    "  if name.split('.')[0] in ('torch', 'torchvision'): raise ImportError(name + ' is blocked in this venv')\\n"
    'sys.meta_path.insert(0, _NoTorch())")\n'
)
BOXES = [[10, 10, 60, 50], [40, 30, 150, 110], [0, 0, 159, 119]]


def test_runtime_imports_neither_torch_nor_export():
    """Every runtime module but the eager backend, the CLI and the runtime's commands, in a fresh interpreter."""
    code = """
import importlib, pkgutil, sys
import srg_deploy.runtime as runtime
for module in pkgutil.iter_modules(runtime.__path__):
    if module.name != "torch_backend":
        importlib.import_module(f"srg_deploy.runtime.{module.name}")
for name in ("cli", "commands.infer", "commands.verify", "commands.bench", "datasets", "scene_graph", "contract"):
    importlib.import_module(f"srg_deploy.{name}")
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision", "onnx", "safetensors"))
loaded += sorted(m for m in sys.modules if m.startswith(("srg_deploy.export", "srg_deploy.model", "srg_deploy.plugins.roi")))
print(" ".join(loaded))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"the runtime imported: {result.stdout}"


def _source_digest() -> str:
    """What the runtime venv was built from: pyproject and every package file."""
    h = hashlib.sha256()
    for folder in ("srg_deploy", "runtime", "export", "plugins"):
        for path in sorted((ROOT / folder).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                h.update(path.as_posix().encode() + path.read_bytes())
    h.update((ROOT / "pyproject.toml").read_bytes())
    return h.hexdigest()


def profile_venv(folder: Path, extras: str, block_torch: bool = False) -> Path:
    """A venv with `pip install ".[extras]"` only (a real, non-editable install of this checkout); with
    `block_torch`, torch and torchvision cannot be imported in it at all. Built once; the package is reinstalled
    when the sources change. Returns its bin folder."""
    python = folder / "bin" / "python"
    stamp = folder / ".source-digest"
    digest = _source_digest()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True, timeout=300)
    if block_torch:
        site = subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        (Path(site) / "zz_no_torch.pth").write_text(BLOCK_TORCH)
    if not stamp.is_file() or stamp.read_text() != digest:
        install = [str(python), "-m", "pip", "install", "--quiet", "--force-reinstall", "--no-deps", str(ROOT)]
        deps = [str(python), "-m", "pip", "install", "--quiet", f"{ROOT}[{extras}]"]
        for command in (deps, install):
            result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1200)
            assert result.returncode == 0, result.stdout + result.stderr
        stamp.write_text(digest)
    return folder / "bin"


@pytest.fixture(scope="session")
def runtime_bin() -> Path:
    """`.venv-runtime`: `pip install ".[cpu]"`, the runtime of an edge device."""
    return profile_venv(RUNTIME_VENV, "cpu")


@pytest.fixture(scope="session")
def build_bin() -> Path:
    """`.venv-build`: `pip install ".[cpu,build]"` with torch and torchvision blocked, a device that builds its own
    engine."""
    return profile_venv(BUILD_VENV, "cpu,build", block_torch=True)


@pytest.fixture(scope="session")
def openvino_bin() -> Path:
    """`.venv-openvino`: `pip install ".[cpu,openvino]"` with torch and torchvision blocked, an Intel edge device."""
    return profile_venv(OPENVINO_VENV, "cpu,openvino", block_torch=True)


def runtime_cli(bin_dir: Path, *args: object, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run(
        [str(bin_dir / "srg-deploy"), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**env, "COLUMNS": "200"},
        cwd=cwd,  # not the checkout: the installed package must be the one imported
    )


@pytest.fixture(scope="module")
def frames(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("frames")
    for k in range(2):
        assert cv2.imwrite(str(folder / f"f{k}.png"), make_frame(120, 160, seed=k))
    (folder / "boxes.json").write_text(json.dumps(BOXES))
    return folder


def test_runtime_venv_has_no_torch(runtime_bin, tmp_path):
    result = subprocess.run(
        [
            str(runtime_bin / "python"),
            "-c",
            "import importlib.util as u; print(u.find_spec('torch'), u.find_spec('onnx'))",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert result.stdout.split() == ["None", "None"], result.stdout + result.stderr


def test_runtime_venv_infers_and_verifies_against_golden(runtime_bin, small_onnx, small_checkpoint, frames, tmp_path):
    boxes = frames / "boxes.json"
    full, edge = tmp_path / "full.jsonl", tmp_path / "edge.jsonl"
    golden = tmp_path / "golden.npz"
    made = run_cli(
        "verify", small_onnx, "--reference", small_checkpoint, "--source", frames, "--boxes", boxes,
        "--save-reference", golden,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert run_cli("infer", small_onnx, "--source", frames, "--boxes", boxes, "--json", full).returncode == 0

    result = runtime_cli(
        runtime_bin, "infer", small_onnx, "--source", frames, "--boxes", boxes, "--json", edge, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    strip = [{k: v for k, v in json.loads(line).items() if k != "latency_ms"} for line in full.read_text().splitlines()]
    assert [
        {k: v for k, v in json.loads(line).items() if k != "latency_ms"} for line in edge.read_text().splitlines()
    ] == strip

    result = runtime_cli(runtime_bin, "verify", small_onnx, "--reference", golden, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "[✓]" in result.stdout and "golden" in result.stdout

    tampered = tmp_path / "tampered.onnx"
    proto = onnx.load(str(small_onnx))
    (weight,) = [t for t in proto.graph.initializer if t.name == "union_embed.weight"]
    weight.CopyFrom(onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(weight) * 1.05, weight.name))
    onnx.save(proto, str(tampered))
    result = runtime_cli(runtime_bin, "verify", tampered, "--reference", golden, cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "fails verification" in result.stderr and "relation_logits: max abs error" in result.stderr

    result = runtime_cli(
        runtime_bin, "bench", small_onnx, "--image-size", "96x128", "--boxes", "3", "--iters", "1", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "roi_pool5" in result.stdout


def test_runtime_venv_names_the_missing_extra(runtime_bin, small_checkpoint, tmp_path):
    result = runtime_cli(runtime_bin, "export", small_checkpoint, "-o", tmp_path / "m.onnx", cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        'error: this command needs torch, which is not installed: pip install "srg-deploy[export]"'
    )
    result = runtime_cli(
        runtime_bin, "infer", small_checkpoint, "--source", "synthetic:64x48", "--max-frames", "1", cwd=tmp_path
    )
    assert result.returncode == 1 and 'pip install "srg-deploy[export]"' in result.stderr


INSTALLED_KERNELS = """
import importlib.util, json
from srg_deploy.plugins.aot import SHIPPED, aot_kernel
kernels = {v.file_name: aot_kernel(v.dtype, v.pooled_shape, v.spatial_scale, max_ptx_isa=80).ptx for v in SHIPPED}
print(json.dumps({"triton": importlib.util.find_spec("triton") is not None, "kernels": kernels}))
"""


def test_installed_package_ships_the_roi_kernels_ptx(runtime_bin, tmp_path):
    """The TensorRT plugin's precompiled PTX is package data: an install without Triton has every shipped kernel."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    result = subprocess.run(
        [str(runtime_bin / "python"), "-c", INSTALLED_KERNELS], capture_output=True, text=True, cwd=tmp_path, env=env
    )
    assert result.returncode == 0, result.stderr
    installed = json.loads(result.stdout)
    shipped = {p.name: p.read_text() for p in (ROOT / "plugins" / "ptx").glob("*.ptx")}
    assert installed == {"triton": False, "kernels": shipped}


def test_build_venv_converts_fp16_without_torch_then_names_tensorrt(build_bin, small_onnx, tmp_path):
    """`build-engine --fp16 --onnx-out` on `[cpu,build]` with torch unimportable: converts, checks against ONNX
    Runtime fp32 of the same file, writes the fp16 ONNX, then one line naming TensorRT (non-zero exit). The fp16
    ONNX is the full install's."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    probe = subprocess.run(
        [str(build_bin / "python"), "-c", "import torch"], capture_output=True, text=True, cwd=tmp_path, env=env
    )
    assert probe.returncode != 0 and "blocked" in probe.stderr, probe.stderr

    device, full = tmp_path / "device-fp16.onnx", tmp_path / "full-fp16.onnx"
    result = runtime_cli(
        build_bin, "build-engine", small_onnx, "-o", tmp_path / "m.engine", "--fp16", "--onnx-out", device, cwd=tmp_path
    )
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stdout + result.stderr
    errors = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert errors[-1].startswith("error: TensorRT is required") and 'pip install "srg-deploy[trt]"' in errors[-1]
    assert "this command needs torch" not in result.stderr
    assert "[✓] fp16 vs fp32 (onnxruntime" in result.stdout and f"wrote {device}" in result.stdout
    assert not (tmp_path / "m.engine").exists()

    made = run_cli("build-engine", small_onnx, "-o", tmp_path / "full.engine", "--fp16", "--onnx-out", full)
    assert full.is_file(), made.stdout + made.stderr
    a, b = onnx.load(str(device)), onnx.load(str(full))
    assert a.graph.SerializeToString() == b.graph.SerializeToString()  # nodes, weights, I/O: the same model
    assert {p.key: p.value for p in a.metadata_props} == {p.key: p.value for p in b.metadata_props}


def test_openvino_venv_infers_without_torch(openvino_bin, small_onnx, frames, tmp_path):
    boxes = frames / "boxes.json"
    full, edge = tmp_path / "full.jsonl", tmp_path / "edge.jsonl"
    made = run_cli("infer", small_onnx, "--backend", "openvino", "--source", frames, "--boxes", boxes, "--json", full)
    assert made.returncode == 0, made.stderr
    result = runtime_cli(
        openvino_bin, "infer", small_onnx, "--backend", "openvino", "--source", frames, "--boxes", boxes,
        "--json", edge, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "backend: openvino (CPU, fp32, boxes mode)" in result.stderr
    strip = [{k: v for k, v in json.loads(line).items() if k != "latency_ms"} for line in full.read_text().splitlines()]
    assert [
        {k: v for k, v in json.loads(line).items() if k != "latency_ms"} for line in edge.read_text().splitlines()
    ] == strip
    check = subprocess.run(
        [str(openvino_bin / "python"), "-c", "import importlib.util as u; print(u.find_spec('openvino') is not None)"],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert check.stdout.split() == ["True"], check.stderr
    import openvino

    if "BF16" in [str(c) for c in openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")]:
        result = runtime_cli(
            openvino_bin, "infer", small_onnx, "--backend", "openvino", "--precision", "bf16", "--source", frames,
            "--boxes", boxes, "--json", tmp_path / "bf16.jsonl", cwd=tmp_path,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert "backend: openvino (CPU, bf16, boxes mode)" in result.stderr
