"""`srg-deploy quantize`: an fp32 export -> a calibrated INT8 QDQ ONNX, its accuracy price measured and bounded.

The Typer signature lives here (`quantize`), registered in cli.py with one line; the work is in export/quantize.py
(Q/DQ insertion), export/calibration.py (frames) and export/accuracy.py (accuracy control). Heavy imports happen
inside `run_quantize`, so `srg-deploy --help` stays instant.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from srg_deploy.defaults import VAL_IMAGES

EPILOG = (
    "Examples:\n\n  srg-deploy quantize model.onnx -o model-int8.onnx --data datasets/vg\n\n"
    "  srg-deploy quantize model.onnx -o model-int8.onnx --data datasets/vg --max-drop 0.005 --eval-images 500\n\n"
    "  srg-deploy quantize model.onnx -o model-int8.onnx --calibration frames/ --boxes boxes.json\n\n"
    "INT8 symmetric (zero points 0), per-channel weight scales, Q/DQ on the inputs of Conv/Gemm/MatMul only: RoI "
    "pooling and the box arithmetic stay float. With --data, the val split measures PredCls R@50 (SGDet for sgdet "
    "models) of fp32 and INT8, and the layers that cost the most go back to float until the drop is at most "
    "--max-drop. The calibration set, the method and the measured R@K are written into the model's metadata."
)


def quantize(
    model: Annotated[Path, typer.Argument(help="fp32 ONNX from `srg-deploy export`.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="INT8 QDQ ONNX to write.")],
    calibration: Annotated[
        Optional[str], typer.Option(help="Calibration frames: a folder of images, a glob or a video.")
    ] = None,
    boxes: Annotated[
        Optional[Path], typer.Option(help="boxes.json for --calibration (boxes-mode models), as `infer` takes it.")
    ] = None,
    data: Annotated[
        Optional[Path],
        typer.Option(help="VG-SGG dataset: calibrates on --split (unless --calibration) and controls accuracy on val."),
    ] = None,
    split: Annotated[str, typer.Option(help="Split of --data to calibrate on.")] = "train",
    val_images: Annotated[int, typer.Option(min=0, help="The first N split-0 images of --data are val.")] = VAL_IMAGES,
    frames: Annotated[int, typer.Option(min=1, help="Calibration frames (the first N).")] = 64,
    method: Annotated[str, typer.Option(help="Activation ranges: minmax | entropy | percentile.")] = "minmax",
    max_drop: Annotated[
        float, typer.Option(min=0.0, help="Largest absolute R@50 drop on val allowed (with --data).")
    ] = 0.01,
    max_float_layers: Annotated[
        Optional[int], typer.Option(min=0, help="Most layers accuracy control may keep in float (default: half).")
    ] = None,
    eval_images: Annotated[
        Optional[int], typer.Option(min=1, help="Measure accuracy on the first N val images (default: all).")
    ] = None,
) -> None:
    """Calibrate on real frames and write an INT8 QDQ ONNX for ONNX Runtime, OpenVINO and TensorRT."""
    run_quantize(
        model,
        output,
        calibration=calibration,
        boxes=boxes,
        data=data,
        split=split,
        val_images=val_images,
        frames=frames,
        method=method,
        max_drop=max_drop,
        max_float_layers=max_float_layers,
        eval_images=eval_images,
    )


def run_quantize(
    model: Path,
    output: Path,
    *,
    calibration: str | None = None,
    boxes: Path | None = None,
    data: Path | None = None,
    split: str = "train",
    val_images: int = VAL_IMAGES,
    frames: int = 64,
    method: str = "minmax",
    max_drop: float = 0.01,
    max_float_layers: int | None = None,
    eval_images: int | None = None,
) -> dict:
    """Checks first (cheap ones before any frame is read), then calibrate, control, write; returns the record."""
    import json

    import onnxruntime
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from srg_deploy.atomic import atomic_path
    from srg_deploy.config import SRGConfig
    from srg_deploy.console import err
    from srg_deploy.console import out as console
    from srg_deploy.contract import onnx_metadata as metadata
    from srg_deploy.datasets import VGSGGDataset
    from srg_deploy.errors import SRGError
    from srg_deploy.export import accuracy
    from srg_deploy.export import calibration as calib
    from srg_deploy.export.checks import read_onnx
    from srg_deploy.export.quantize import (
        METHODS,
        QUANTIZED_OPS,
        int8_from_onnx,
        is_int8,
        quantizable_layers,
        set_metadata,
    )

    if method not in METHODS:
        raise SRGError(f"unknown --method {method!r}; expected one of {', '.join(METHODS)}")
    if calibration is None and data is None:
        raise SRGError("give calibration frames: --calibration SRC (with --boxes for boxes-mode models) or --data DIR")
    if boxes is not None and calibration is None:
        raise SRGError("--boxes goes with --calibration SRC (a --data split brings its own boxes)")
    if Path(output).resolve() == Path(model).resolve():
        raise SRGError(f"--output {output} would overwrite the model being quantized; choose another path")
    proto = read_onnx(model)
    meta = metadata(proto)
    if "mode" not in meta or "config" not in meta:
        raise SRGError(f"{model} was not exported by srg-deploy (no srg_deploy.* metadata); run `srg-deploy export`")
    if is_int8(proto):
        raise SRGError(
            f"{model} is already INT8 (it has QuantizeLinear/DequantizeLinear nodes); quantize the fp32 export"
        )
    if meta.get("precision", "fp32") != "fp32":
        raise SRGError(f"{model} is {meta['precision']}; quantize the fp32 export")
    mode, config = meta["mode"], SRGConfig.from_dict(json.loads(meta["config"]))
    if calibration is not None:
        if mode == "boxes" and boxes is None:
            raise SRGError(
                f"{model} is a boxes-mode model: calibration frames from {calibration} need --boxes boxes.json"
            )
        if mode == "sgdet" and boxes is not None:
            raise SRGError(f"{model} detects its own boxes (sgdet mode); drop --boxes")
    val = VGSGGDataset(data, "val", val_images, max_images=eval_images) if data else None
    if val is not None:
        difference = _vocabulary_difference(config, val)
        if difference:
            raise SRGError(f"{model} and {data} have different vocabularies: {difference}")

    progress = Progress(
        TextColumn("{task.description:<34}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
    )
    with progress:

        def bar(label: str, total: int):
            task = progress.add_task(label, total=total)
            return lambda done: progress.update(task, completed=done)

        if calibration is not None:
            calibration_set = calib.from_source(config, mode, calibration, boxes, frames, bar("reading frames", frames))
        else:
            source = VGSGGDataset(data, split, val_images, max_images=frames)
            calibration_set = calib.from_dataset(
                config, mode, source, frames, bar(f"reading {split} images", len(source))
            )
        cases = calibration_set.cases
        quantized = int8_from_onnx(proto, cases, method, bar(f"calibrating ({method})", len(cases)))
        record = {
            "library": f"onnxruntime {onnxruntime.__version__} quantize_static",
            "format": "QDQ",
            "scheme": "int8 symmetric (zero points 0), per-channel weight scales, per-tensor activation scales, "
            "float biases",
            "quantized_ops": list(QUANTIZED_OPS),
            "method": method,
            "calibration": calibration_set.description,
            "layers": len(quantizable_layers(proto)),
            "float_layers": [],
            "accuracy": None,
        }
        if val is not None:
            controlled = accuracy.control_accuracy(
                proto,
                quantized,
                mode,
                val,
                cases,
                max_drop,
                max_float_layers,
                on_step=lambda label: bar(label, len(val)),
            )
            quantized = controlled.proto
            record["float_layers"] = controlled.float_layers
            record["accuracy"] = {
                "task": accuracy.TASK_FOR_MODE[mode],
                "data": str(data),
                "split": "val",
                "images": len(val),
                "max_drop": max_drop,
                "fp32": controlled.reference,
                "int8": controlled.chosen.recall,
                "drop": {k: controlled.reference[k] - controlled.chosen.recall[k] for k in controlled.reference},
                "trials": [{"float_layers": t.float_layers, "drop": t.drop} for t in controlled.trials],
            }
    set_metadata(quantized, {**metadata(quantized), "quantization": json.dumps(record)})
    with atomic_path(output, suffix=".onnx") as tmp:
        tmp.write_bytes(quantized.SerializeToString())
    summary = f"wrote {output}: INT8, {record['layers'] - len(record['float_layers'])} of {record['layers']} layers"
    if record["accuracy"]:
        a = record["accuracy"]
        summary += (
            f"; {a['task']} R@50 on {a['images']} val images {100 * a['fp32']['50']:.2f} (fp32) ->"
            f" {100 * a['int8']['50']:.2f} (int8), drop {a['drop']['50']:.4f} <= {max_drop:g}"
        )
    console.print(summary, markup=False)
    return record


def _vocabulary_difference(config, dataset) -> str | None:
    from srg_deploy.vocab import vocabulary_difference

    return vocabulary_difference(config.objects, config.predicates, dataset.objects, dataset.predicates)
