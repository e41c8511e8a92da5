"""A pickle reader that admits numpy arrays, plain containers and scalars, and refuses everything else.

detectron2 distributes weights as pickles; a pickle can name any callable (`os.system`, `eval`...) to be called
while loading. `find_class` is where every such name is resolved, so refusing there means nothing outside the
allow-list is ever imported, let alone called.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

from srg_deploy.errors import SRGError

# (module, name) pairs that numpy arrays, dtypes and scalars need, plus OrderedDict. numpy 2 renamed numpy.core
# to numpy._core; pickles from either era name one of them.
_ALLOWED = {
    (module, name)
    for module in ("numpy.core.multiarray", "numpy._core.multiarray")
    for name in ("_reconstruct", "scalar")
} | {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("collections", "OrderedDict"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("builtins", "complex"),
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"it asks to load {module}.{name}, which is not a numpy array or plain data")
        return super().find_class(module, name)

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("it uses persistent references, which plain weight files never need")


def load(path: Path) -> Any:
    """Unpickle `path` (Python 2 pickles too, as detectron2 reads them: latin1) without running any code."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise SRGError(f"{path} does not exist") from None
    try:
        return _RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()
    except pickle.UnpicklingError as e:
        raise SRGError(f"refused to load {path}: {e}") from None
    except (EOFError, ValueError, TypeError, IndexError, KeyError, AttributeError, ImportError) as e:
        raise SRGError(f"{path} is not a readable pickle ({type(e).__name__}: {e})") from None
