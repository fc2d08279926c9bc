"""The stand-in's table entry: a shipped provider adds this line to PROVIDERS in
nodes/hosted/provider_table.py (test_third_provider.py adds it for the test's length)."""

from __future__ import annotations

from sdbridge.nodes.hosted.provider_table import Provider

STANDIN = Provider("standin", "Stand-in", key_env="STANDIN_API_KEY", base_env="STANDIN_API_BASE",
                   default_base="https://queue.standin.invalid", key_page="https://standin.invalid/keys",
                   billing_page="https://standin.invalid/billing", rate_limits="10 requests a minute")
