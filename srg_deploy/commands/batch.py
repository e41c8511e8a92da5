"""`srg-deploy batch`: an archive of images and videos through the model on Ray Data, resumable, into JSONL shards.

Order of work: Ray present? -> inputs listed and boxes checked -> output folder opened (lock, settings, leftovers of
a killed run removed) -> what is not done yet planned into units -> Ray runs them and the driver commits each
unit's shard as its last chunk arrives -> failures file and summary. The return value is the exit code.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from srg_deploy.commands.options import Backend, CacheDir, Device, MaxPairs, ModelPath, Precision, TopK
from srg_deploy.console import err as console
from srg_deploy.defaults import TOP_K
from srg_deploy.errors import SRGError

if TYPE_CHECKING:
    from srg_deploy.inputs import BoxesFile
    from srg_deploy.runtime.batch_inputs import Input
    from srg_deploy.runtime.batch_ray import Workers
    from srg_deploy.runtime.batch_store import BatchStore, ShardWriter
    from srg_deploy.runtime.batch_units import Unit, WorkerOptions

EXIT_OK, EXIT_FAILURES = 0, 3  # 3: every input is done, but some failed (listed in failures.jsonl)

EPILOG = (
    "Examples:\n\n  srg-deploy batch model.onnx --source images/ --boxes boxes.json --output out/ --workers 2\n\n"
    "  srg-deploy batch sgdet.onnx --source 'archive/*/*.jpg' --output out/ --workers 8 --batch-size 64\n\n"
    "  srg-deploy batch model.engine --source videos.txt --output out/ --address 10.0.0.1:6379 --workers 4"
    " --gpus-per-worker 1\n\n"
    "Re-running the same command resumes: inputs already in a committed shard are skipped, an interrupted unit is "
    "redone, no record is written twice. Exit codes: 0 every input is done; 1 an error; 3 every input is done but "
    "some failed (OUT/failures.jsonl); 130 interrupted (committed shards stay)."
)


def batch(
    model: ModelPath,
    source: Annotated[
        str,
        typer.Option(help="Directory of images and videos, glob, list file (.txt, one path per line), image or video."),
    ],
    output: Annotated[
        Path, typer.Option(help="Output folder: records/ (JSONL shards), manifests/, failures.jsonl, batch.json.")
    ],
    boxes: Annotated[
        Optional[Path],
        typer.Option(help="boxes.json: a list of \\[x1,y1,x2,y2] for every frame, or {file name: list}."),
    ] = None,
    workers: Annotated[int, typer.Option(min=1, help="Ray actors, each holding one loaded model.")] = 1,
    address: Annotated[
        Optional[str],
        typer.Option(help="Join this Ray cluster (host:port from `ray start --head`, or auto); default: local Ray."),
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per unit of work (= per shard).")] = 32,
    cpus_per_worker: Annotated[
        Optional[float],
        typer.Option(min=0.1, help="CPUs each worker reserves and uses (default: local cores / workers; cluster: 1)."),
    ] = None,
    gpus_per_worker: Annotated[float, typer.Option(min=0, help="GPUs each worker reserves (e.g. 1, or 0.5).")] = 0.0,
    max_pairs: MaxPairs = None,
    top_k: TopK = TOP_K,
    retry_failed: Annotated[
        bool, typer.Option("--retry-failed", help="Process inputs that failed in earlier runs again.")
    ] = False,
    backend: Backend = None,
    precision: Precision = None,
    device: Device = None,
    cache_dir: CacheDir = None,
) -> None:
    """Scene graphs for an archive of images and videos on Ray Data: resumable JSONL shards, same records as infer."""
    code = run_batch(
        model,
        source=source,
        output=output,
        boxes=boxes,
        workers=workers,
        address=address,
        batch_size=batch_size,
        cpus_per_worker=cpus_per_worker,
        gpus_per_worker=gpus_per_worker,
        max_pairs=max_pairs,
        top_k=top_k,
        retry_failed=retry_failed,
        runtime=Runtime(backend, precision, device, str(cache_dir.absolute()) if cache_dir else None),
    )
    if code:
        raise typer.Exit(code)


@dataclass
class RunCounts:
    inputs: int = 0
    records: int = 0
    failures: int = 0
    units: int = 0


@dataclass(frozen=True)
class Runtime:
    """The backend each worker opens the model with, and OpenVINO's precision, device and cache (None: defaults)."""

    backend: str | None = None
    precision: str | None = None
    device: str | None = None
    cache_dir: str | None = None

    def settings(self) -> dict[str, str]:
        """What the records depend on, for batch.json (only what was asked for, so older folders still resume)."""
        return {k: v for k, v in (("backend", self.backend), ("precision", self.precision)) if v is not None}


