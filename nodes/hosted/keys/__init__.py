"""Keys: where each provider's key and base URL come from, and keeping keys out of every text."""

from __future__ import annotations

