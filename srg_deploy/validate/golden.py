"""Golden references: the eager model's outputs on exactly recorded inputs, so a deployed model can be verified on
a machine without PyTorch (an edge device) by the same gates.

A golden file is a plain `.npz` (numpy arrays only, read with `allow_pickle=False`):
- `meta`: one JSON string — format, the reference's config and its fingerprint, mode, sgdet pair budget, the gates
  of every precision at recording time, what the reference was, when, and each case's label and latency;
- `case{k}/input/{name}` and `case{k}/output/{name}`: the preprocessed inputs and the reference outputs of case k.
"""

from __future__ import annotations

import datetime
import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from srg_deploy.atomic import write_bytes
from srg_deploy.config import SRGConfig
from srg_deploy.contract import config_fingerprint, input_specs, output_names
from srg_deploy.errors import SRGError
from srg_deploy.validate.cases import Case
from srg_deploy.validate.gates import GATES

GOLDEN_FORMAT = "srg-deploy-golden/1"


class Model(Protocol):
    """What a golden file reads of a backend (runtime.backend.Backend has it; validate does not import runtime)."""

    config: SRGConfig
    mode: str
    max_pairs: int | None

    def describe(self) -> str: ...


@dataclass
class Golden:
    meta: dict
    cases: list[Case]
    outputs: list[dict[str, np.ndarray]]

    @property
    def mode(self) -> str:
        return self.meta["mode"]

    @property
    def max_pairs(self) -> int | None:
        return self.meta.get("max_pairs")

    @property
    def latency_ms(self) -> list[float]:
        return list(self.meta.get("latency_ms") or [])

    def describe(self) -> str:
        return f"golden {self.meta['path']} ({self.meta['reference']}, recorded {self.meta['recorded_at']})"

    def check_fits(self, deployed: Model) -> None:
        """A golden file judges only the model it was recorded for: same config fingerprint, mode and pair budget."""
        mine = config_fingerprint(deployed.config.to_dict())
        if mine != self.meta["config_fingerprint"]:
            theirs = SRGConfig.from_dict(self.meta["config"]).to_dict()
            ours = deployed.config.to_dict()
            differ = [
                k
                for k in ("architecture", "preprocessing", "detector", "objects", "predicates")
                if ours[k] != theirs[k]
            ]
            raise SRGError(
                f"{self.meta['path']} was recorded for another model config (differs in {', '.join(differ)});"
                " record a golden file for this model with `verify --save-reference`"
            )
        if deployed.mode != self.mode:
            raise SRGError(f"{self.meta['path']} holds {self.mode}-mode cases but the model is a {deployed.mode} graph")
        if deployed.mode == "sgdet" and deployed.max_pairs != self.max_pairs:
            raise SRGError(
                f"{self.meta['path']} was recorded with an sgdet pair budget of {self.max_pairs} but the model keeps"
                f" {deployed.max_pairs}"
            )


def save_golden(
    path: Path,
    reference: Model,
    cases: list[Case],
    outputs: list[dict[str, np.ndarray]],
    latency_ms: list[float],
) -> None:
    """Write the golden file atomically."""
    meta = {
        "format": GOLDEN_FORMAT,
        "config": reference.config.to_dict(),
        "config_fingerprint": config_fingerprint(reference.config.to_dict()),
        "mode": reference.mode,
        "max_pairs": reference.max_pairs,
        "gates": {name: gates.to_dict() for name, gates in GATES.items()},
        "reference": reference.describe(),
        "recorded_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "labels": [c.label for c in cases],
        "latency_ms": [round(v, 3) for v in latency_ms],
    }
    arrays: dict[str, np.ndarray] = {"meta": np.array(json.dumps(meta))}
    for k, (case, out) in enumerate(zip(cases, outputs)):
        arrays.update({f"case{k}/input/{n}": np.asarray(v) for n, v in case.inputs.items()})
        arrays.update({f"case{k}/output/{n}": np.asarray(v) for n, v in out.items()})
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    write_bytes(Path(path), buffer.getvalue())


def load_golden(path: Path) -> Golden:
    """Read a golden file, or one line saying what is wrong with it."""
    path = Path(path)
    if not path.is_file():
        raise SRGError(f"golden file {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise SRGError(
            f"{path} is not a readable golden file (.npz): {str(e).splitlines()[0] or type(e).__name__}"
        ) from None
    try:
        meta = json.loads(str(arrays.pop("meta")))
    except (KeyError, json.JSONDecodeError):
        raise SRGError(f"{path} is not an srg-deploy golden file (no meta record)") from None
    if meta.get("format") != GOLDEN_FORMAT:
        raise SRGError(f"{path} has format {meta.get('format')!r}; expected {GOLDEN_FORMAT!r}")
    meta["path"] = str(path)
    mode = meta["mode"]
    cases, outputs = [], []
    for k, label in enumerate(meta["labels"]):
        inputs = {n: arrays.get(f"case{k}/input/{n}") for n in input_specs(mode)}
        out = {n: arrays.get(f"case{k}/output/{n}") for n in output_names(mode)}
        missing = [n for n, v in {**inputs, **out}.items() if v is None]
        if missing:
            raise SRGError(f"{path}: case {k} lacks {', '.join(missing)}; the file is incomplete")
        cases.append(Case(label, inputs))
        outputs.append(out)
    if not cases:
        raise SRGError(f"{path} holds no cases")
    return Golden(meta, cases, outputs)
