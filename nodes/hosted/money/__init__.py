"""Money: what a run will cost (prices), what was spent (the ledger), the caps and the whole prompt's budget."""

from __future__ import annotations

