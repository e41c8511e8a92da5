"""`srg-deploy infer` on images: resolve the source, choose the backend, write one record per image."""

from __future__ import annotations

import glob
from pathlib import Path

from srg_deploy.console import err as console
from srg_deploy.errors import SRGError
from srg_deploy.inputs import BoxesFile, read_image
from srg_deploy.runtime.loader import open_backend
from srg_deploy.runtime.predictor import Predictor
from srg_deploy.runtime.sinks import JsonlSink
from srg_deploy.runtime.verify import open_shadow_checker

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


def image_paths(source: str) -> list[Path]:
    """An image, a directory of images (sorted by name) or a glob."""
    path = Path(source)
    if path.is_dir():
        paths = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not paths:
            raise SRGError(f"directory {path} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        return paths
    if path.is_file():
        return [path]
    if glob.has_magic(source):
        paths = sorted(Path(p) for p in glob.glob(source) if Path(p).suffix.lower() in IMAGE_SUFFIXES)
        if not paths:
            raise SRGError(f"no images match {source!r}")
        return paths
    raise SRGError(f"source {source} does not exist")


def run_infer(
    model: Path,
    *,
    source: str,
    boxes: Path | None,
    json_out: Path | None,
    backend: str | None,
    max_pairs: int | None,
    top_k: int,
    check_every: int | None = None,
    reference: Path | None = None,
) -> None:
    if not Path(model).exists():
        raise SRGError(f"model {model} does not exist")
    if (check_every is None) != (reference is None):
        raise SRGError("--check-every and --reference go together: the reference is what every Nth frame is re-run on")
    boxes_file = BoxesFile(boxes) if boxes else None
    paths = image_paths(source)
    if boxes_file:
        for p in paths:
            boxes_file.for_source(p.name)  # fail before any work if an image has no boxes
    with open_backend(model, backend, mode="boxes" if boxes_file else "sgdet", max_pairs=max_pairs) as runner:
        console.print(f"backend: {runner.describe()}")
        predictor = Predictor(runner, max_pairs=max_pairs, top_k=top_k)
        shadow = open_shadow_checker(runner, reference, check_every, max_pairs) if reference else None
        sink = JsonlSink(json_out) if json_out else None
        try:
            for index, path in enumerate(paths):
                frame = read_image(path)
                frame_boxes = boxes_file.for_source(path.name) if boxes_file else None
                record, outputs = predictor.predict(frame, frame_boxes, frame=index, source=str(path))
                if shadow and shadow.due(index):  # preprocessing is deterministic: the same inputs again
                    record["drift"] = shadow.maybe_check(index, predictor.prepare(frame, frame_boxes), outputs)
                if sink:
                    sink.write(record)
                else:
                    print_summary(record)
        except BaseException:
            if sink:
                sink.close(ok=False)
            raise
        if sink:
            sink.close()
            console.print(f"wrote {sink.lines} records to {json_out}")
    if shadow:
        console.print(shadow.finish(), highlight=False)


def print_summary(record: dict) -> None:
    objects = record["objects"]
    console.print(
        f"[bold]{record['source']}[/] {record['image_size'][0]}x{record['image_size'][1]}: {len(objects)} objects",
        highlight=False,
    )
    for rel in record["relations"][:5]:
        s, o = objects[rel["subject"]]["label"], objects[rel["object"]]["label"]
        console.print(
            f"  {s}#{rel['subject']} --{rel['predicate']}--> {o}#{rel['object']}  {rel['score']:.4f}", highlight=False
        )
