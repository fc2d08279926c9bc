"""The queue-API runner behind submit.py (standard library only): a batch of jobs from one
workflow, spread over one or more ComfyUI servers.

    jobs.py       the batch: the workflow and each job's overrides
    server.py     one server's routes, with timeouts (Unreachable, Refused)
    preflight.py  which servers are up and have the workflow's node types
    websocket.py  a small RFC 6455 client for /ws
    follow.py     one thread per server: our prompts' events, polling fallback, downloads
    batch.py      who gets the next job, re-sending, timeouts, Ctrl-C
    reasons.py    ComfyUI's reasons (refusals, failed runs) as lines
    manifest.py   one JSON line per job
    progress.py   printed lines and the progress bar
"""
