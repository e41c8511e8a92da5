"""Vocabularies shipped with the package: VG150 objects and VG50 predicates (IMP split of Xu et al. 2017).

The lists are in the order of `idx_to_label` / `idx_to_predicate` in VG-SGG-dicts.json (1-based there); index 0 of
every classifier is background / no relation, so a list of K names goes with a K + 1-way classifier. A checkpoint
carries its own lists in its config; these are only the defaults `init` writes. Two vocabularies match only when
they are the same names in the same order (`vocabulary_difference`, for `train` and `eval` alike): a classifier's
class k means the k-th name of the list it was trained with.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cache
from importlib import resources
from pathlib import Path

from srg_deploy.errors import SRGError

SHOWN = 4  # names quoted from each side when two vocabularies differ


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


def vocabulary_difference(
    model_objects: Sequence[str],
    model_predicates: Sequence[str],
    data_objects: Sequence[str],
    data_predicates: Sequence[str],
) -> str | None:
    """None when objects and predicates match exactly, else e.g. "objects: the model has 150 (airplane, animal,
    arm, bag, ...), the dataset 3 (square, circle, triangle)"; both lists are named when both differ."""
    problems = [
        _difference(what, tuple(mine), tuple(theirs))
        for what, mine, theirs in (
            ("objects", model_objects, data_objects),
            ("predicates", model_predicates, data_predicates),
        )
    ]
    found = [p for p in problems if p]
    return "; ".join(found) if found else None


def _difference(what: str, mine: tuple[str, ...], theirs: tuple[str, ...]) -> str | None:
    if mine == theirs:
        return None
    if sorted(mine) == sorted(theirs):
        k = next(i for i, (a, b) in enumerate(zip(mine, theirs)) if a != b)
        return (
            f"{what}: the same {len(mine)} names in another order (class {k + 1} is {mine[k]!r} in the model, "
            f"{theirs[k]!r} in the dataset)"
        )
    return f"{what}: the model has {len(mine)} ({_names(mine)}), the dataset {len(theirs)} ({_names(theirs)})"


def _names(names: tuple[str, ...]) -> str:
    return ", ".join(names[:SHOWN]) + (", ..." if len(names) > SHOWN else "")
