"""The batch's manifest: one JSON object per job, in a JSON-lines file beside the images.

Each job appears exactly once, written when its outcome is final (so a crash keeps what finished),
and the file is rewritten in job order at the end. Fields: index, status ("done", "failed",
"refused", "cancelled", "not run"), overrides, server, prompt_id, images (file names in the
folder), seconds (from queueing to the images saved), error (ComfyUI's reason), resent (the
servers a job left because they stopped answering, with the prompt id it had there), hosted
(the prompt's hosted runs from the server's /sdbridge/receipts: node_id, provider, model, seed,
request_ids, status, cost, basis, unit), hosted_cost (provider -> {total, unit, basis, unpriced},
each in its own unit), hosted_error (why hosted is null: not asked, no such route, garbled, no
answer).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .files import part


class Manifest:
    def __init__(self, path: Path):
        self.path = path
        self.entries: dict[int, dict] = {}

    def record(self, entry: dict) -> None:
        index = entry["index"]
        if index in self.entries:
            raise RuntimeError(f"job {index} is already in the manifest")  # never counted twice
        if not self.entries:  # the file (and folder) appear with the first outcome, this run's alone
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text("", encoding="utf-8")
        self.entries[index] = entry
        with self.path.open("a", encoding="utf-8") as file:
            file.write(json.dumps(entry, ensure_ascii=False) + "\n")

    def close(self) -> None:
        """Rewrite the file in job order (atomically: a reader sees the old or the new one)."""
        if not self.entries:
            return
        partial = part(self.path)
        partial.write_text("".join(json.dumps(self.entries[i], ensure_ascii=False) + "\n"
                                   for i in sorted(self.entries)), encoding="utf-8")
        os.replace(partial, self.path)

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for entry in self.entries.values():
            counts[entry["status"]] = counts.get(entry["status"], 0) + 1
        return counts
