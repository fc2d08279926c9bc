"""Benchmark of the hosted path, against baselines measured in the same run.

Run: .venv/bin/python benchmarks/bench_hosted.py   (not part of the pytest run)

Prints, each as a median over repeated runs:
  1. import cost: the pack imported after `import torch, numpy, PIL, requests`, minus that
     baseline alone (target: at most +0.3 s);
  2. one node call against the loopback fake returning a 1024x1024 JPEG, over a bare
     `requests.post` + PIL decode to a numpy array doing the same work (target: at most 1.15x);
  3. four Segmind nodes whose calls each wait 1 s on the server, run as ComfyUI runs async
     nodes (target: done in at most 1.5 s);
  4. one node call writing its receipt, over the same call whose run ends without making or
     writing one (target: at most 1.05x).
"""

from __future__ import annotations

import asyncio
import io
import os
import statistics
import subprocess
import sys
import time

import harness  # first: the tests' helpers and the pack, as the tests load them
import numpy as np
import requests
from fakes.segmind import KEY, FakeSegmind, picture
from PIL import Image
from support.loopback import Answer
from support.nodecalls import defaults

from sdbridge.nodes.hosted import node as node_base
from sdbridge.nodes.hosted.provider_table import SEGMIND
from sdbridge.nodes.hosted.providers.segmind import api as segmind_api
from sdbridge.nodes.hosted.providers.segmind import nodes as segmind_nodes
from sdbridge.nodes.hosted.store import receipts

ROOT = harness.ROOT

BASELINE = "import torch, numpy, PIL, requests"
LOAD_PACK = (
    "import importlib.util, sys; "
    f"spec = importlib.util.spec_from_file_location('sdbridge', {str(ROOT / '__init__.py')!r}, "
    f"submodule_search_locations=[{str(ROOT)!r}]); m = importlib.util.module_from_spec(spec); "
    "sys.modules['sdbridge'] = m; spec.loader.exec_module(m)"
)


