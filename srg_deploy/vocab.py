"""Vocabularies shipped with the package: VG150 objects and VG50 predicates (IMP split of Xu et al. 2017).

The lists are in the order of `idx_to_label` / `idx_to_predicate` in VG-SGG-dicts.json (1-based there); index 0 of
every classifier is background / no relation, so a list of K names goes with a K + 1-way classifier. A checkpoint
carries its own lists in its config; these are only the defaults `init` writes.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from pathlib import Path

from srg_deploy.errors import SRGError

BACKGROUND = "__background__"
NO_RELATION = "__no_relation__"


@cache
def _vg150() -> dict:
    return json.loads(resources.files("srg_deploy.data").joinpath("vg150.json").read_text())


def vg150_objects() -> list[str]:
    """The 150 VG150 object classes, without background."""
    return list(_vg150()["objects"])


def vg50_predicates() -> list[str]:
    """The 50 VG50 predicates, without "no relation"."""
    return list(_vg150()["predicates"])


def read_vocab_file(path: Path) -> list[str]:
    """One name per line (blank lines ignored); a detectron2/bottom-up-attention `objects_vocab.txt` works as is.

    Lines like `man,men` keep the first name, as bottom-up-attention's own demo does.
    """
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as e:
        raise SRGError(f"cannot read vocabulary file {path}: {e.strerror}") from None
    names = [line.split(",")[0].strip() for line in lines if line.strip()]
    if not names:
        raise SRGError(f"vocabulary file {path} is empty; expected one class name per line")
    return names