@dataclass(frozen=True)
class Job:
    """One invocation's choices, checked."""

    model: Path
    source: str
    boxes: BoxesFile | None
    address: str | None
    pool: Workers
    batch_size: int
    max_pairs: int | None
    top_k: int
    retry_failed: bool
    runtime: Runtime = Runtime()

    def worker_options(self) -> WorkerOptions:
        from srg_deploy.runtime.batch_units import WorkerOptions

        threads = max(1, int(self.pool.cpus))  # ONNX Runtime's threads = the CPUs Ray reserved for the worker
        return WorkerOptions(
            str(self.model.absolute()),
            self.boxes,
            self.max_pairs,
            self.top_k,
            threads,
            *dataclasses.astuple(self.runtime),
        )


def run_batch(
    model: Path,
    *,
    source: str,
    output: Path,
    boxes: Path | None,
    workers: int,
    address: str | None,
    batch_size: int,
    cpus_per_worker: float | None,
    gpus_per_worker: float,
    max_pairs: int | None,
    top_k: int,
    retry_failed: bool,
    runtime: Runtime | None = None,
) -> int:
    """Run (or resume) the job; returns the exit code. `cpus_per_worker=None`: locally, this machine's cores shared
    out between the workers; on a cluster, 1."""
    from srg_deploy.inputs import BoxesFile
    from srg_deploy.runtime.batch_inputs import list_inputs
    from srg_deploy.runtime.batch_ray import Workers, default_cpus, import_ray
    from srg_deploy.runtime.batch_store import BatchStore, file_sha256
    from srg_deploy.runtime.loader import backend_for, existing_model

    import_ray(local=address is None)  # first: without Ray nothing below can finish, so say so before any work
    model = existing_model(model)
    runtime = runtime or Runtime()
    backend_for(model)  # a path we cannot run is refused before Ray starts
    if workers < 1 or batch_size < 1:
        raise SRGError("--workers and --batch-size must be at least 1")
    boxes_file = BoxesFile(boxes) if boxes else None
    inputs = list_inputs(source)
    if boxes_file:
        for item in inputs:
            boxes_file.for_source(item.name)  # fail before any work if an input would have no boxes
    cpus = cpus_per_worker or (1.0 if address else float(default_cpus(workers)))
    job = Job(model, source, boxes_file, address, Workers(workers, cpus, gpus_per_worker), batch_size, max_pairs,
              top_k, retry_failed, runtime)  # fmt: skip
    settings = {
        "model": str(model.absolute()),
        "model_sha256": file_sha256(model),
        "boxes_sha256": file_sha256(Path(boxes)) if boxes else None,
        "top_k": top_k,
        "max_pairs": max_pairs,
        **runtime.settings(),
    }
    store = BatchStore(output, settings)
    try:
        return _run(store, inputs, job)
    finally:
        store.close()


