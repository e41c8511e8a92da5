"""Outputs appear whole or not at all: write beside the target, then rename over it."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path


def temp_beside(target: Path, suffix: str = ".part") -> tuple[int, Path]:
    """A new file next to `target` (same file system, so the final rename is atomic), opened for writing.

    Unlike `tempfile.mkstemp` (always mode 0600) it gets the mode any new file gets (0666 minus the umask), so
    the output is readable by whoever could read a file written directly."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(100):
        path = target.parent / f".{target.name}.{secrets.token_hex(6)}{suffix}"
        try:
            return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), path
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name next to {target}")


@contextlib.contextmanager
def atomic_path(target: Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to `target`; rename it onto `target` only if the block finishes.

    `suffix` keeps tools that sniff extensions happy (OpenCV picks the container from it)."""
    target = Path(target)
    fd, tmp_path = temp_beside(target, suffix or ".part")
    os.close(fd)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_bytes(target: Path, data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def write_text(target: Path, text: str) -> None:
    write_bytes(target, text.encode())
