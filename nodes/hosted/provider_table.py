"""Every hosted provider, declared once, as data: names, env vars, pages to send users to, what
its key is called, its documented rate limits. Credentials, the HTTP layer's messages, the
routes (and through them the web extension), the example workflows and the tests all read this
table; nothing else names a provider's env vars or pages.

A new provider is one entry here, one folder in providers/, and one fake in tests/fakes/
(CONTRIBUTING.md walks through it).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Provider:
    id: str                 # key in the key file and in routes
    name: str               # shown to users
    key_env: str            # env var holding the API key
    base_env: str           # env var overriding the base URL
    default_base: str
    key_page: str           # where a user gets a key
    billing_page: str       # where a user tops up credits
    key_label: str = "API key"   # what the provider calls its key
    rate_limits: str = ""   # the documented limits, quoted when a provider answers 429
    rate_env: str = ""      # env var setting the pace of generation requests, "5/60"
    rate_plan: tuple[int, float] | None = None  # the default pace: (requests, per seconds)
    credit_unit: str = "credits"  # what its balance and prices count in; caps and totals never mix two

    def for_web(self) -> dict:
        """What the web extension may know: everything here (no key is ever part of it)."""
        return asdict(self)
SEGMIND = Provider(
    "segmind", "Segmind", key_env="SEGMIND_API_KEY", base_env="SEGMIND_API_BASE",
    default_base="https://api.segmind.com", key_page="https://cloud.segmind.com/console/api-keys",
    billing_page="https://cloud.segmind.com/console/billing",
    rate_limits="free Segmind accounts allow 5 requests a minute, pro accounts 50",
    rate_env="SDBRIDGE_SEGMIND_RATE", rate_plan=(50, 60.0),  # pro; a free account's 429s teach 5/60
    credit_unit="credits (US$)")  # docs.segmind.com, "Pricing and Billing": in dollars
SINKIN = Provider(
    "sinkin", "SinkIn", key_env="SINKIN_API_KEY", base_env="SINKIN_API_BASE", default_base="https://sinkin.ai",
    key_page="https://sinkin.ai/api", billing_page="https://sinkin.ai/api", key_label="access token",
    rate_env="SDBRIDGE_SINKIN_RATE")  # no documented limit: only 429s set the pace
PROVIDERS: dict[str, Provider] = {p.id: p for p in (SEGMIND, SINKIN)}
