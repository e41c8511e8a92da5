"""Where records go. Every file sink writes beside its target and renames on success, so a failed run leaves no
half-written output; an interrupted run (Ctrl-C, SIGTERM) still finalises what it completed."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import IO


class JsonlSink:
    """One JSON object per line, flushed per line, renamed into place by `close(ok=True)`."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".part", dir=self.path.parent)
        self.tmp = Path(tmp)
        self.file: IO[str] | None = os.fdopen(fd, "w")
        self.lines = 0

    def write(self, record: dict) -> None:
        assert self.file is not None
        self.file.write(json.dumps(record, separators=(",", ":")) + "\n")
        self.file.flush()
        self.lines += 1

    def close(self, ok: bool = True) -> None:
        """Keep the file (ok) or remove every trace of it."""
        if self.file is None:
            return
        self.file.close()
        self.file = None
        if ok:
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)
