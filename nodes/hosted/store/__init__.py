"""What the pack keeps on disk about requests: the journal of submitted jobs, and the results already paid for."""

from __future__ import annotations

