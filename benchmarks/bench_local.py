"""Benchmark of the local path on the tiny pipelines, against baselines measured in the same run.

Run: .venv/bin/python benchmarks/bench_local.py   (not part of the pytest run)

Prints:
  1. SD Bridge Local txt2img over the diffusers pipeline called directly with the same settings
     (fresh scheduler from the same config, one generator per sample, same prompt, size, steps),
     median of alternating runs, for SD 1.5 and SDXL (target: at most 1.05x);
  2. a cached second load over the first load of the same single-file checkpoint, median over
     repeats (target: at most 1%);
  3. the weights held by SDXL base + refiner loaded together (identical second text encoder and
     VAE shared) over the two loaded apart.
"""

from __future__ import annotations

import statistics
import tempfile
import time

import harness  # noqa: F401  (first: the tests' helpers and the pack, as the tests load them)
import torch
from support import tiny_pipelines

from sdbridge.nodes.local import local_nodes, pipeline_cache
from sdbridge.nodes.local.schedulers import make_scheduler

REPEATS = 15
SETTINGS = {"prompt": "a lighthouse on a cliff at dusk", "negative_prompt": "blurry", "scheduler": "Euler",
            "num_inference_steps": 4, "guidance_scale": 7.5, "samples": 2, "seed": 3, "img_width": 64,
            "img_height": 64}


def node_run(local) -> None:
    local_nodes.SDBridgeLocalTxt2Img().generate(pipeline=local, style="base", **SETTINGS)


def direct_run(local) -> None:
    pipe = local.pipe
    pipe.scheduler = make_scheduler("Euler", local.scheduler_config)
    generators = [torch.Generator("cpu").manual_seed(SETTINGS["seed"] + i) for i in range(SETTINGS["samples"])]
    pipe(prompt=SETTINGS["prompt"], negative_prompt=SETTINGS["negative_prompt"],
         num_images_per_prompt=SETTINGS["samples"], generator=generators,
         num_inference_steps=SETTINGS["num_inference_steps"], guidance_scale=SETTINGS["guidance_scale"],
         width=SETTINGS["img_width"], height=SETTINGS["img_height"], output_type="pt")


def timed(run, *args) -> float:
    started = time.perf_counter()
    run(*args)
    return time.perf_counter() - started


def node_over_direct(local) -> float:
    for _ in range(3):  # warm up both paths
        node_run(local)
        direct_run(local)
    ratios = [timed(node_run, local) / timed(direct_run, local) for _ in range(REPEATS)]
    return statistics.median(ratios)


def cached_over_first(path: str) -> tuple[float, float]:
    firsts, ratios = [], []
    for _ in range(5):
        pipeline_cache.release_pipelines()
        first = timed(pipeline_cache.load_cached, path)
        again = statistics.median(timed(pipeline_cache.load_cached, path) for _ in range(REPEATS))
        firsts.append(first)
        ratios.append(again / first)
    return statistics.median(ratios), statistics.median(firsts)


def weight_bytes(pipes) -> int:
    """Bytes of the distinct tensors the pipelines hold (a shared module counts once)."""
    seen, total = set(), 0
    for pipe in pipes:
        for component in pipe.components.values():
            if isinstance(component, torch.nn.Module):
                for tensor in list(component.parameters()) + list(component.buffers()):
                    if tensor.data_ptr() not in seen:
                        seen.add(tensor.data_ptr())
                        total += tensor.numel() * tensor.element_size()
    return total


def together_over_apart(base_path: str, refiner_path: str) -> tuple[float, int, int]:
    pipeline_cache.release_pipelines()
    apart = weight_bytes([pipeline_cache.load_cached(base_path).pipe])
    pipeline_cache.release_pipelines()
    apart += weight_bytes([pipeline_cache.load_cached(refiner_path).pipe])
    pipeline_cache.release_pipelines()
    together = weight_bytes([pipeline_cache.load_cached(base_path).pipe, pipeline_cache.load_cached(refiner_path).pipe])
    pipeline_cache.release_pipelines()
    return together / apart, together, apart


def main() -> None:
    torch.set_num_threads(1)  # steadier timings on a shared machine
    models = tiny_pipelines.tiny_models(tempfile.mkdtemp(prefix="sdbridge-bench-"))
    for family, paths in models.items():
        pipeline_cache.CONFIG_DIRS[family] = paths["folder"]
    for family in ("sd15", "sdxl_base"):
        local = pipeline_cache.load_cached(str(models[family]["file"]))
        print(f"1. txt2img node / direct diffusers call, {family}: {node_over_direct(local):.3f}x (target <= 1.05x)")
    ratio, first = cached_over_first(str(models["sd15"]["file"]))
    print(f"2. cached second load / first load (first {first * 1000:.0f} ms): {ratio:.4%} (target <= 1%)")
    ratio, together, apart = together_over_apart(str(models["sdxl_base"]["file"]), str(models["sdxl_refiner"]["file"]))
    print(f"3. SDXL base + refiner weights loaded together / apart: {together / 2**20:.1f} MiB / "
          f"{apart / 2**20:.1f} MiB = {ratio:.3f}")


if __name__ == "__main__":
    main()
