"""Printing a verdict (srg_deploy.validate): one checklist, the same for `export`, `build-engine --fp16`,
`verify` and the end of `infer --check-every`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.markup import escape

from srg_deploy.console import out as console

if TYPE_CHECKING:
    from srg_deploy.validate.verdict import Verdict

OK, FAIL = "[green][✓][/]", "[red]\\[x][/]"  # [x] escaped: Rich would read it as a style tag


def print_checklist(verdict: Verdict, title: str) -> None:
    """`[✓]/[x] title`, then one indented line per output, per-region cosine and agreement."""
    from srg_deploy.validate.render import checklist, describe_gates

    console.print(f"{OK if verdict else FAIL} {escape(title)}")
    console.print(f"    {escape(describe_gates(verdict.gates))}; {len(verdict.frames)} frame(s)", highlight=False)
    for check in checklist(verdict):
        console.print(f"    {OK if check.passed else FAIL} {escape(check.text)}", highlight=False)
