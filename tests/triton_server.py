"""A real `tritonserver` on 127.0.0.1 for the tests and benchmarks/triton_bench.py: the binary and python backend of
the `nvidia-pytriton` wheel (tritonserver 2.51.0 = Triton 24.10, python backend only).

The server's Python is its own venv, `.venv-triton`: the python backend's stub embeds the interpreter it finds first
on PATH (as pytriton runs it), and 24.10's stub passes zeroed tensors under numpy 2 (python_backend#384), so that venv
has numpy<2, srg-deploy (editable: this checkout) with ONNX Runtime, and the wheel itself installed with --no-deps (it
pins numpy<2, which must never reach the main venv). Built once; rebuilt when pyproject.toml changes.

The stub links libpython3.X.so.1.0; `LD_LIBRARY_PATH` puts the running interpreter's own first (a pyenv build is not
the system's 3.11.2, and mixing them fails inside threading). Both addresses are 127.0.0.1 (Triton's default is
0.0.0.0), metrics are off, and the server is stopped with SIGTERM (SIGKILL if it does not exit).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVER_VENV = ROOT / ".venv-triton"
PYTRITON = "nvidia-pytriton==0.7.0"
SERVER_DEPS = ["numpy<2"]  # see the module docstring


class ServerUnavailable(Exception):
    """The server cannot be installed or started on this machine (no network for pip, no wheel for the platform)."""


def _pip_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}


def _run(command: list[str], what: str) -> str:
    result = subprocess.run(command, capture_output=True, text=True, env=_pip_env(), timeout=1800)
    if result.returncode != 0:
        tail = (result.stdout + result.stderr).strip().splitlines()[-5:]
        raise ServerUnavailable(f"{what} failed: {' | '.join(tail)}")
    return result.stdout


def server_venv() -> Path:
    """`.venv-triton`, built if missing or older than pyproject.toml's content; returns its bin folder."""
    python = SERVER_VENV / "bin" / "python"
    stamp = SERVER_VENV / ".deps-digest"
    digest = hashlib.sha256(((ROOT / "pyproject.toml").read_text() + PYTRITON + " ".join(SERVER_DEPS)).encode())
    if stamp.is_file() and stamp.read_text() == digest.hexdigest() and python.exists():
        return SERVER_VENV / "bin"
    if not python.exists():
        _run([sys.executable, "-m", "venv", str(SERVER_VENV)], "creating .venv-triton")
    pip = [str(python), "-m", "pip", "install", "--quiet"]
    _run([*pip, *SERVER_DEPS, "-e", f"{ROOT}[cpu]"], "installing srg-deploy[cpu] with numpy<2 into .venv-triton")
    _run([*pip, "--no-deps", PYTRITON], f"installing {PYTRITON} into .venv-triton")
    stamp.write_text(digest.hexdigest())
    return SERVER_VENV / "bin"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TritonServer:
    """`with TritonServer(repository) as server:` a ready server; `server.http` / `server.grpc` are host:port."""

    def __init__(self, repository: Path, extra_args: tuple[str, ...] = ()) -> None:
        self.repository = Path(repository)
        self.extra_args = extra_args
        self.http = self.grpc = ""
        self.process: subprocess.Popen | None = None
        self.workdir: Path | None = None

    def __enter__(self) -> TritonServer:
        bin_dir = server_venv()
        site = _run(
            [str(bin_dir / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            "locating .venv-triton's site-packages",
        ).strip()
        dist = Path(site) / "pytriton" / "tritonserver"
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        stub = dist / "python_backend_stubs" / version / "triton_python_backend_stub"
        if not stub.is_file():
            raise ServerUnavailable(f"{PYTRITON} has no python backend stub for Python {version}")
        self.workdir = Path(tempfile.mkdtemp(prefix="srg-triton-"))
        backend = self.workdir / "backends" / "python"
        backend.mkdir(parents=True)
        for name in ("libtriton_python.so", "triton_python_backend_utils.py"):
            (backend / name).symlink_to(dist / "backends" / "python" / name)
        shutil.copy(stub, backend / "triton_python_backend_stub")
        libdir = sysconfig.get_config_var("LIBDIR") or ""
        libs = [str(Path(site) / "nvidia_pytriton.libs")]
        if libdir and (Path(libdir) / str(sysconfig.get_config_var("INSTSONAME"))).exists():
            libs.insert(0, libdir)
        env = {
            **_pip_env(),
            "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
            "LD_LIBRARY_PATH": os.pathsep.join([*libs, os.environ.get("LD_LIBRARY_PATH", "")]).rstrip(os.pathsep),
        }
        http, grpc = _free_port(), _free_port()
        self.http, self.grpc = f"127.0.0.1:{http}", f"127.0.0.1:{grpc}"
        self.log = self.workdir / "tritonserver.log"
        command = [
            str(dist / "bin" / "tritonserver"),
            f"--model-repository={self.repository}",
            f"--backend-directory={self.workdir / 'backends'}",
            "--http-address=127.0.0.1",
            f"--http-port={http}",
            "--grpc-address=127.0.0.1",
            f"--grpc-port={grpc}",
            "--allow-metrics=false",
            "--exit-timeout-secs=10",
            *self.extra_args,
        ]
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.workdir)
        try:
            self._wait_ready(timeout=180)
        except BaseException:
            self.__exit__()
            raise
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"tritonserver exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"http://{self.http}/v2/health/ready", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"tritonserver not ready after {timeout:.0f} s:\n{self.log_tail()}")

    def alive(self) -> bool:
        if self.process is None or self.process.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(f"http://{self.http}/v2/health/live", timeout=5) as response:
                return response.status == 200
        except OSError:
            return False

    def log_tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(line for line in text.splitlines() if not line.startswith("|"))[-6000:]

    def rss_mb(self) -> float:
        """Resident memory of the server and its python stubs (its child processes), MiB."""
        pids = [self.process.pid]
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                try:
                    if int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]) == self.process.pid:
                        pids.append(int(pid))
                except (OSError, IndexError, ValueError):
                    continue
        total = 0
        for pid in pids:
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            total += next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
        return total / 1024

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
