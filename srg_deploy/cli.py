"""The `srg-deploy` command line. Thin: it parses, calls the library, and turns `SRGError` into one line.

Heavy imports (torch, onnxruntime, tensorrt) happen inside the commands so `srg-deploy --help` is instant and
works on any machine.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from srg_deploy.commands import quantize
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


@app.command(
    epilog="Examples:\n\n  srg-deploy init ckpt/ --seed 0\n\n  srg-deploy init ckpt/ --backbone resnet101-63fe2227.pth\n\n"
    "  srg-deploy init ckpt/ --from-detectron2 faster_rcnn_from_caffe.pkl --objects objects_vocab.txt",
)
def init(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint folder to write (config.json + model.safetensors).")],
    backbone: Annotated[
        Optional[Path], typer.Option(help="torchvision ResNet-101 state dict (.pth) for trunk and res5.")
    ] = None,
    from_detectron2: Annotated[
        Optional[Path], typer.Option("--from-detectron2", help="detectron2 Faster R-CNN R101-C4 .pkl to import.")
    ] = None,
    objects: Annotated[
        Optional[Path], typer.Option(help="Object vocabulary, one name per line (default VG150).")
    ] = None,
    predicates: Annotated[
        Optional[Path], typer.Option(help="Predicate vocabulary, one name per line (default VG50).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed for every randomly initialised weight.")] = 0,
) -> None:
    """Write a checkpoint folder: seeded random, or trunk from torchvision / detectron2 weights, heads seeded."""
    from srg_deploy.commands.init import init_checkpoint

    message = init_checkpoint(
        checkpoint, backbone=backbone, detectron2=from_detectron2, objects=objects, predicates=predicates, seed=seed
    )
    console.print(escape(message))


@app.command(
    epilog="Examples:\n\n  srg-deploy infer ckpt/ --source photo.jpg --boxes boxes.json --json out.jsonl\n\n"
    "  srg-deploy infer model.onnx --source images/ --boxes boxes.json\n\n"
    "  srg-deploy infer sgdet.onnx --source video.mp4 --json out.jsonl --video-out annotated.mp4 --graph-out graphs/\n\n"
    "  srg-deploy infer model.engine --source 0 --json live.jsonl --reconnect 10\n\n"
    "  srg-deploy infer model.onnx --source rtsp://cam/stream --boxes boxes.json --every 5\n\n"
    "  srg-deploy infer model.engine --source video.mp4 --json out.jsonl --check-every 30 --reference ckpt/\n\n"
    "Exit codes: 0 the source ended or --max-frames was reached; 1 an error (this run's outputs are removed); "
    "3 a live source stopped delivering and did not come back after --reconnect attempts; 130 / 143 stopped by "
    "SIGINT (Ctrl-C) / SIGTERM. With 0, 3, 130 and 143 every output holds exactly the frames processed.",
)
def infer(
    model: Annotated[
        Path, typer.Argument(help="Checkpoint folder (torch), .onnx (ONNX Runtime) or .engine (TensorRT).")
    ],
    source: Annotated[
        str,
        typer.Option(
            help="Camera index (0), RTSP/HTTP URL, video file, image, directory of images, glob, or synthetic:WxH."
        ),
    ],
    boxes: Annotated[
        Optional[Path],
        typer.Option(
            help="boxes.json: a list of \\[x1,y1,x2,y2] for every frame, {file name: list}, or a list per video frame."
        ),
    ] = None,
    json_out: Annotated[
        Optional[Path], typer.Option("--json", help="Write one JSON line per processed frame here.")
    ] = None,
    video_out: Annotated[
        Optional[Path],
        typer.Option("--video-out", help="Write the frames with boxes and top relations drawn (.mp4 or .avi)."),
    ] = None,
    graph_out: Annotated[
        Optional[Path], typer.Option("--graph-out", help="Folder for PNG drawings of the scene graph.")
    ] = None,
    graph_every: Annotated[int, typer.Option(min=1, help="Draw the graph of every Nth processed frame.")] = 1,
    backend: Annotated[
        Optional[str], typer.Option(help="torch | onnxruntime | tensorrt (default: from the path).")
    ] = None,
    max_pairs: Annotated[
        Optional[int], typer.Option(min=1, help="Keep the K pairs with the highest score product.")
    ] = None,
    top_k: Annotated[int, typer.Option(min=1, help="Triplets per frame in the output.")] = 20,
    realtime: Annotated[
        Optional[bool],
        typer.Option(
            "--realtime/--no-realtime",
            help="Process only the newest frame, dropping older ones (default: on for cameras and URLs).",
        ),
    ] = None,
    every: Annotated[int, typer.Option(min=1, help="Process every Nth frame of the source.")] = 1,
    max_frames: Annotated[Optional[int], typer.Option(min=1, help="Stop after N processed frames.")] = None,
    reconnect: Annotated[
        int, typer.Option(min=0, help="Live sources: reopen attempts (with back-off) when frames stop coming.")
    ] = 5,
    show: Annotated[
        bool, typer.Option("--show", help="Show annotated frames in a window (needs a GUI OpenCV and a display).")
    ] = False,
    check_every: Annotated[
        Optional[int],
        typer.Option(min=1, help="Shadow verification: re-run every Nth frame through --reference; drift in the JSON."),
    ] = None,
    reference: Annotated[Optional[Path], typer.Option(help="Eager checkpoint folder for --check-every.")] = None,
) -> None:
    """Scene graphs from a camera, a stream, a video or images: JSONL, annotated video, graph PNGs."""
    from srg_deploy.commands.infer import run_infer

    code = run_infer(
        model,
        source=source,
        boxes=boxes,
        json_out=json_out,
        video_out=video_out,
        graph_out=graph_out,
        graph_every=graph_every,
        backend=backend,
        max_pairs=max_pairs,
        top_k=top_k,
        realtime=realtime,
        every=every,
        max_frames=max_frames,
        reconnect=reconnect,
        show=show,
        check_every=check_every,
        reference=reference,
    )
    if code:
        raise typer.Exit(code)


@app.command(
    epilog="Examples:\n\n  srg-deploy export ckpt/ --output model.onnx\n\n"
    "  srg-deploy export ckpt/ --output sgdet.onnx --mode sgdet --max-pairs 128\n\n"
    "  srg-deploy export ckpt/ -o model.onnx --opset 18 --skip-check",
)
def export(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint folder.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="ONNX file to write.")],
    mode: Annotated[str, typer.Option(help="boxes: image+boxes+pairs in; sgdet: image in, detector inside.")] = "boxes",
    opset: Annotated[int, typer.Option(help="ONNX opset (17..20).")] = 17,
    max_pairs: Annotated[
        Optional[int], typer.Option(min=1, help="sgdet only: keep the K pairs with the highest score product.")
    ] = None,
    skip_check: Annotated[
        bool, typer.Option("--skip-check", help="Skip the ONNX Runtime vs eager parity check.")
    ] = False,
) -> None:
    """Export to ONNX with RoI pooling as the srg::roi_pool plugin node; check it; write it only if it passes."""
    from srg_deploy.commands.export import run_export

    run_export(checkpoint, output, mode=mode, opset=opset, max_pairs=max_pairs, skip_check=skip_check)


@app.command(
    "build-engine",
    epilog="Examples:\n\n  srg-deploy build-engine model.onnx --output model.engine\n\n"
    "  srg-deploy build-engine model.onnx -o model-fp16.engine --fp16 --onnx-out model-fp16.onnx\n\n"
    "  srg-deploy build-engine model.onnx -o model.engine --max-boxes 36 --max-pairs 630 --opt-size 600x800"
    " --timing-cache trt.cache",
)
def build_engine(
    model: Annotated[Path, typer.Argument(help="ONNX file from `srg-deploy export`.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Engine file to write (plus OUTPUT.json).")],
    fp16: Annotated[
        bool, typer.Option("--fp16", help="Convert to mixed precision, check it, build strongly typed.")
    ] = False,
    onnx_out: Annotated[Optional[Path], typer.Option(help="Keep the fp16 ONNX here (with --fp16).")] = None,
    max_boxes: Annotated[int, typer.Option(min=1, help="Most boxes per frame (boxes mode profile).")] = 64,
    max_pairs: Annotated[int, typer.Option(min=1, help="Most pairs per frame (boxes mode profile).")] = 2016,
    min_size: Annotated[str, typer.Option(help="Smallest image, HxW.")] = "64x64",
    opt_size: Annotated[str, typer.Option(help="Image size to tune for, HxW.")] = "600x800",
    max_size: Annotated[str, typer.Option(help="Largest image, HxW.")] = "1000x1000",
    timing_cache: Annotated[Optional[Path], typer.Option(help="Timing cache to load and update.")] = None,
    opt_level: Annotated[Optional[int], typer.Option(min=0, max=5, help="TensorRT builder optimization level.")] = None,
    min_cosine: Annotated[
        Optional[float], typer.Option(help="fp16 gate: least cosine per output vs fp32 (default 0.999).")
    ] = None,
    min_agreement: Annotated[
        Optional[float], typer.Option(help="fp16 gate: least top-1 / triplet agreement vs fp32 (default 0.95).")
    ] = None,
    keep_fp32_overflow: Annotated[
        bool,
        typer.Option(
            "--keep-fp32-overflow",
            help="With --fp16: keep in fp32 the nodes whose activations on a sample frame exceed a quarter of fp16's range.",
        ),
    ] = False,
) -> None:
    """Build a TensorRT engine (10.9+/11.x) with the srg::roi_pool plugin; --fp16 converts and checks first."""
    from srg_deploy.commands.build_engine import run_build_engine
    from srg_deploy.export.engine import Profile
    from srg_deploy.inputs import parse_size

    profile = Profile(
        min_hw=parse_size(min_size, "--min-size"),
        opt_hw=parse_size(opt_size, "--opt-size"),
        max_hw=parse_size(max_size, "--max-size"),
        opt_boxes=min(36, max_boxes),
        max_boxes=max_boxes,
        opt_pairs=min(630, max_pairs),
        max_pairs=max_pairs,
    )
    run_build_engine(
        model,
        output,
        fp16=fp16,
        onnx_out=onnx_out,
        profile=profile,
        timing_cache=timing_cache,
        opt_level=opt_level,
        min_cosine=min_cosine,
        min_agreement=min_agreement,
        keep_fp32_overflow=keep_fp32_overflow,
    )


app.command(epilog=quantize.EPILOG)(quantize.quantize)


@app.command(
    epilog="Examples:\n\n  srg-deploy verify model.onnx --reference ckpt/ --source images/ --boxes boxes.json\n\n"
    "  srg-deploy verify model.engine --reference ckpt/ --source video.mp4 --frames 16 --report report.json\n\n"
    "  srg-deploy verify model.onnx --reference ckpt/ --source images/ --boxes boxes.json --save-reference golden.npz\n\n"
    "  srg-deploy verify model.engine --reference golden.npz     (on the device: no PyTorch needed)\n\n"
    "  srg-deploy verify model_fp16.onnx --reference ckpt/ --source images/ --boxes boxes.json --min-cosine 0.9995",
)
def verify(
    model: Annotated[Path, typer.Argument(help="Deployed model: .onnx (ONNX Runtime) or .engine (TensorRT).")],
    reference: Annotated[
        Path,
        typer.Option(
            help="The eager checkpoint folder the model was exported from, or a golden .npz recorded from it."
        ),
    ],
    source: Annotated[
        Optional[str], typer.Option(help="Image, directory of images, glob or video (not with a golden reference).")
    ] = None,
    boxes: Annotated[
        Optional[Path], typer.Option(help="boxes.json for boxes-mode models: a list, or {file name: list}.")
    ] = None,
    frames: Annotated[int, typer.Option(min=1, help="Verify at most this many frames (the first ones).")] = 8,
    report: Annotated[Optional[Path], typer.Option(help="Write the full report here as JSON.")] = None,
    save_reference: Annotated[
        Optional[Path],
        typer.Option(help="Record the inputs and the eager outputs as a golden .npz, for verifying without PyTorch."),
    ] = None,
    atol: Annotated[Optional[float], typer.Option(help="Absolute error allowed (default: fp32 0, fp16 off).")] = None,
    rtol: Annotated[
        Optional[float], typer.Option(help="Error allowed relative to max|ref| (default: fp32 1e-4, fp16 off).")
    ] = None,
    min_cosine: Annotated[
        Optional[float], typer.Option(help="Least cosine per output and per region (default: fp32 off, fp16 0.999).")
    ] = None,
    min_agreement: Annotated[
        Optional[float],
        typer.Option(help="Least top-1 and triplet recall agreement (default: fp32 1.0, fp16 0.95)."),
    ] = None,
) -> None:
    """Check a deployed model against the eager checkpoint: errors, agreement, triplet recall, latency."""
    from srg_deploy.commands.verify import run_verify

    run_verify(
        model,
        reference=reference,
        source=source,
        boxes=boxes,
        frames=frames,
        report_path=report,
        save_reference=save_reference,
        atol=atol,
        rtol=rtol,
        min_cosine=min_cosine,
        min_agreement=min_agreement,
    )


@app.command(
    epilog="Examples:\n\n  srg-deploy bench model.onnx\n\n"
    "  srg-deploy bench ckpt/ --image-size 600x1000 --boxes 36 --pairs 128 --iters 5 --json bench.json",
)
def bench(
    model: Annotated[
        Path, typer.Argument(help="Checkpoint folder (torch), .onnx (ONNX Runtime) or .engine (TensorRT).")
    ],
    image_size: Annotated[
        str, typer.Option(help="Model input size HxW; the synthetic frame is made at this size (no resize).")
    ] = "480x640",
    boxes: Annotated[int, typer.Option(min=0, help="Regions per frame (seeded random boxes).")] = 36,
    pairs: Annotated[
        Optional[int], typer.Option(min=0, help="Unordered pairs, the first P row-major (default: all).")
    ] = None,
    iters: Annotated[int, typer.Option(min=1, help="Measured runs.")] = 5,
    warmup: Annotated[int, typer.Option(min=0, help="Untimed runs first.")] = 1,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write the report here as JSON.")] = None,
) -> None:
    """Per-stage latency, FLOPs, achieved GFLOP/s and the share of the machine's measured peak."""
    from srg_deploy.commands.bench import run_bench

    run_bench(model, image_size=image_size, boxes=boxes, pairs=pairs, iters=iters, warmup=warmup, json_out=json_out)


