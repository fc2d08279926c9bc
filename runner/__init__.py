"""SD Bridge's batch runner: one workflow, many jobs, one or more ComfyUI servers (queue API).

Run it as `python example_workflows/api/submit.py ...` or `python -m runner ...` from the
repository root. Needs websocket-client and tqdm (runner/requirements.txt); without them it polls
and draws a plain bar.

    cli.py        the command line: flags, checks of every input, the run, exit codes
    jobs.py       the batch: the workflow and each job's overrides (BadInput when they are wrong)
    schedule.py   every decision, pure: step(state, event, now) -> (state, actions)
    batch.py      carries out the actions on threads and sockets, feeds back events
    server.py     one server's routes, with timeouts (Unreachable, Garbled, Refused, TooLarge)
    listen.py     one server's websocket (websocket-client) as events
    files.py      safe file names in the output folder, whole and bounded downloads
    preflight.py  which servers are up and have the workflow's node types
    reasons.py    ComfyUI's reasons (refusals, failed runs, /history entries) as lines
    hosted.py     the pack's receipts of a prompt (/sdbridge/receipts) as the manifest's hosted runs
    manifest.py   one JSON line per job
    progress.py   printed lines and the progress bar (tqdm, or plain text)
"""
