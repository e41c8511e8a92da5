"""Printing the judge's verdict (runtime/judge.py): one checklist, the same for `export`, `build-engine --fp16`,
`verify` and the end of `infer --check-every`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.markup import escape

from srg_deploy.console import out as console

if TYPE_CHECKING:
    from srg_deploy.runtime.judge import Verdict

OK, FAIL = "[green][✓][/]", "[red]\\[x][/]"  # [x] escaped: Rich would read it as a style tag


def print_checklist(verdict: Verdict, title: str) -> None:
    """`[✓]/[x] title`, then one indented line per output, per-region cosine and agreement."""
    console.print(f"{OK if verdict else FAIL} {escape(title)}")
    console.print(f"    {escape(verdict.gates.describe())}; {len(verdict.frames)} frame(s)", highlight=False)
    for check in verdict.checklist():
        console.print(f"    {OK if check.passed else FAIL} {escape(check.text)}", highlight=False)
