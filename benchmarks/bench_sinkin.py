"""Benchmark of the SinkIn node's result downloads, against a baseline measured in the same run.

Run: .venv/bin/python benchmarks/bench_sinkin.py   (not part of the pytest run)

Prints, as a median over repeated runs, one SinkIn node call returning 4 images from the
loopback fake (each image download waits 200 ms on the server), which downloads them at once,
over bare `requests` calls doing the same work one after another (the multipart inference
call, then each download decoded to a numpy array). Target: at most 0.5x.
"""

from __future__ import annotations

import asyncio
import io
import os
import statistics
import tempfile
import time

import harness  # noqa: F401  (first: the tests' helpers and the pack, as the tests load them)
import numpy as np
import requests
from fakes.sinkin import KEY, FakeSinkIn
from PIL import Image
from support.nodecalls import defaults

from sdbridge.nodes.hosted.providers.sinkin import nodes as sinkin_nodes

IMAGES, DELAY = 4, 0.2


def bench_four_images(rounds: int = 9) -> None:
    os.environ["SDBRIDGE_USER_DIR"] = tempfile.mkdtemp(prefix="sdbridge-bench-")  # never the real one
    with FakeSinkIn(image_delay=DELAY) as fake:
        os.environ["SINKIN_API_KEY"], os.environ["SINKIN_API_BASE"] = KEY, fake.url
        node_class = sinkin_nodes.SDBridgeSinkInTxt2Img
        values = {**defaults(node_class), "prompt": "a cat", "seed": 1, "num_images": IMAGES}
        fields = {"access_token": KEY, "model_id": "r2La2w2", "prompt": "a cat", "seed": "1",
                  "num_images": str(IMAGES), "width": "512", "height": "768"}
        session = requests.Session()

        def bare():
            answer = session.post(f"{fake.url}/api/inference", files={k: (None, v) for k, v in fields.items()},
                                  timeout=30).json()
            return [np.asarray(Image.open(io.BytesIO(session.get(url, timeout=30).content)).convert("RGB"),
                               dtype=np.float32) / 255 for url in answer["images"]]

        async def node():
            return await node_class().generate(unique_id="1", **values)

        loop = asyncio.new_event_loop()
        bare(), loop.run_until_complete(node())  # warm connections
        ratios, node_times, bare_times = [], [], []
        for _ in range(rounds):
            started = time.perf_counter()
            bare()
            bare_times.append(time.perf_counter() - started)
            started = time.perf_counter()
            loop.run_until_complete(node())
            node_times.append(time.perf_counter() - started)
            ratios.append(node_times[-1] / bare_times[-1])
        loop.close()
    ratio = statistics.median(ratios)
    print(f"SinkIn node returning {IMAGES} images, each download waiting {DELAY * 1000:.0f} ms: "
          f"node {statistics.median(node_times):.3f} s, bare requests one after another "
          f"{statistics.median(bare_times):.3f} s; node / bare = {ratio:.3f}x (target <= 0.5x) "
          f"{'OK' if ratio <= 0.5 else 'OVER'}")


if __name__ == "__main__":
    bench_four_images()
