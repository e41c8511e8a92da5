"""Test media made on the spot: videos written with OpenCV, and a local MJPEG-over-HTTP camera that stops."""

from __future__ import annotations

import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np
from conftest import make_frame


def moving_frame(height: int, width: int, index: int) -> np.ndarray:
    """`make_frame` with a white square that moves by frame, so consecutive frames differ."""
    frame = make_frame(height, width, seed=index)
    x = (index * 7) % max(1, width - 12)
    frame[4:14, x : x + 10] = 255
    return frame


def write_video(path: Path, frames: int, width: int, height: int, fourcc: str, fps: float = 10.0) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (width, height))
    assert writer.isOpened(), f"OpenCV cannot write {fourcc} to {path}"
    for index in range(frames):
        writer.write(moving_frame(height, width, index))
    writer.release()
    assert video_frames(path) == frames
    return path


def video_frames(path: Path) -> int:
    """Frames actually decodable, counted by reading them all (not the container's claim)."""
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    assert capture.isOpened(), f"{path} does not open"
    count = 0
    while capture.read()[0]:
        count += 1
    capture.release()
    return count


def summary_counts(stderr: str) -> dict[str, int]:
    """The pipeline's end-of-run frame counts, parsed from its summary line."""
    line = next(line for line in stderr.splitlines() if line.startswith("frames: read"))
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"(\w+) (\d+)", line)}


class MjpegCamera:
    """An HTTP camera serving `multipart/x-mixed-replace` JPEG frames, like IP cameras do. Each of the first
    `sessions` connections gets `frames_per_session` frames, `interval` seconds apart, and is then closed; every
    later connection is answered 503, so the stream is gone for good."""

    def __init__(self, sessions: int, frames_per_session: int, interval: float, size: tuple[int, int] = (96, 64)):
        self.sessions, self.frames_per_session, self.interval, self.size = sessions, frames_per_session, interval, size
        self.connections = 0
        self.sent = 0
        camera = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                camera.connections += 1
                if camera.connections > camera.sessions:
                    self.send_error(503, "camera offline")
                    return
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                for _ in range(camera.frames_per_session):
                    frame = moving_frame(camera.size[1], camera.size[0], camera.sent)
                    data = cv2.imencode(".jpg", frame)[1].tobytes()
                    header = f"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: {len(data)}\r\n\r\n"
                    self.wfile.write(header.encode() + data + b"\r\n")
                    self.wfile.flush()
                    camera.sent += 1
                    time.sleep(camera.interval)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/stream.mjpg"

    def __enter__(self) -> MjpegCamera:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