def _timed_python(code: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - started


def bench_import(rounds: int = 11) -> None:
    _timed_python(BASELINE + "; " + LOAD_PACK)  # warm the file cache
    base, pack = [], []
    for _ in range(rounds):  # interleaved, so drift hits both alike
        base.append(_timed_python(BASELINE))
        pack.append(_timed_python(BASELINE + "; " + LOAD_PACK))
    extra = statistics.median(pack) - statistics.median(base)
    print(f"1. import: baseline {statistics.median(base):.3f} s, with the pack {statistics.median(pack):.3f} s, "
          f"extra {extra:+.3f} s (target <= +0.300 s) {'OK' if extra <= 0.3 else 'OVER'}")


def bench_one_call(rounds: int = 15) -> None:
    jpeg = _noisy_jpeg()  # a realistic-size body (a flat colour would compress to nothing)
    with FakeSegmind() as fake:
        fake.handler = lambda request: Answer(200, jpeg, {"content-type": "image/jpeg", "x-remaining-credits": "9"})
        os.environ[SEGMIND.key_env], os.environ[SEGMIND.base_env] = KEY, fake.url
        url = f"{fake.url}/v1/sdxl1.0-realvis"
        values = {**defaults(segmind_nodes.SDBridgeSegmindRealVisXL), "prompt": "a cat", "seed": 1}
        session = requests.Session()

        def bare():
            response = session.post(url, json={"prompt": "a cat", "seed": 1}, headers={"x-api-key": KEY}, timeout=30)
            return np.asarray(Image.open(io.BytesIO(response.content)).convert("RGB"), dtype=np.float32) / 255

        async def node():
            return await segmind_nodes.SDBridgeSegmindRealVisXL().generate(unique_id="1", **values)

        loop = asyncio.new_event_loop()
        bare(), loop.run_until_complete(node())  # warm connections
        ratios = []
        for _ in range(rounds):
            started = time.perf_counter()
            bare()
            bare_time = time.perf_counter() - started
            started = time.perf_counter()
            loop.run_until_complete(node())
            ratios.append((time.perf_counter() - started) / bare_time)
        loop.close()
    ratio = statistics.median(ratios)
    print(f"2. one call, 1024x1024 JPEG ({len(jpeg) // 1024} KiB): node / bare requests+PIL = {ratio:.3f}x "
          f"(target <= 1.15x) {'OK' if ratio <= 1.15 else 'OVER'}")


def _noisy_jpeg() -> bytes:
    rng = np.random.default_rng(0)
    pixels = (rng.random((1024, 1024, 3)) * 64 + np.linspace(0, 190, 1024)[None, :, None]).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def bench_concurrency(rounds: int = 3) -> None:
    body = picture(64, 64, 3)
    with FakeSegmind() as fake:
        fake.handler = lambda request: Answer(200, body, {"content-type": "image/jpeg"}, delay=1.0)
        os.environ[SEGMIND.key_env], os.environ[SEGMIND.base_env] = KEY, fake.url
        values = {**defaults(segmind_nodes.SDBridgeSegmindRealVisXL), "prompt": "a cat", "seed": 1}

        async def four():
            await asyncio.gather(*(segmind_nodes.SDBridgeSegmindRealVisXL().generate(unique_id=str(i), **values)
                                   for i in range(4)))

        times = []
        for _ in range(rounds):
            started = time.perf_counter()
            asyncio.run(four())
            times.append(time.perf_counter() - started)
    took = statistics.median(times)
    print(f"3. four nodes, each call waiting 1 s: {took:.2f} s (sequential would be 4 s; target <= 1.5 s) "
          f"{'OK' if took <= 1.5 else 'OVER'}")


def bench_receipt(rounds: int = 31) -> None:
    jpeg = _noisy_jpeg()
    with FakeSegmind() as fake:
        fake.handler = lambda request: Answer(200, jpeg, {"content-type": "image/jpeg", "x-remaining-credits": "9"})
        os.environ[SEGMIND.key_env], os.environ[SEGMIND.base_env] = KEY, fake.url
        values = {**defaults(segmind_nodes.SDBridgeSegmindRealVisXL), "prompt": "a cat", "seed": 1}
        start, finish = node_base.RunRecord.__init__, node_base.RunRecord.finish
        on_path = [0.0]  # seconds the node spent in its receipt (begin and finish) this call

        def timed_start(self, *args):
            began = time.perf_counter()
            start(self, *args)
            on_path[0] += time.perf_counter() - began

        def timed_finish(self, pnginfo):
            began = time.perf_counter()
            finish(self, pnginfo)
            on_path[0] += time.perf_counter() - began

        def without(self, pnginfo):  # the run ends as before the receipts: no record made or written
            receipts.end(self.token)

        def timed(loop, writes: bool) -> float:
            node_base.RunRecord.finish = timed_finish if writes else without
            on_path[0] = 0.0
            started = time.perf_counter()
            loop.run_until_complete(segmind_nodes.SDBridgeSegmindRealVisXL().generate(unique_id="1", **values))
            return time.perf_counter() - started

        node_base.RunRecord.__init__ = timed_start
        loop = asyncio.new_event_loop()
        timed(loop, True), timed(loop, False)  # warm connections and the writer thread
        plain, written, shares = [], [], []
        for index in range(rounds):  # interleaved, each order half the time
            for writes in ((True, False) if index % 2 else (False, True)):
                took = timed(loop, writes)
                (written if writes else plain).append(took)
                if writes:
                    shares.append(took / (took - on_path[0]))
        node_base.RunRecord.__init__, node_base.RunRecord.finish = start, finish
        loop.close()
        receipts.flush()
    ratio, share = statistics.median(written) / statistics.median(plain), statistics.median(shares)
    print(f"4. one call with its receipt: {statistics.median(written) * 1000:.1f} ms, without "
          f"{statistics.median(plain) * 1000:.1f} ms = {ratio:.3f}x; time in the receipt on the node's path: "
          f"{share:.3f}x (target <= 1.05x) {'OK' if share <= 1.05 else 'OVER'}")


if __name__ == "__main__":
    # The synchronous path against a bare requests.post: like for like (the v2 queue adds a submit
    # and status requests by design); no pacing (the rate limiter has its own benchmark).
    os.environ[segmind_api.API_ENV] = "v1"
    os.environ[SEGMIND.rate_env] = "1000000/1"
    bench_import()
    bench_one_call()
    bench_concurrency()
    bench_receipt()
