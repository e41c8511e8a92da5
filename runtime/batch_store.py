"""The output folder of `srg-deploy batch`: what is done, what failed, and commits that survive a kill at any moment.

    OUT/batch.json              the settings the records were made with (model hash, boxes hash, top-k, pairs)
    OUT/records/part-<id>.jsonl one shard per unit: exactly the lines `infer --json` writes for its inputs
    OUT/manifests/part-<id>.json the unit's commit: its inputs, record count and failures
    OUT/failures.jsonl          every failed input with its error, rewritten at the end of each run

Commit protocol (one writer, the driver; every file written to a temporary name and renamed): the shard is renamed
into place first, then its manifest. The manifest is the commit point, so an input is done exactly when a manifest
names it. A kill leaves at most temporary files and a shard without a manifest; `open` removes both, and those
inputs are done again under the same unit id, so no record is ever written twice and none is lost.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from srg_deploy.atomic import temp_beside, write_text
from srg_deploy.errors import SRGError

FORMAT = "srg-deploy-batch/1"
SETTINGS, LOCK, FAILURES = "batch.json", ".lock", "failures.jsonl"
RECORDS, MANIFESTS = "records", "manifests"
OURS = {SETTINGS, LOCK, FAILURES, RECORDS, MANIFESTS}
INFORMATIONAL = {"model"}  # where the model was; its SHA-256 is what must not change


@dataclass
class Done:
    """What the manifests say: input key -> unit id, and the failed inputs' errors."""

    units: dict[str, dict] = field(default_factory=dict)  # unit id -> manifest
    inputs: dict[str, str] = field(default_factory=dict)  # input key -> unit id
    failed: dict[str, dict] = field(default_factory=dict)  # input key -> {"input", "error", "shard"}
    records: int = 0

    def add(self, unit: str, manifest: dict) -> None:
        """Take one manifest in; an input that succeeded anywhere counts as succeeded (`--retry-failed` can redo a
        failed input in a new unit while the old manifest still names the failure)."""
        self.units[unit] = manifest
        self.records += int(manifest["records"])
        errors = {f["input"]: f["error"] for f in manifest["failures"]}
        for key in manifest["inputs"]:
            if key not in errors:
                self.inputs[key] = unit
                self.failed.pop(key, None)
            elif key not in self.inputs or key in self.failed:
                self.inputs[key] = unit
                self.failed[key] = {"input": key, "error": errors[key], "shard": unit}

    def succeeded(self) -> set[str]:
        return {key for key in self.inputs if key not in self.failed}


