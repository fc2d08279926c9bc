"""The providers' nodes, one folder each (wire format, API calls, nodes); their facts are in provider_table."""

from __future__ import annotations

