"""HTTP for every provider: the retry and poll policies, one exchange on a worker thread, the client, submit-and-poll, safe downloads, rate limits."""

from __future__ import annotations

