"""`srg-deploy init`: write a checkpoint folder from a seed, torchvision ImageNet weights or a detectron2 detector."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Optional

import typer

from srg_deploy.config import Architecture, Detector, Preprocessing, SRGConfig
from srg_deploy.console import err as console
from srg_deploy.errors import SRGError
from srg_deploy.vocab import read_vocab_file, vg50_predicates, vg150_objects

# bottom-up-attention's Caffe VG detector as detectron2 runs it: BGR, Caffe means, no std, 14x14 RoIs, dilated res5.
BOTTOM_UP_PREPROCESSING = Preprocessing(
    pixel_mean=(102.9801, 115.9465, 122.7717), pixel_std=(1.0, 1.0, 1.0), channel_order="BGR"
)
BOTTOM_UP_ARCHITECTURE = Architecture(roi_output_size=14, res5_dilation=2, stride_in_1x1=True, stem_pool="caffe")
ANCHOR_SIZES_BY_COUNT = {15: (32.0, 64.0, 128.0, 256.0, 512.0), 12: (64.0, 128.0, 256.0, 512.0)}

EPILOG = (
    "Examples:\n\n  srg-deploy init ckpt/ --seed 0\n\n  srg-deploy init ckpt/ --backbone resnet101-63fe2227.pth\n\n"
    "  srg-deploy init ckpt/ --from-detectron2 faster_rcnn_from_caffe.pkl --objects objects_vocab.txt"
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
    message = init_checkpoint(
        checkpoint, backbone=backbone, detectron2=from_detectron2, objects=objects, predicates=predicates, seed=seed
    )
    console.print(message, markup=False)


def init_checkpoint(
    path: Path,
    *,
    backbone: Path | None = None,
    detectron2: Path | None = None,
    objects: Path | None = None,
    predicates: Path | None = None,
    seed: int = 0,
    preprocessing: Preprocessing | None = None,
) -> str:
    """Write the checkpoint and return a one-paragraph account of where every weight came from.

    `preprocessing` replaces the default resize/normalisation (the demo uses smaller frames); a detectron2 import
    brings its own."""
    from srg_deploy.checkpoint import merge_backbone, random_model, save_checkpoint, torchvision_backbone_state

    if backbone and detectron2:
        raise SRGError("--backbone and --from-detectron2 both give trunk weights; pass one of them")
    if detectron2 and preprocessing:
        raise SRGError("a detectron2 import uses that detector's preprocessing; drop the preprocessing override")
    predicate_names = tuple(read_vocab_file(predicates)) if predicates else tuple(vg50_predicates())
    if detectron2:
        return _from_detectron2(path, detectron2, objects, predicate_names, seed)
    object_names = tuple(read_vocab_file(objects)) if objects else tuple(vg150_objects())
    config = SRGConfig(
        objects=object_names,
        predicates=predicate_names,
        preprocessing=preprocessing or Preprocessing(),
        provenance={"seed": seed},
    )
    if backbone:
        state = torchvision_backbone_state(backbone)
        config = dataclasses.replace(config, provenance={"seed": seed, "backbone": str(backbone)})
        model = random_model(config, seed)
        merge_backbone(model, state, str(backbone))
        what = f"trunk and res5 from {backbone}; detector, object and relation heads seeded random (seed {seed}), UNTRAINED"
    else:
        model = random_model(config, seed)
        what = f"all weights seeded random (seed {seed}): an UNTRAINED model, for testing the deployment chain only"
    save_checkpoint(model, path)
    return f"wrote {path}: {what}; {len(object_names)} objects, {len(predicate_names)} predicates"


def _from_detectron2(
    path: Path, source: Path, objects: Path | None, predicate_names: tuple[str, ...], seed: int
) -> str:
    from srg_deploy.checkpoint import random_model, save_checkpoint
    from srg_deploy.detectron2_import import convert, num_classes, read_detectron2_weights

    arrays, scheme = read_detectron2_weights(source)
    mapped, ignored = convert(arrays, scheme)
    n_objects, n_anchors = num_classes(mapped, source)
    if objects:
        object_names = tuple(read_vocab_file(objects))
        if len(object_names) != n_objects:
            raise SRGError(f"{objects} lists {len(object_names)} classes but {source} classifies {n_objects}")
    else:
        object_names = tuple(f"class_{k}" for k in range(1, n_objects + 1))
    if n_anchors not in ANCHOR_SIZES_BY_COUNT:
        raise SRGError(f"{source} has {n_anchors} anchors per location; expected 15 (5 sizes x 3 ratios) or 12")
    config = SRGConfig(
        architecture=BOTTOM_UP_ARCHITECTURE,
        preprocessing=BOTTOM_UP_PREPROCESSING,
        detector=Detector(anchor_sizes=ANCHOR_SIZES_BY_COUNT[n_anchors]),
        objects=object_names,
        predicates=predicate_names,
        trained=False,
        provenance={"seed": seed, "detectron2": str(source), "scheme": scheme, "ignored_keys": ignored},
    )
    model = random_model(config, seed)
    own = model.state_dict()
    relation_keys = ("subject_embed.", "object_embed.", "union_embed.", "relation_head.")
    needed = [k for k in own if not k.startswith(relation_keys) and not k.endswith("num_batches_tracked")]
    defaults = {k for k in needed if k.endswith(("running_mean", "running_var")) and k not in mapped}
    missing = [k for k in needed if k not in mapped and k not in defaults]
    if missing:
        raise SRGError(
            f"{source} lacks weights for {', '.join(missing[:8])}"
            + (f" (and {len(missing) - 8} more)" if len(missing) > 8 else "")
        )
    for key, tensor in mapped.items():
        if tensor.shape != own[key].shape:
            raise SRGError(f"{source}: {key} has shape {tuple(tensor.shape)}, expected {tuple(own[key].shape)}")
    model.load_state_dict({**own, **mapped})
    save_checkpoint(model, path)
    note = (
        f"; ignored {len(ignored)} keys: {', '.join(ignored[:6])}{' ...' if len(ignored) > 6 else ''}"
        if ignored
        else ""
    )
    return (
        f"wrote {path}: detector and trunk from {source} ({scheme} names, {n_objects} objects, {n_anchors} anchors); "
        f"relation head seeded random (seed {seed}), UNTRAINED{note}"
    )
