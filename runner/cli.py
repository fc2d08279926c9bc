"""The command line (`python -m runner`, example_workflows/api/submit.py): flags, checks, the run.

Every input is checked before anything is sent; a bad one ends the run with one line on stderr
naming the problem and the fix, and exit code 2. Then 0 when every job is done, 1 when any failed
or was refused (or no server can run the workflow), 130 after Ctrl-C.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import jobs, preflight
from .batch import Batch, BatchOptions, Stop
from .jobs import BadInput
from .manifest import Manifest
from .progress import Progress
from .server import Server

DEFAULT_SERVER = "http://127.0.0.1:8188"
WORKFLOWS = Path(__file__).resolve().parent.parent / "example_workflows" / "api"  # a bare name is one of these

USAGE = """Submit an API-format workflow to ComfyUI, follow it, save its images; or a batch of jobs
spread over several ComfyUI servers.

    python submit.py segmind_sdxl_panda.json --set prompt="a red fox" --set seed=7
    python submit.py segmind_sd15_img2img_landscape.json --set 2.strength=0.5 --out ./renders
    python submit.py segmind_sdxl_panda.json --seeds 1-20 --server http://gpu1:8188 --server http://gpu2:8188
    python submit.py segmind_sdxl_panda.json --batch prompts.jsonl --out ./renders

--set NAME=VALUE changes that input on every node that has it (NAME may be NODE_ID.NAME to aim at
one node); VALUE is read as JSON when it parses (7, 0.5, true) and as text otherwise. Linked
inputs cannot be overridden. --batch FILE.jsonl gives one job per line (an object of overrides,
{"prompt": "a cat", "seed": 3}); --seeds 1-20 one job per seed; both together, every line with
every seed. Each job goes to the least loaded server; a job whose server stops answering goes to
another. Images and manifest.jsonl (one line per job) land in --out. Ctrl-C withdraws what this
batch queued and writes the manifest of what finished (exit 130).
"""


def arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="submit.py", description=USAGE.split("\n\n")[0])
    parser.add_argument("workflow", type=Path, help="an API-format workflow (example_workflows/api/*.json)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="NAME=VALUE",
                        help="an input for every job (repeatable)")
    parser.add_argument("--batch", type=Path, metavar="FILE.jsonl", help="one job per line: an object of overrides")
    parser.add_argument("--seeds", metavar="RANGE", help="one job per seed: 1-20, or 7,9,12")
    parser.add_argument("--server", dest="servers", action="append", default=[], metavar="URL",
                        help=f"a ComfyUI server (repeatable; default {DEFAULT_SERVER})")
    parser.add_argument("--out", type=Path, default=Path("sdbridge_outputs"), help="the folder for images and manifest")
    parser.add_argument("--manifest", type=Path, help="default: OUT/manifest.jsonl")
    parser.add_argument("--timeout", type=float, default=900, help="seconds one job may take, queue included")
    parser.add_argument("--depth", type=int, default=2, help="jobs of this batch queued on one server at a time")
    parser.add_argument("--wait", type=float, default=60, metavar="S",
                        help="when no server is left, how long to wait for one to come back (default 60)")
    parser.add_argument("--poll", action="store_true", help="poll /history instead of following the websocket")
    parser.add_argument("--quiet", action="store_true", help="no progress bar, only errors and the summary")
    args = parser.parse_args(argv)
    if args.depth < 1:
        parser.error("--depth must be at least 1")
    return args


def workflow_path(given: Path) -> Path:
    """The path as given, else a workflow of that name beside submit.py."""
    if given.exists() or given.is_absolute():
        return given
    beside = WORKFLOWS / given
    return beside if beside.exists() else given


def check_outputs(out: Path, manifest: Path) -> None:
    """The output folder and the manifest can be written where they are named (nothing created)."""
    for folder in (out, *out.parents):
        if folder.exists():
            if not folder.is_dir():
                raise BadInput(f"--out {out}: {folder} is a file, not a folder; name a folder for the images")
            break
    if manifest.is_dir():
        raise BadInput(f"--manifest {manifest}: is a folder; name a file, e.g. {manifest / 'manifest.jsonl'}")
    for folder in manifest.parents:
        if folder.exists():
            if not folder.is_dir():
                raise BadInput(f"--manifest {manifest}: {folder} is a file, not a folder; name another place")
            break


def main(argv: list[str] | None = None) -> int:
    try:
        return run(arguments(argv))
    except BadInput as exc:
        print(f"submit.py: error: {exc}", file=sys.stderr)
        return 2


def run(args: argparse.Namespace) -> int:
    path = workflow_path(args.workflow)
    workflow = jobs.read_workflow(path)
    batch_jobs = jobs.build(workflow, args.overrides, args.batch, args.seeds)
    manifest_path = args.manifest or args.out / "manifest.jsonl"
    check_outputs(args.out, manifest_path)
    single = len(batch_jobs) == 1 and not args.batch and not args.seeds
    servers = [Server(url) for url in dict.fromkeys(args.servers or [DEFAULT_SERVER])]
    progress = Progress(len(batch_jobs), quiet=args.quiet)
    try:
        usable = preflight.usable(servers, jobs.node_types(workflow), lambda text: progress.say(text, always=True))
    except KeyboardInterrupt:
        progress.say("stopped before anything was sent", always=True)
        return 130
    if not usable:
        raise SystemExit("no server can run this workflow (see above)")
    manifest = Manifest(manifest_path)
    if not single:
        progress.say(f"{len(batch_jobs)} jobs of {path.name} on {len(usable)} server(s); images and "
                     f"{manifest.path.name} in {args.out}")
    settings = BatchOptions(out=args.out, depth=args.depth, timeout=args.timeout, use_websocket=not args.poll,
                        wait=args.wait, name=path.name, single=single)
    try:
        code = Batch(usable, batch_jobs, manifest, progress, settings).run()
    except Stop as stop:
        raise SystemExit(str(stop)) from None
    except KeyboardInterrupt:  # a second Ctrl-C while withdrawing: the manifest is written all the same
        progress.say(f"stopped; manifest: {manifest.path}", always=True)
        return 130
    if not single or code:
        counts = manifest.counts()
        summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        progress.say(f"{summary or 'nothing run'}; manifest: {manifest.path}", always=True)
    return code
