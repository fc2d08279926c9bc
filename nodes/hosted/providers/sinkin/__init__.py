"""SinkIn: its catalog of models and LoRAs, its form API, and the two nodes."""

from __future__ import annotations

