"""The two Rich consoles every command prints through: reports to stdout, progress and errors to stderr.

`soft_wrap` keeps long lines whole when output goes to a file or a CI log (Rich would wrap at 80 columns)."""

from __future__ import annotations

from rich.console import Console

out = Console(soft_wrap=True, highlight=False)
err = Console(stderr=True, soft_wrap=True, highlight=False)
