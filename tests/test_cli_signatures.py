"""Every command's options, defaults and help stay what users know, whatever the CLI's code layout.

`tests/cli_snapshot.json` was recorded from the CLI before the command modules took over their own signatures. A
deliberate change to an option or its help: run `python tests/test_cli_signatures.py` to re-record, and say so in
docs/commands.md.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer.main

SNAPSHOT = Path(__file__).with_name("cli_snapshot.json")


def _param(param) -> dict:
    annotation = param.type_descriptor.annotation
    return {
        "kind": param.param_type_name,
        "name": param.name,
        "opts": list(param.opts),
        "secondary_opts": list(param.secondary_opts),
        "type": getattr(annotation, "__name__", str(annotation)),
        "default": None if param.default is None else str(param.default),
        "required": param.required,
        "nargs": param.nargs,
        "is_flag": getattr(param, "is_flag", False),
        "range": [param.min, param.max],
        "help": getattr(param, "help", None),
    }


def _command(command, path: str) -> dict:
    commands = {path: {"help": command.help, "epilog": command.epilog, "params": [_param(p) for p in command.params]}}
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        commands.update(_command(sub, f"{path} {name}"))
    return commands


def snapshot() -> dict:
    from srg_deploy.cli import app

    return _command(typer.main.get_command(app), "srg-deploy")


def test_every_command_keeps_its_options_defaults_and_help():
    recorded, current = json.loads(SNAPSHOT.read_text()), snapshot()
    assert sorted(current) == sorted(recorded), "commands added or removed"
    for name, command in recorded.items():
        assert current[name]["help"] == command["help"], name
        assert current[name]["epilog"] == command["epilog"], name
        now = {p["name"]: p for p in current[name]["params"]}
        assert sorted(now) == sorted(p["name"] for p in command["params"]), name
        for param in command["params"]:
            assert now[param["name"]] == param, f"{name} {param['name']}"
        assert [p["name"] for p in current[name]["params"]] == [p["name"] for p in command["params"]], (
            f"{name}: option order (as --help lists them)"
        )


if __name__ == "__main__":
    SNAPSHOT.write_text(json.dumps(snapshot(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {SNAPSHOT}", file=sys.stderr)
