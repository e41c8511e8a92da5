"""What `srg-deploy batch --source` names, as a list of inputs that carry `infer`'s own numbering.

`batch` must write, input by input, the records `infer` writes (DESIGN.md §3), so each input carries the `frame`
and `source` that `infer` would give it:
- images of a directory or a glob are listed exactly as `infer --source DIR|GLOB` lists them (same helper in
  `sources.py`); an image's `frame` is its position among those images and its `source` the path `infer` prints;
- a list file (`.txt`, one path per line, `#` comments, relative paths resolved against the list's folder) is an
  explicit, ordered directory: its images are numbered by their position among the list's images, so a list of a
  directory's images in sorted order gives the records of `infer --source DIR`;
- every video is its own input with the records of `infer --source VIDEO` (frame = index in the video,
  source = the path as given), whether named directly, found in a directory, matched by a glob or listed.

A directory or glob also picks up videos by suffix (`infer` would ignore them there); other files are skipped.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from srg_deploy.errors import SRGError
from srg_deploy.runtime.sources import IMAGE_SUFFIXES, files_in, files_matching

VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".ts", ".mts"}
LIST_SUFFIXES = {".txt", ".lst"}


@dataclass(frozen=True)
class Input:
    """One input: an image, or a whole video. `path` (absolute) identifies it in the output folder's manifests, so
    a re-run that spells `--source` differently still finds it done; `source` is what its records say."""

    path: str  # absolute; also what workers open (their working folder is not the driver's)
    source: str  # the record's "source": what `infer` prints for it
    kind: Literal["image", "video"]
    frame: int  # images: the frame number `infer` gives it; videos: 0 (their records number their own frames)
    name: str  # what a boxes.json dict is keyed by: the file name

    @property
    def key(self) -> str:
        return self.path


def list_inputs(spec: str) -> list[Input]:
    """`--source DIR|GLOB|LIST.txt|IMAGE|VIDEO` -> inputs, images first (in `infer`'s order), then videos."""
    path = Path(spec)
    if path.is_dir():
        images, videos = files_in(path, IMAGE_SUFFIXES), files_in(path, VIDEO_SUFFIXES)
        if not images and not videos:
            raise SRGError(f"directory {path} holds no images or videos ({_suffixes()})")
        return _inputs([str(p) for p in images], [str(p) for p in videos])
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix in LIST_SUFFIXES:
            return _from_list(path)
        if suffix in IMAGE_SUFFIXES:
            return _inputs([str(path)], [])
        return _inputs([], [spec])  # like `infer`, any other file is read as a video, named as given
    if glob.has_magic(spec):
        images, videos = files_matching(spec, IMAGE_SUFFIXES), files_matching(spec, VIDEO_SUFFIXES)
        if not images and not videos:
            raise SRGError(f"no images or videos match {spec!r}")
        return _inputs([str(p) for p in images], [str(p) for p in videos])
    raise SRGError(f"source {spec} does not exist (expected a directory, a glob, a list file, an image or a video)")


def _from_list(path: Path) -> list[Input]:
    """One path per line; blank lines and `#` comments skipped; a path listed twice is refused (one record each)."""
    try:
        lines = path.read_text().splitlines()
    except UnicodeDecodeError:
        raise SRGError(f"list file {path} is not text: expected one image or video path per line") from None
    images: list[str] = []
    videos: list[str] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(lines, 1):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        entry_path = Path(entry) if Path(entry).is_absolute() else path.parent / entry
        key = _absolute(str(entry_path))
        if key in seen:
            raise SRGError(f"{path}:{number} lists {entry} again (first on line {seen[key]}); each input once")
        seen[key] = number
        (images if entry_path.suffix.lower() in IMAGE_SUFFIXES else videos).append(str(entry_path))
    if not seen:
        raise SRGError(f"list file {path} names no inputs")
    return _inputs(images, videos)


def _inputs(images: list[str], videos: list[str]) -> list[Input]:
    """`images` and `videos` spelled as their records' `source`."""
    return [Input(_absolute(s), s, "image", k, Path(s).name) for k, s in enumerate(images)] + [
        Input(_absolute(s), s, "video", 0, Path(s).name) for s in videos
    ]


def _absolute(path: str) -> str:
    """Absolute and normalised (`a/../b` -> `b`), without resolving symlinks: a link is its own input."""
    return os.path.normpath(os.path.abspath(path))


def _suffixes() -> str:
    return ", ".join(sorted(IMAGE_SUFFIXES | VIDEO_SUFFIXES))
