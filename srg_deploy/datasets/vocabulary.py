"""Does a model's vocabulary match a dataset's? One sentence naming the difference, for `train` and `eval` alike.

A classifier's class k means the k-th name of the list it was trained with, so two vocabularies match only when
they are the same names in the same order; anything else would score the model against the wrong labels.
"""

from __future__ import annotations

from collections.abc import Sequence

SHOWN = 4  # names quoted from each side


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
