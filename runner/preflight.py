"""Before a batch: which servers are up and have every node type the workflow uses."""

from __future__ import annotations

import threading

from .server import Garbled, Refused, Server, Unreachable


def check(server: Server, node_types: set[str]) -> str | None:
    """None when `server` can run the workflow, else why not."""
    try:
        server.queue(timeout=10)
    except Garbled as exc:
        return f"does not answer as ComfyUI does ({exc})"
    except Unreachable as exc:
        return f"not reachable ({exc})"
    except Refused:
        pass  # answers, without /queue: an older server; /prompt decides
    try:
        missing = server.missing_node_types(node_types)
    except Unreachable as exc:
        return f"not reachable ({exc})"
    if missing:
        return "does not have the node type" + ("s " if len(missing) > 1 else " ") + ", ".join(sorted(missing))
    return None


def usable(servers: list[Server], node_types: set[str], say) -> list[Server]:
    """The servers that can run the workflow, checked side by side; `say` hears about the others."""
    verdicts: dict[str, str | None] = {}

    def one(server: Server) -> None:
        verdicts[server.url] = check(server, node_types)

    threads = [threading.Thread(target=one, args=(server,), daemon=True) for server in servers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    good = []
    for server in servers:
        verdict = verdicts.get(server.url, "did not answer the checks in time")
        if verdict is None:
            good.append(server)
        else:
            say(f"server {server.url}: {verdict}; not used")
    return good
