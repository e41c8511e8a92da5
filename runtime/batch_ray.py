"""Ray Data under `srg-deploy batch`: units become a dataset, a pool of actors (one backend each) turns them into
chunks of records, and the driver receives the chunks as they are produced.

Ray is an optional dependency (`[ray]` extra) and is imported only here, only when `batch` runs. Everything Ray
does not need to know (inputs, units, predictor, shards) lives in `batch_inputs`, `batch_units`, `batch_store`.

Why these Ray choices:
- `map_batches` with a callable class on an `ActorPoolStrategy(size=N)`: the class's constructor loads the model
  once per actor and every unit on that actor reuses it. (`concurrency=N` says the same thing; Ray 2.51 deprecated it
  in favour of `compute=`, which Ray has accepted since 2.x, so this spelling works on every version we allow.)
- one unit in flight per actor, every actor started before the first unit (see ACTOR_START_TIMEOUT_S).
- `batch_size=1` unit per call: a unit already is a batch of images or one video, and the model takes one frame
  per call, so Ray-side batching would only delay results.
- the callable is a generator: a video streams back in chunks of `CHUNK_RECORDS` records, so a long video never sits
  in a worker's memory or the object store as one object.
- the driver writes every shard: workers need to read the inputs and the model, but not to write anywhere.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from srg_deploy.errors import SRGError, first_line
from srg_deploy.runtime.batch_units import Chunk, Unit, UnitProcessor, WorkerOptions

RAY_EXTRA = 'pip install "srg-deploy[ray]"'
# A local instance holds file paths and JSON text in its object store, never frames: a small store is plenty
# (larger objects spill to disk), and Ray's default, 30% of RAM, would reserve shared memory the job never uses.
LOCAL_OBJECT_STORE_BYTES = 200 * 2**20
MAX_BLOCKS = 4096  # one block per unit up to this many, so idle actors can always take the next unit
# Every worker is started (model loaded) before the first unit is handed out, one unit at a time per worker: units
# last seconds to hours, so a unit queued behind a busy worker while another sits idle would cost more than the
# start-up wait. A pool the cluster cannot start within this time is an error, not a hang.
ACTOR_START_TIMEOUT_S = 600
LOOPBACK_ONLY_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # "0": node address 127.0.0.1 (see import_ray)


def import_ray(local: bool = False):
    """Ray and Ray Data, or one line naming the extra to install.

    `local`: the job runs on a Ray instance of its own on this machine, so every Ray process should listen on the
    loopback address only. Ray binds to the machine's network address unless this variable (read when Ray is
    imported; the single-machine mode Ray uses on macOS and Windows) says otherwise; a value the user set wins."""
    if local:
        os.environ.setdefault(LOOPBACK_ONLY_ENV, "0")
    try:
        import ray
        import ray.data
    except ImportError:
        raise SRGError(f"`srg-deploy batch` runs on Ray Data, which is not installed: {RAY_EXTRA}") from None
    return ray


@dataclass(frozen=True)
class Workers:
    """The actor pool: how many, and what each one reserves."""

    count: int
    cpus: float
    gpus: float = 0.0


@dataclass
class RaySession:
    """What `connect` reports: where the job runs and what the cluster offers."""

    where: str
    cpus: float
    gpus: float
    started_s: float


@contextlib.contextmanager
def connect(address: str | None, workers: Workers) -> Iterator[RaySession]:
    """Join the cluster at `address`, or start a local Ray sized for `workers`; shut down (or leave) at the end.

    `address="local"` is passed explicitly without `--address` so a RAY_ADDRESS variable in the environment cannot
    silently send the job elsewhere."""
    ray = import_ray()
    t0 = time.perf_counter()
    try:
        if address:
            ray.init(address=address)
        else:
            ray.init(
                address="local",
                num_cpus=max(1, math.ceil(workers.count * workers.cpus)),
                include_dashboard=False,
                object_store_memory=LOCAL_OBJECT_STORE_BYTES,
            )
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        raise SRGError(f"cannot start or join {where}: {first_line(e)}") from None
    try:
        resources = ray.cluster_resources()
        session = RaySession(
            where=f"Ray cluster at {address}" if address else "local Ray",
            cpus=float(resources.get("CPU", 0)),
            gpus=float(resources.get("GPU", 0)),
            started_s=time.perf_counter() - t0,
        )
        _check_fits(ray, session, workers)
        yield session
    finally:
        ray.shutdown()


def _check_fits(ray, session: RaySession, workers: Workers) -> None:
    """A worker no node can host would wait forever: say so instead."""
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    if not any(n.get("CPU", 0) >= workers.cpus and n.get("GPU", 0) >= workers.gpus for n in nodes):
        biggest = max(nodes, key=lambda n: (n.get("GPU", 0), n.get("CPU", 0)), default={})
        raise SRGError(
            f"each worker asks for {workers.cpus:g} CPU and {workers.gpus:g} GPU, but no node of {session.where} has "
            f"that much (the largest has {biggest.get('CPU', 0):g} CPU, {biggest.get('GPU', 0):g} GPU); "
            "lower --cpus-per-worker / --gpus-per-worker"
        )


class RayWorker:
    """The callable class Ray Data instantiates once per actor: one backend, then one unit per call."""

    def __init__(self, options: WorkerOptions) -> None:
        self.processor = UnitProcessor(options)

    def __call__(self, batch: dict[str, np.ndarray]) -> Iterator[dict[str, list]]:
        for unit_id, inputs in zip(batch["unit"], batch["inputs"]):
            for chunk in self.processor.process(Unit.from_row({"unit": unit_id, "inputs": inputs})):
                yield {key: [value] for key, value in chunk.to_row().items()}


def run_units(units: list[Unit], options: WorkerOptions, workers: Workers) -> Iterator[Chunk]:
    """Chunks of every unit, as they come back (units interleave; a unit's own chunks arrive in order)."""
    ray = import_ray()
    context = ray.data.DataContext.get_current()
    if hasattr(context, "wait_for_min_actors_s"):  # Ray >= 2.3x: start every worker before the first unit
        context.wait_for_min_actors_s = ACTOR_START_TIMEOUT_S
    dataset = ray.data.from_items([u.to_row() for u in units], **_blocks(ray, min(len(units), MAX_BLOCKS)))
    resources = {"num_cpus": workers.cpus} | ({"num_gpus": workers.gpus} if workers.gpus else {})
    dataset = dataset.map_batches(
        RayWorker,
        fn_constructor_kwargs={"options": options},
        batch_size=1,
        compute=ray.data.ActorPoolStrategy(size=workers.count, max_tasks_in_flight_per_actor=1),
        **resources,
    )
    try:
        for row in dataset.iter_rows():
            yield Chunk.from_row(row)
    except ray.exceptions.GetTimeoutError:
        raise SRGError(
            f"the {workers.count} workers did not all start within {ACTOR_START_TIMEOUT_S} s: the cluster lacks the "
            "CPUs/GPUs they ask for (see --workers, --cpus-per-worker, --gpus-per-worker)"
        ) from None


def _blocks(ray, count: int) -> dict[str, int]:
    """`from_items`'s block count: `override_num_blocks` since Ray 2.20-ish, `parallelism` before (our floor is 2.9)."""
    if "override_num_blocks" in inspect.signature(ray.data.from_items).parameters:
        return {"override_num_blocks": count}
    return {"parallelism": count}


def default_cpus(workers: int) -> int:
    """This machine's cores shared out between the workers (at least one each)."""
    return max(1, (os.cpu_count() or 1) // workers)