def _run(store: BatchStore, inputs: list[Input], job: Job) -> int:
    from srg_deploy.runtime.batch_ray import connect
    from srg_deploy.runtime.batch_units import plan_units

    if store.cleaned:
        console.print(f"removed {store.cleaned} leftovers of an interrupted run (they are done again)", markup=False)
    done = store.done.succeeded() if job.retry_failed else set(store.done.inputs)
    todo = [i for i in inputs if i.key not in done]
    videos = sum(i.kind == "video" for i in inputs)
    console.print(
        f"inputs: {len(inputs)} ({len(inputs) - videos} images, {videos} videos) from {job.source}; "
        f"{len(inputs) - len(todo)} done before this run, {len(todo)} to do",
        markup=False,
    )
    counts = RunCounts()
    elapsed = 0.0
    if todo:
        units = plan_units(todo, job.batch_size, taken=set(store.done.units))
        pool = job.pool
        with connect(job.address, pool) as session:
            console.print(
                f"{session.where}: {session.cpus:g} CPU, {session.gpus:g} GPU (ready in {session.started_s:.1f} s); "
                f"{pool.count} worker{'s' if pool.count != 1 else ''} x {pool.cpus:g} CPU"
                + (f" + {pool.gpus:g} GPU" if pool.gpus else "")
                + f"; {len(units)} units of up to {job.batch_size} images or one video",
                markup=False,
            )
            t0 = time.perf_counter()
            _write_units(store, units, job.worker_options(), pool, counts)
            elapsed = time.perf_counter() - t0
    failures_path = store.write_failures()
    _summary(store, counts, elapsed, failures_path)
    return EXIT_FAILURES if store.done.failed else EXIT_OK


def _write_units(
    store: BatchStore, units: list[Unit], options: WorkerOptions, pool: Workers, counts: RunCounts
) -> None:
    """Receive chunks, append them to their unit's temporary shard, commit a unit when its last chunk arrives.

    A chunk numbered 0 for a unit already under way means Ray ran the unit again (its first worker died): that
    unit's shard starts over. Shards still open when anything goes wrong (Ctrl-C included) are discarded."""
    from srg_deploy.runtime.batch_ray import run_units

    inputs = {u.id: [i.key for i in u.inputs] for u in units}
    open_shards: dict[str, ShardWriter] = {}
    try:
        for chunk in run_units(units, options, pool):
            if chunk.error:
                raise SRGError(f"a worker ({chunk.worker}) cannot run the model: {chunk.error}")
            if chunk.unit in store.done.units:
                continue  # already committed (a duplicate delivery): committing twice would double its records
            writer = open_shards.get(chunk.unit)
            if writer is None:
                writer = open_shards[chunk.unit] = store.open_shard(chunk.unit)
            if chunk.seq == 0 and writer.next_seq:
                writer.restart()
            if chunk.seq != writer.next_seq:
                raise RuntimeError(f"{chunk.unit}: chunk {chunk.seq} arrived, {writer.next_seq} was expected")
            writer.write(chunk.lines)
            writer.next_seq += 1
            if chunk.last:
                writer.commit(inputs[chunk.unit], chunk.failures, chunk.worker, chunk.drop)
                del open_shards[chunk.unit]
                counts.units += 1
                counts.inputs += len(inputs[chunk.unit])
                counts.records += store.done.units[chunk.unit]["records"]
                counts.failures += len(chunk.failures)
    finally:
        for writer in open_shards.values():
            writer.discard()


def _summary(store: BatchStore, counts: RunCounts, elapsed: float, failures_path: Path) -> None:
    if counts.units:
        console.print(
            f"this run: {counts.inputs} inputs -> {counts.records} records, {counts.failures} failed, in "
            f"{counts.units} shards, {elapsed:.1f} s: {counts.records / max(elapsed, 1e-9):.2f} records/s, "
            f"{counts.inputs / max(elapsed, 1e-9):.2f} inputs/s",
            markup=False,
        )
    else:
        console.print("this run: nothing to do, every input is done", markup=False)
    failed = len(store.done.failed)
    console.print(
        f"wrote {store.records_dir}/ ({len(store.done.units)} shards, {store.done.records} records in all) and "
        f"{failures_path} ({failed} failed input{'s' if failed != 1 else ''})",
        markup=False,
    )
    if failed:
        first = store.done.failed[min(store.done.failed)]
        console.print(f"first failure: {first['input']}: {first['error']}", markup=False)
