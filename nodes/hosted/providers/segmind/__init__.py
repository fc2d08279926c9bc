"""Segmind: the documented endpoints, its v1 and v2 (queue) APIs, and the five nodes."""

from __future__ import annotations

