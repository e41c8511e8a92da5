"""The `srg-deploy` app: the commands registered, `--debug`, and errors turned into one line.

Each command's options, help and examples live in its own module, srg_deploy/commands/<name>.py, which imports only
typer and light modules at the top (torch, onnxruntime, tensorrt are imported when the command runs), so
`srg-deploy --help` is instant and works on any machine.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.markup import escape

from srg_deploy.commands import (
    batch,
    bench,
    build_engine,
    dataset,
    demo,
    export,
    export_triton,
    infer,
    init,
    quantize,
    train,
    verify,
)
from srg_deploy.commands import eval as eval_
from srg_deploy.console import err as console
from srg_deploy.errors import SRGError

app = typer.Typer(
    name="srg-deploy",
    help="Deploy GCN-LSTM's semantic relationship graph model: PyTorch -> ONNX -> TensorRT, checked against eager.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    add_completion=False,
)
_state = {"debug": False}


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks instead of one-line errors.")] = False,
) -> None:
    _state["debug"] = debug


# A command whose optional dependency is missing names the extra that brings it (the base install is the runtime).
EXTRAS = {
    "torch": "export",
    "torchvision": "export",
    "safetensors": "export",
    "matplotlib": "export",
    "triton": "export",
    "onnx": "build",
    "onnxconverter_common": "build",
    "onnxruntime": "cpu",
    "ray": "ray",
    "tensorrt": "trt",
    "cuda": "trt",
}


def missing_extra(error: ModuleNotFoundError) -> str | None:
    """The one-line message for an optional dependency that is not installed, or None for any other import error."""
    package = (error.name or "").split(".")[0]
    extra = EXTRAS.get(package)
    if extra is None:
        return None
    alternatives = ' (or "srg-deploy[gpu]" for CUDA)' if extra == "cpu" else ""
    return f'this command needs {package}, which is not installed: pip install "srg-deploy[{extra}]"{alternatives}'


def main() -> None:
    """Console-script entry point: user errors become one line and exit code 1 (traceback only with --debug)."""
    _state["debug"] = "--debug" in sys.argv[1:]
    try:
        app()
    except SRGError as e:
        if _state["debug"]:
            raise
        console.print(f"[bold red]error:[/] {escape(str(e))}")
        sys.exit(1)
    except ModuleNotFoundError as e:
        message = missing_extra(e)
        if message is None or _state["debug"]:
            raise
        console.print(f"[bold red]error:[/] {escape(message)}")
        sys.exit(1)
    except KeyboardInterrupt:
        console.print("interrupted")
        sys.exit(130)


# One line per command; each command module owns its signature, help and examples (docs/layers.md: adding a command).
app.command(epilog=init.EPILOG)(init.init)
app.command(epilog=infer.EPILOG)(infer.infer)
app.command(epilog=export.EPILOG)(export.export)
app.command("build-engine", epilog=build_engine.EPILOG)(build_engine.build_engine)
app.command(epilog=quantize.EPILOG)(quantize.quantize)
app.command(epilog=verify.EPILOG)(verify.verify)
app.command(epilog=bench.EPILOG)(bench.bench)
app.command(epilog=train.EPILOG)(train.train)
app.command("eval", epilog=eval_.EPILOG)(eval_.eval_)
app.add_typer(dataset.app, name="dataset")
app.command(epilog=demo.EPILOG)(demo.demo)
app.command(epilog=batch.EPILOG)(batch.batch)
app.command("export-triton", epilog=export_triton.EPILOG)(export_triton.export_triton)


if __name__ == "__main__":
    main()
