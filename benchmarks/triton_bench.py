"""Load on the scene_graph ensemble of a real tritonserver on 127.0.0.1: C concurrent gRPC clients x N requests
each (an encoded image and its boxes in, the JSON record out), with Triton's dynamic batching of the python steps
off and on. Reports requests/s, latency p50/p95, errors (must be 0: the script exits 1 otherwise) and the server's
resident memory (tritonserver and its python stubs) before and after the load.

The server is the one the tests use (tests/triton_server.py: the nvidia-pytriton wheel's tritonserver 2.51.0, python
backend only), so the model step runs on the python platform: srg-deploy's ONNX Runtime inside the python stub.
The model is the real architecture with seeded weights; frames are resized to --min-size..--max-size pixels.

    python benchmarks/triton_bench.py --clients 4 --requests 10       # the figures in benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
from _common import footer, header, scratch, table

from srg_deploy.checkpoint import random_model
from srg_deploy.config import SRGConfig
from srg_deploy.export.onnx_export import onnx_from_model

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from triton_server import TritonServer  # noqa: E402


def frame(seed: int, height: int = 480, width: int = 640) -> bytes:
    rng = np.random.default_rng(seed)
    image = cv2.GaussianBlur(rng.integers(0, 255, (height, width, 3), np.uint8), (0, 0), 3)
    return cv2.imencode(".jpg", image)[1].tobytes()


def boxes(seed: int, n: int, height: int = 480, width: int = 640) -> np.ndarray:
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, [width - 40, height - 40], (n, 2))
    wh = rng.uniform(30, [width / 2, height / 2], (n, 2))
    return np.concatenate([xy, np.minimum(xy + wh, [width - 1, height - 1])], 1)


def load(server: TritonServer, clients: int, requests: int, n_boxes: int) -> dict:
    import tritonclient.grpc as grpcclient

    def inputs(seed: int) -> list:
        data = np.frombuffer(frame(seed), np.uint8)[None]
        box = boxes(seed, n_boxes)[None]
        tensors = [grpcclient.InferInput("image", list(data.shape), "UINT8")]
        tensors.append(grpcclient.InferInput("boxes", list(box.shape), "FP64"))
        tensors[0].set_data_from_numpy(data)
        tensors[1].set_data_from_numpy(box)
        return tensors

    warm = grpcclient.InferenceServerClient(server.grpc)
    for seed in range(2):
        warm.infer("scene_graph", inputs(seed))
    rss_before = server.rss_mb()
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def client(k: int) -> None:
        connection = grpcclient.InferenceServerClient(server.grpc)
        prepared = [inputs(100 * k + i) for i in range(requests)]  # encoding is the client's cost, not timed
        for tensors in prepared:
            t0 = time.perf_counter()
            try:
                connection.infer("scene_graph", tensors).as_numpy("scene_graph")
            except Exception as e:  # any failure counts; the table says how many
                with lock:
                    errors.append(str(e).splitlines()[0])
                continue
            with lock:
                latencies.append((time.perf_counter() - t0) * 1e3)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    return {
        "rps": (len(latencies) + len(errors)) / elapsed,
        "p50": float(np.percentile(latencies, 50)) if latencies else float("nan"),
        "p95": float(np.percentile(latencies, 95)) if latencies else float("nan"),
        "errors": errors,
        "rss_before": rss_before,
        "rss_after": server.rss_mb(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--requests", type=int, default=10, help="per client")
    parser.add_argument("--boxes", type=int, default=8)
    parser.add_argument("--min-size", type=int, default=240)
    parser.add_argument("--max-size", type=int, default=320)
    parser.add_argument("--instances", type=int, default=1, help="instances of each model")
    args = parser.parse_args()

    config = SRGConfig()
    config = dataclasses.replace(
        config, preprocessing=dataclasses.replace(config.preprocessing, min_size=args.min_size, max_size=args.max_size)
    )
    note = (
        f"Workload: scene_graph ensemble (preprocess -> model on the python platform -> postprocess), gRPC on"
        f" 127.0.0.1; 640x480 JPEG frames resized to {args.min_size}..{args.max_size} px, {args.boxes} boxes"
        f" ({args.boxes * (args.boxes - 1) // 2} pairs); {args.instances} instance(s) of each model; 2 warm-up"
        " requests before timing"
    )
    title = header("Triton ensemble under load", note)  # the load average before the servers start
    rows, failed = [], False
    with scratch() as folder:
        model = Path(folder) / "model.onnx"
        model.write_bytes(onnx_from_model(random_model(config, seed=0), "boxes").SerializeToString())
        for batching in (False, True):
            repo = Path(folder) / f"models_{int(batching)}"
            command = [sys.executable, "-m", "srg_deploy.cli", "export-triton", str(model), "--repository", str(repo)]
            command += ["--ensemble", "--model-platform", "python", "--instances", str(args.instances)]
            command += ["--dynamic-batching"] if batching else []
            subprocess.run(command, check=True, capture_output=True)
            with TritonServer(repo) as server:
                r = load(server, args.clients, args.requests, args.boxes)
            failed |= bool(r["errors"])
            rows.append(
                [
                    "on" if batching else "off",
                    f"{args.clients} x {args.requests}",
                    f"{r['rps']:.2f}",
                    f"{r['p50']:.0f}",
                    f"{r['p95']:.0f}",
                    len(r["errors"]),
                    f"{r['rss_before']:.0f} -> {r['rss_after']:.0f}",
                ]
            )
            for error in sorted(set(r["errors"])):
                print(f"error: {error}", file=sys.stderr)
    print(title)
    headers = ["dynamic batching", "clients x requests", "req/s", "p50 ms", "p95 ms", "errors", "server RSS MiB"]
    print(table(headers, rows))
    print(footer())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
