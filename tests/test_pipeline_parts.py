"""The pipeline's parts on their own, in-process and fast: the capture hand-off, latency statistics, sources,
sinks and drawings. The end-to-end behaviour is in test_infer_pipeline.py."""

from __future__ import annotations

import threading

import cv2
import numpy as np
import pytest
from conftest import make_frame
from media import write_video

from srg_deploy.errors import SRGError
from srg_deploy.runtime.draw import annotate, draw_graph
from srg_deploy.runtime.pipeline import FrameBuffer
from srg_deploy.runtime.sinks import GraphSink, VideoSink, fit
from srg_deploy.runtime.sources import Frame, SyntheticSource, open_source
from srg_deploy.runtime.stats import Reservoir


def frame(index: int) -> Frame:
    return Frame(index, np.zeros((4, 4, 3), np.uint8), 0.0, "x", "x", 0.0)


def test_realtime_buffer_keeps_the_newest_and_counts_drops():
    buffer, stop = FrameBuffer(4, keep_latest=True), threading.Event()
    for k in range(5):
        buffer.put(frame(k), stop)
    assert buffer.get(0.01).index == 4 and buffer.dropped == 4
    assert buffer.get(0.01) is None and not buffer.exhausted
    buffer.finish()
    assert buffer.exhausted


def test_file_buffer_blocks_capture_instead_of_dropping():
    buffer, stop = FrameBuffer(2, keep_latest=False), threading.Event()
    producer = threading.Thread(target=lambda: [buffer.put(frame(k), stop) for k in range(5)])
    producer.start()
    got = []
    while len(got) < 5:
        item = buffer.get(1.0)
        if item is not None:
            got.append(item.index)
            assert len(buffer.frames) <= 2
    producer.join(5)
    assert got == [0, 1, 2, 3, 4] and buffer.dropped == 0


def test_buffer_stop_releases_a_waiting_capture_and_counts_refused():
    buffer, stop = FrameBuffer(1, keep_latest=False), threading.Event()
    buffer.put(frame(0), stop)
    waiting = threading.Thread(target=buffer.put, args=(frame(1), stop))
    waiting.start()
    stop.set()
    waiting.join(2)
    assert not waiting.is_alive() and buffer.refused == 1 and buffer.clear() == 1


def test_buffer_hands_capture_errors_to_the_model_thread():
    buffer = FrameBuffer(2, keep_latest=False)
    buffer.put(frame(0), threading.Event())
    buffer.finish(SRGError("cannot decode"))
    with pytest.raises(SRGError, match="cannot decode"):
        buffer.get(0.01)


def test_reservoir_is_exact_when_small_and_bounded_when_large():
    small = Reservoir(size=100)
    for v in range(1, 101):
        small.add(float(v))
    assert small.percentile(50) == pytest.approx(50.5) and small.percentile(95) == pytest.approx(95.05)
    large = Reservoir(size=500)
    for v in range(100_000):
        large.add(float(v % 1000))
    assert len(large.values) == 500 and large.count == 100_000
    assert large.percentile(50) == pytest.approx(500, abs=60) and Reservoir().percentile(50) is None


def test_video_source_counts_timestamps_and_every(tmp_path):
    video = write_video(tmp_path / "v.avi", 7, 97, 131, "MJPG", fps=20.0)
    source = open_source(str(video))
    assert (source.kind, source.fps, source.length, source.names) == ("video", 20.0, 7, ["v.avi"])
    frames = list(source.frames(3, threading.Event()))
    assert [f.index for f in frames] == [0, 3, 6] and [f.timestamp_ms for f in frames] == pytest.approx([0, 150, 300])
    assert source.read == 7 and frames[0].image.shape[2] == 3


def test_synthetic_source_and_its_errors():
    source = open_source("synthetic:64x48")
    stop = threading.Event()
    first = next(source.frames(1, stop))
    assert first.image.shape == (48, 64, 3) and source.fps == 30.0 and source.length is None
    again = SyntheticSource("synthetic:64x48")
    assert np.array_equal(next(again.frames(1, stop)).image, first.image)  # deterministic
    with pytest.raises(SRGError, match="synthetic:320x240"):
        open_source("synthetic:big")
    with pytest.raises(SRGError, match="at least 16x16"):
        open_source("synthetic:8x8")


def test_source_kinds_and_clear_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SRGError, match="holds no images"):
        open_source(str(tmp_path / "empty"))
    with pytest.raises(SRGError, match="no images match"):
        open_source(str(tmp_path / "*.png"))
    with pytest.raises(SRGError, match="does not exist"):
        open_source(str(tmp_path / "nothing.mp4"))


def test_fit_pads_odd_sizes_and_scales_others():
    odd = np.full((97, 131, 3), 200, np.uint8)
    padded = fit(odd, (132, 98))
    assert padded.shape == (98, 132, 3) and np.array_equal(padded[:97, :131], odd) and padded[97:].max() == 0
    scaled = fit(np.full((200, 100, 3), 255, np.uint8), (132, 98))
    assert scaled.shape == (98, 132, 3) and scaled[:, :49].min() == 255 and scaled[:, 50:].max() == 0


def test_video_sink_refuses_unknown_containers_and_writes_nothing_when_failed(tmp_path):
    with pytest.raises(SRGError, match=r"unsupported container \.webm"):
        VideoSink(tmp_path / "x.webm", 10.0)
    sink = VideoSink(tmp_path / "x.mp4", 10.0)
    sink.write(record(), make_frame(64, 96))
    sink.close(ok=False)
    assert list(tmp_path.iterdir()) == []


def record(objects: int = 3) -> dict:
    boxes = [[4, 4, 40, 30], [20, 10, 90, 60], [0, 0, 60, 50], [50, 30, 95, 63]][:objects]
    return {
        "frame": 7,
        "source": "clip.mp4",
        "objects": [{"id": i, "box": b, "label": f"thing{i}", "score": 1.0} for i, b in enumerate(boxes)],
        "relations": [
            {"subject": i, "object": j, "predicate": "on", "score": 0.5}
            for i in range(objects)
            for j in range(objects)
            if i != j
        ],
    }


def test_annotate_draws_on_a_copy():
    image = make_frame(64, 96)
    before = image.copy()
    drawn = annotate(image, record(), top_relations=3)
    assert np.array_equal(image, before) and drawn.shape == image.shape
    assert (drawn != image).any(axis=2).mean() > 0.05  # boxes, labels and arrows cover part of the frame


@pytest.mark.parametrize("objects", [0, 1, 4])
def test_graph_drawing_any_object_count(objects):
    picture = draw_graph(record(objects), size=(320, 240))
    assert picture.shape == (240, 320, 3) and picture.std() > 0


def test_graph_sink_every_nth_and_removal_on_failure(tmp_path):
    sink = GraphSink(tmp_path / "graphs", every=2)
    for index in range(5):
        sink.write({**record(), "frame": index})
    names = sorted(p.name for p in (tmp_path / "graphs").iterdir())
    assert names == ["frame_000000.png", "frame_000002.png", "frame_000004.png"]
    assert cv2.imread(str(tmp_path / "graphs" / names[0])) is not None
    sink.close(ok=False)
    assert not (tmp_path / "graphs").exists()
