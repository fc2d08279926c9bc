"""What the pack knows about each hosted provider, as data: names, env vars, pages to send
users to. The HTTP layer and credentials read this; nothing else hard-codes a provider."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Provider:
    id: str                 # key in the key file and in routes
    name: str               # shown to users
    key_env: str            # env var holding the API key
    base_env: str           # env var overriding the base URL
    default_base: str
    key_page: str           # where a user gets a key
    billing_page: str       # where a user tops up credits


SEGMIND = Provider(
    id="segmind",
    name="Segmind",
    key_env="SEGMIND_API_KEY",
    base_env="SEGMIND_API_BASE",
    default_base="https://api.segmind.com",
    key_page="https://cloud.segmind.com/console/api-keys",
    billing_page="https://cloud.segmind.com/console/billing",
)

SINKIN = Provider(
    id="sinkin",
    name="SinkIn",
    key_env="SINKIN_API_KEY",
    base_env="SINKIN_API_BASE",
    default_base="https://sinkin.ai",
    key_page="https://sinkin.ai/api",
    billing_page="https://sinkin.ai/api",
)

PROVIDERS = {p.id: p for p in (SEGMIND, SINKIN)}