class BatchStore:
    """Opened once per run by the driver: locks the folder, checks the settings, clears what a kill left behind."""

    def __init__(self, root: Path, settings: dict) -> None:
        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise SRGError(f"--output {root} is a file; expected a folder for the batch's shards")
        foreign = sorted(p.name for p in self.root.iterdir() if p.name not in OURS) if self.root.is_dir() else []
        if foreign and not (self.root / SETTINGS).is_file():
            raise SRGError(
                f"--output {root} already holds files ({', '.join(foreign[:3])}) and is not a batch output (no "
                f"{SETTINGS}); use a new or empty folder"
            )
        self.root.mkdir(parents=True, exist_ok=True)
        self.records_dir, self.manifests_dir = self.root / RECORDS, self.root / MANIFESTS
        self._lock = _lock(self.root / LOCK)
        try:
            self.records_dir.mkdir(exist_ok=True)
            self.manifests_dir.mkdir(exist_ok=True)
            self._check_settings(settings)
            self.cleaned = self._clean()
            self.done = self._read_manifests()
        except BaseException:
            self.close()
            raise

    def _check_settings(self, settings: dict) -> None:
        """Records of one folder must come from one model and one set of options, or resuming would mix them."""
        path = self.root / SETTINGS
        settings = {"format": FORMAT, **settings}
        if not path.is_file():
            write_text(path, json.dumps(settings, indent=2) + "\n")
            return
        try:
            before = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise SRGError(f"{path} is not valid JSON ({e}); it records this folder's settings") from None
        keys = sorted((set(before) | set(settings)) - INFORMATIONAL)
        changed = [k for k in keys if before.get(k) != settings.get(k)]
        if changed:
            diff = "; ".join(f"{k}: {before.get(k)!r} then, {settings.get(k)!r} now" for k in changed)
            raise SRGError(
                f"--output {self.root} holds records made with other settings ({diff}); resuming would mix them: "
                "use another --output, or the same settings"
            )

    def _clean(self) -> int:
        """Remove temporary files, shards without a manifest and manifests without a shard; returns how many."""
        removed = 0
        for folder in (self.records_dir, self.manifests_dir):
            for path in folder.iterdir():
                if path.name.startswith(".") and path.name.endswith(".part"):
                    path.unlink()
                    removed += 1
        for shard in self.records_dir.glob("part-*.jsonl"):
            if not self._manifest_path(shard.stem).is_file():
                shard.unlink()
                removed += 1
        for manifest in self.manifests_dir.glob("part-*.json"):
            if not self.shard_path(manifest.stem).is_file():
                manifest.unlink()
                removed += 1
        return removed

    def _read_manifests(self) -> Done:
        done = Done()
        for path in sorted(self.manifests_dir.glob("part-*.json")):
            try:
                manifest = json.loads(path.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise SRGError(f"{path} is not valid JSON: remove it and its shard to redo that unit") from None
            done.add(path.stem, manifest)
        return done

    def shard_path(self, unit: str) -> Path:
        return self.records_dir / f"{unit}.jsonl"

    def _manifest_path(self, unit: str) -> Path:
        return self.manifests_dir / f"{unit}.json"

    def open_shard(self, unit: str) -> ShardWriter:
        """A shard being written: nothing is visible until its `commit`; `discard` removes every trace."""
        return ShardWriter(self, unit)

    def commit(self, unit: str, tmp: Path, inputs: list[str], records: int, failures: list[dict], worker: str) -> None:
        """Shard into place, then its manifest: the manifest is the commit point (see the module docstring)."""
        os.replace(tmp, self.shard_path(unit))
        manifest = {"inputs": inputs, "records": records, "failures": failures, "worker": worker}
        write_text(self._manifest_path(unit), json.dumps(manifest) + "\n")
        self.done.add(unit, manifest)

    def write_failures(self) -> Path:
        """`failures.jsonl`: one line per input that failed and has not succeeded since, sorted by input."""
        path = self.root / FAILURES
        lines = [json.dumps(self.done.failed[key]) + "\n" for key in sorted(self.done.failed)]
        write_text(path, "".join(lines))
        return path

    def close(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None


class ShardWriter:
    """Appends a unit's chunks to a temporary file beside its shard."""

    def __init__(self, store: BatchStore, unit: str) -> None:
        self.store, self.unit = store, unit
        fd, self.tmp = temp_beside(store.shard_path(unit))
        self.file: IO[str] | None = os.fdopen(fd, "w")
        self.records = 0
        self.next_seq = 0  # the chunk expected next

    def write(self, lines: list[str]) -> None:
        assert self.file is not None
        self.file.writelines(lines)
        self.records += len(lines)

    def restart(self) -> None:
        """The worker started the unit over (Ray retried it on another worker): forget what came before."""
        assert self.file is not None
        self.file.seek(0)
        self.file.truncate()
        self.records = self.next_seq = 0

    def commit(self, inputs: list[str], failures: list[dict], worker: str, drop: bool) -> None:
        assert self.file is not None
        if drop:
            self.restart()
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        self.file = None
        self.store.commit(self.unit, self.tmp, inputs, self.records, failures, worker)

    def discard(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
        self.tmp.unlink(missing_ok=True)


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, or of a checkpoint folder's files (names and contents, sorted)."""
    path = Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode() + b"\0")
        with file.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _lock(path: Path) -> IO[str]:
    """An exclusive lock on the folder for this run: two drivers writing one folder would each redo the other's
    missing units."""
    handle = path.open("a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise SRGError(
            f"another `srg-deploy batch` is writing to {path.parent}; wait for it or use another --output"
        ) from None
    return handle