@app.command(
    epilog="Examples:\n\n  srg-deploy train ckpt/ --data datasets/vg --output runs/vg --device cuda"
    " --feature-cache /scratch/vg-features\n\n"
    "  srg-deploy train ckpt/ --data datasets/vg --output runs/vg --resume\n\n"
    "  srg-deploy train ckpt/ --data scene/ --output runs/scene --val-images 8 --epochs 20 --reinit-heads\n\n"
    "Recipe (Scene-Graph-Benchmark's relation training): per image at most 256 ordered pairs, up to 64 of them "
    "ground-truth relations, the rest random pairs without one (label 0); cross-entropy over predicates + 1 and "
    "over the boxes' object labels; SGD momentum 0.9, weight decay 1e-4 (none on biases), gradient norm clipped to "
    "5, constant learning rate (the best epoch by val R@50 is kept instead of a schedule). Trunk and res5 stay "
    "frozen: their features are computed once per image and cached.\n\n"
    "Writes OUTPUT/checkpoint (a normal checkpoint folder, trained: true), OUTPUT/train_log.jsonl, "
    "OUTPUT/curves.png and OUTPUT/state (for --resume).",
)
def train(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint folder whose heads to train (trunk and res5 frozen).")],
    data: Annotated[Path, typer.Option(help="VG-SGG dataset folder (VG_100K/, image_data.json, VG-SGG*.h5, dicts).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="New folder for this training run.")],
    split: Annotated[Optional[str], typer.Option(help="Split to train on (default train).")] = None,
    val_images: Annotated[
        Optional[int],
        typer.Option(min=0, help="First N split-0 images are val, scored after each epoch (default 5000; 0: no val)."),
    ] = None,
    epochs: Annotated[
        Optional[int], typer.Option(min=1, help="Epochs in all, resumed ones included (default 10).")
    ] = None,
    lr: Annotated[Optional[float], typer.Option(min=0.0, help="SGD learning rate (default 0.01).")] = None,
    batch_size: Annotated[Optional[int], typer.Option(min=1, help="Images per SGD step (default 12).")] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda or cuda:N.")] = "cpu",
    seed: Annotated[
        Optional[int], typer.Option(help="Seed of the image order, the pair sampling and new heads (default 0).")
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the run in OUTPUT after its last completed epoch.")
    ] = False,
    reinit_heads: Annotated[
        bool,
        typer.Option(
            "--reinit-heads", help="New object, box-delta and relation heads for the dataset's vocabulary (seeded)."
        ),
    ] = False,
    feature_cache: Annotated[
        Optional[Path],
        typer.Option(help="Keep the frozen features on disk here (float16; needed for full Visual Genome)."),
    ] = None,
) -> None:
    """Train the object and relation heads on a VG-SGG split; keep the best epoch by val PredCls R@50."""
    from srg_deploy.commands.train import run_train

    options = {
        "split": split,
        "val_images": val_images,
        "lr": lr,
        "batch_size": batch_size,
        "seed": seed,
        "reinit_heads": reinit_heads or None,
    }
    run_train(
        checkpoint,
        data=data,
        output=output,
        options=options,
        epochs=epochs,
        device=device,
        resume=resume,
        feature_cache=feature_cache,
    )


@app.command(
    "eval",
    epilog="Examples:\n\n  srg-deploy eval runs/vg/checkpoint --data datasets/vg --report predcls.json\n\n"
    "  srg-deploy eval runs/vg/checkpoint model.onnx model-fp16.onnx model.engine --data datasets/vg\n\n"
    "  srg-deploy eval sgdet.onnx --data datasets/vg --mode sgdet --max-images 1000\n\n"
    "Metrics as Scene-Graph-Benchmark computes them: graph-constrained R@K, no-graph-constraint ngR@K, mean recall "
    "mR@K (K = 20, 50, 100). Several models are run on the same images; columns after the first show the change.",
)
def eval_(
    models: Annotated[
        list[Path], typer.Argument(help="Checkpoint folders, .onnx or .engine files; the first is the baseline.")
    ],
    data: Annotated[Path, typer.Option(help="VG-SGG dataset folder.")],
    split: Annotated[str, typer.Option(help="train, val or test.")] = "test",
    val_images: Annotated[int, typer.Option(min=0, help="First N split-0 images are val (as train used).")] = 5000,
    mode: Annotated[
        str, typer.Option(help="predcls (boxes and labels given), sgcls (boxes given) or sgdet (an sgdet model).")
    ] = "predcls",
    max_images: Annotated[Optional[int], typer.Option(min=1, help="Evaluate the first N images of the split.")] = None,
    report: Annotated[
        Optional[Path], typer.Option(help="Write every result here as JSON (fractions in [0, 1]).")
    ] = None,
) -> None:
    """Recall@K, no-graph-constraint R@K and mean R@K of one or more models on a VG-SGG split."""
    from srg_deploy.commands.eval import run_eval

    run_eval(models, data=data, split=split, val_images=val_images, task=mode, max_images=max_images, report=report)


dataset_app = typer.Typer(
    help="Datasets in the VG-SGG layout: generate a small one of the demo scene, or describe one.",
    no_args_is_help=True,
)
app.add_typer(dataset_app, name="dataset")


@dataset_app.command("generate", epilog="Example:\n\n  srg-deploy dataset generate scene/ --images 64 --size 320x240")
def dataset_generate(
    output: Annotated[Path, typer.Argument(help="Folder to write (VG_100K/, image_data.json, h5, dicts).")],
    images: Annotated[int, typer.Option(min=1, help="Images in all.")] = 64,
    seed: Annotated[int, typer.Option(help="Seed of every image's background and frame.")] = 0,
    size: Annotated[str, typer.Option(help="Image size WxH.")] = "320x240",
    test_fraction: Annotated[float, typer.Option(help="Share of the images in the test split (the last ones).")] = 0.25,
) -> None:
    """Write a learnable VG-SGG dataset of the demo's scene: 3 shapes, 6 directional predicates by a fixed rule."""
    from srg_deploy.commands.dataset import generate_dataset

    console.print(
        escape(generate_dataset(output, images, seed=seed, size=size, test_fraction=test_fraction)), highlight=False
    )


@dataset_app.command("info", epilog="Example:\n\n  srg-deploy dataset info datasets/vg --split test")
def dataset_info(
    root: Annotated[Path, typer.Argument(help="VG-SGG dataset folder.")],
    split: Annotated[str, typer.Option(help="train, val or test.")] = "train",
    val_images: Annotated[int, typer.Option(min=0, help="First N split-0 images are val.")] = 5000,
) -> None:
    """One line for a split after the field's filters: images, boxes, relations, vocabulary sizes."""
    from srg_deploy.commands.dataset import describe_dataset
    from srg_deploy.console import out

    out.print(escape(describe_dataset(root, split, val_images)), highlight=False)


@app.command(epilog="Example:\n\n  srg-deploy demo --workdir demo")
def demo(
    workdir: Annotated[
        Path, typer.Option(help="Folder for the demo's checkpoint, dataset, training run, model, video and outputs.")
    ] = Path("demo"),
) -> None:
    """The whole chain on a generated scene: dataset -> train the heads -> ONNX -> eval -> sample video -> infer."""
    from srg_deploy.commands.demo import run_demo

    code = run_demo(workdir)
    if code:
        raise typer.Exit(code)


@app.command(
    epilog="Examples:\n\n  srg-deploy batch model.onnx --source images/ --boxes boxes.json --output out/ --workers 2\n\n"
    "  srg-deploy batch sgdet.onnx --source 'archive/*/*.jpg' --output out/ --workers 8 --batch-size 64\n\n"
    "  srg-deploy batch model.engine --source videos.txt --output out/ --address 10.0.0.1:6379 --workers 4"
    " --gpus-per-worker 1\n\n"
    "Re-running the same command resumes: inputs already in a committed shard are skipped, an interrupted unit is "
    "redone, no record is written twice. Exit codes: 0 every input is done; 1 an error; 3 every input is done but "
    "some failed (OUT/failures.jsonl); 130 interrupted (committed shards stay).",
)
def batch(
    model: Annotated[
        Path, typer.Argument(help="Checkpoint folder (torch), .onnx (ONNX Runtime) or .engine (TensorRT).")
    ],
    source: Annotated[
        str,
        typer.Option(help="Directory of images and videos, glob, list file (.txt, one path per line), image or video."),
    ],
    output: Annotated[
        Path, typer.Option(help="Output folder: records/ (JSONL shards), manifests/, failures.jsonl, batch.json.")
    ],
    boxes: Annotated[
        Optional[Path],
        typer.Option(help="boxes.json: a list of \\[x1,y1,x2,y2] for every frame, or {file name: list}."),
    ] = None,
    workers: Annotated[int, typer.Option(min=1, help="Ray actors, each holding one loaded model.")] = 1,
    address: Annotated[
        Optional[str],
        typer.Option(help="Join this Ray cluster (host:port from `ray start --head`, or auto); default: local Ray."),
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per unit of work (= per shard).")] = 32,
    cpus_per_worker: Annotated[
        Optional[float],
        typer.Option(min=0.1, help="CPUs each worker reserves and uses (default: local cores / workers; cluster: 1)."),
    ] = None,
    gpus_per_worker: Annotated[float, typer.Option(min=0, help="GPUs each worker reserves (e.g. 1, or 0.5).")] = 0.0,
    max_pairs: Annotated[
        Optional[int], typer.Option(min=1, help="Keep the K pairs with the highest score product.")
    ] = None,
    top_k: Annotated[int, typer.Option(min=1, help="Triplets per frame in the output.")] = 20,
    retry_failed: Annotated[
        bool, typer.Option("--retry-failed", help="Process inputs that failed in earlier runs again.")
    ] = False,
) -> None:
    """Scene graphs for an archive of images and videos on Ray Data: resumable JSONL shards, same records as infer."""
    from srg_deploy.commands.batch import run_batch

    code = run_batch(
        model,
        source=source,
        output=output,
        boxes=boxes,
        workers=workers,
        address=address,
        batch_size=batch_size,
        cpus_per_worker=cpus_per_worker,
        gpus_per_worker=gpus_per_worker,
        max_pairs=max_pairs,
        top_k=top_k,
        retry_failed=retry_failed,
    )
    if code:
        raise typer.Exit(code)


@app.command(
    "export-triton",
    epilog="Examples:\n\n  srg-deploy export-triton model.onnx --repository models/ --name srg --instances 2\n\n"
    "  srg-deploy export-triton model.engine --repository models/ --name srg_trt\n\n"
    "  srg-deploy export-triton model.onnx --repository models/ --ensemble --model-platform python\n\n"
    "Then: tritonserver --model-repository models/ (docs/triton.md has the client).",
)
def export_triton(
    model: Annotated[Path, typer.Argument(help=".onnx from `srg-deploy export`, or .engine from `build-engine`.")],
    repository: Annotated[
        Path, typer.Option(help="Triton model repository folder (created if missing; other models are kept).")
    ],
    name: Annotated[Optional[str], typer.Option(help="Model name (its folder); default: the file's stem.")] = None,
    instances: Annotated[int, typer.Option(min=1, help="Instances of each model (instance_group count).")] = 1,
    kind: Annotated[
        Optional[str], typer.Option(help="cpu | gpu instances (default: cpu for ONNX, gpu for engines).")
    ] = None,
    model_platform: Annotated[
        Optional[str],
        typer.Option(
            help="onnxruntime | tensorrt | openvino | python: the Triton backend that runs the model (default:"
            " onnxruntime for ONNX, tensorrt for engines; python = srg-deploy's runtime in Triton's python backend)."
        ),
    ] = None,
    ensemble: Annotated[
        bool,
        typer.Option(
            "--ensemble", help="Also write preprocess, postprocess and the scene_graph ensemble (image in, record out)."
        ),
    ] = False,
    dynamic_batching: Annotated[
        bool,
        typer.Option("--dynamic-batching", help="Turn on Triton's dynamic batcher for the ensemble's python steps."),
    ] = False,
) -> None:
    """Write a Triton Inference Server model repository: NAME/config.pbtxt and NAME/1/..., optionally the ensemble."""
    from srg_deploy.commands.export_triton import run_export_triton

    run_export_triton(
        model,
        repository,
        name=name,
        instances=instances,
        kind=kind,
        model_platform=model_platform,
        ensemble=ensemble,
        dynamic_batching=dynamic_batching,
    )


if __name__ == "__main__":
    main()
