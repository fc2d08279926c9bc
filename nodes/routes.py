"""The pack's server routes (/sdbridge/...), for the web extension.

Each route is one small handler function; `register` lists them all, and `install` hands them
to ComfyUI's server (through runtime; a no-op outside ComfyUI). No route ever returns a key.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from datetime import datetime

from . import declared_settings, pack_settings, runtime
from . import images as imaging
from .errors import BudgetExceeded, InputError, ProviderError
from .hosted.keys import credentials
from .hosted.keys.redaction import redact
from .hosted.money import budget, caps
from .hosted.money import ledger as spending
from .hosted.node import hosted_classes
from .hosted.provider_table import PROVIDERS
from .hosted.providers.segmind import api as segmind_api
from .hosted.providers.sinkin import api as sinkin_api
from .hosted.providers.sinkin import catalog as sinkin_catalog
from .hosted.providers.sinkin import covers as sinkin_covers
from .hosted.providers.sinkin import nodes as sinkin
from .hosted.store import receipts, result_cache

MAX_KEY_BODY = 4096  # bytes; a key route takes a short JSON object and nothing more
MAX_PROMPT_BODY = 8 * 1024 * 1024  # bytes; a prompt to price (prompts with long texts stay far below)
PARSE_ON_LOOP = 64 * 1024  # bytes; a larger body is parsed on a worker thread
REFRESH_INTERVAL = 10.0  # seconds between two reads of SinkIn's catalog on request
_last_refresh = float("-inf")


def _json(data: dict, status: int = 200):
    from aiohttp import web  # ComfyUI's server library; imported only when a route answers

    return web.json_response(data, status=status)


async def _text_field(request, field: str, example: str, what: str):
    """The string `field` of a small JSON body, or an error response that says what to send."""
    body, refused = await _json_body(request, MAX_KEY_BODY, what)
    if refused is not None and refused.status != 400:
        return refused
    value = body.get(field) if isinstance(body, dict) else None
    if not isinstance(value, str):
        return _json({"error": f'send a JSON object such as {{"{field}": "{example}"}}'}, 400)
    if value and not value.strip():
        return _json({"error": f"the {field} is only spaces; send an empty {field} to clear it"}, 400)
    return value.strip()


async def _json_body(request, limit: int, what: str):
    """(the JSON body, None) or (None, an error response that says what to send).

    The whole body is read (until the client ends it), but never more than `limit` bytes,
    whatever Content-Length says (a chunked body has none), and must be sent as
    application/json: a browser page on another site cannot send that without the server's
    consent, so these routes do not rely on ComfyUI's origin check alone. A large body is
    parsed on a worker thread, so other routes keep answering meanwhile."""
    if request.content_type != "application/json":
        return None, _json({"error": "send the body as application/json"}, 415)
    if (request.content_length or 0) > limit:
        return None, _json({"error": f"the request is too large for {what}"}, 413)
    raw = bytearray()
    while len(raw) <= limit:  # read() answers what has arrived: a large body comes in pieces
        piece = await request.content.read(limit + 1 - len(raw))
        if not piece:
            break
        raw += piece
    if len(raw) > limit:
        return None, _json({"error": f"the request is too large for {what}"}, 413)
    try:
        if len(raw) > PARSE_ON_LOOP:
            return await asyncio.to_thread(json.loads, bytes(raw)), None
        return json.loads(bytes(raw)), None
    except (ValueError, RecursionError):
        return None, _json({"error": f"the body is not JSON; send {what}"}, 400)


def _flag(request, name: str) -> bool:
    return request.query.get(name, "").lower() in ("1", "true", "yes")


async def sinkin_models(request):
    """GET /sdbridge/sinkin/catalog[?refresh=1|?cached=1]: SinkIn's model and LoRA choices, their
    age, why a refresh failed if it did, and which node widgets show them. `cached` answers at
    once from what is on disk (the page is loading); `refresh` reads SinkIn now, at most once
    every REFRESH_INTERVAL seconds (each read is a keyed call to SinkIn)."""
    global _last_refresh
    refresh = _flag(request, "refresh")
    if refresh and time.monotonic() - _last_refresh < REFRESH_INTERVAL:
        refresh = False  # the list read a moment ago is the answer
    elif refresh:
        _last_refresh = time.monotonic()
    answer = await sinkin_catalog.catalog_for_web(refresh=refresh, read_sinkin=not _flag(request, "cached"),
                                                   policies=sinkin_api.POLICIES.outside_a_run())
    return _json({**answer, "nodes": sinkin.catalog_widgets(), "cover_route": sinkin_covers.ROUTE})


async def sinkin_cover(request):
    """GET /sdbridge/sinkin/cover/{entry_id}: the thumbnail of a catalog model's or LoRA's cover
    (fetched from SinkIn once, then from disk). Only an id of the catalog is looked up: the page
    never names a URL. 404 for an id without a cover, 502 when SinkIn's picture did not come."""
    from aiohttp import web

    try:
        picture = await sinkin_covers.cover(request.match_info.get("entry_id", ""))
    except InputError as exc:
        return _json({"error": str(exc)}, 404)
    except ProviderError as exc:
        return _json({"error": redact(str(exc))}, 502)
    except Exception as exc:  # noqa: BLE001 - an interrupt or a disk failure: the picker shows the id alone
        return _json({"error": redact(f"SinkIn: the cover could not be shown ({type(exc).__name__}).")}, 503)
    return web.Response(body=picture, content_type=sinkin_covers.MEDIA_TYPE,
                        headers={"Cache-Control": "private, max-age=86400", "X-Content-Type-Options": "nosniff"})


async def providers(request):
    """GET /sdbridge/providers: the provider table (names, env vars, pages, what each key is
    called), so the web extension keeps no list of its own. Never a key."""
    return _json({"providers": [provider.for_web() for provider in PROVIDERS.values()]})


def _key_status() -> dict:
    """Whether each provider has a key and where it comes from; never the key itself."""
    status = {}
    for provider in PROVIDERS.values():
        source = credentials.key_source(provider)
        status[provider.id] = {"set": source is not None, "source": source, "env": provider.key_env}
    return status


async def key_status(request):
    """GET /sdbridge/keys: {provider: {set, source, env}} for the settings dialog."""
    return _json(_key_status())


async def store_key(request):
    """POST /sdbridge/keys/{provider} with {"key": "..."}: save the key in the user's key file,
    or clear it with an empty key. Answers the status, never the key."""
    provider = PROVIDERS.get(request.match_info.get("provider", ""))
    if provider is None:
        return _json({"error": f"unknown provider; use one of: {', '.join(PROVIDERS)}"}, 404)
    key = await _text_field(request, "key", "...", "a key")
    if not isinstance(key, str):
        return key
    problem = credentials.check_key_shape(key) if key else None
    if problem:
        return _json({"error": problem}, 400)
    try:
        # Off the event loop: the save may wait for another process's save (the file lock).
        await asyncio.to_thread(credentials.store_key, provider, key or None)
    except OSError as exc:  # a full disk, or a file another program keeps open (Windows)
        return _json({"error": redact(str(exc))}, 503)
    status = _key_status()[provider.id]
    if status["source"] == "environment":
        status["note"] = f"{provider.key_env} is set and wins over the saved key"
    return _json(status)


async def settings(request):
    """GET /sdbridge/settings: the pack's server-side settings (declared_settings.declared()): name,
    label, help, what applies when unset, the value and where it comes from."""
    return _json({"settings": [setting.for_web() for setting in declared_settings.declared()]})


async def store_setting(request):
    """POST /sdbridge/settings/{name} with {"value": "..."}: save a setting (empty clears it),
    after the setting's own check."""
    setting = declared_settings.find(request.match_info.get("name", ""))
    if setting is None:
        known = ", ".join(s.name for s in declared_settings.declared())
        return _json({"error": f"unknown setting; use one of: {known}"}, 404)
    text = await _text_field(request, "value", setting.example, "a setting")
    if not isinstance(text, str):
        return text
    problem = setting.check(text)
    if problem:
        return _json({"error": f"{setting.label}: {problem}"}, 400)
    try:
        await asyncio.to_thread(pack_settings.store, setting.name, text or None)  # may wait for the lock
    except OSError as exc:
        return _json({"error": str(exc)}, 503)
    entry = setting.for_web()
    if entry["source"] == "environment":
        entry["note"] = f"{setting.name} is set in the environment and wins over this setting"
    return _json(entry)


def _caps() -> dict:
    """The caps in force, for the total the web extension shows (an unreadable cap: None and why).
    Each cap applies to each provider in its own unit; "spent_today" is a figure only while one
    provider spent today (two units are never added), "by_provider" has each."""
    counted = spending.counted_today()
    found = {"spent_today": next(iter(counted.values())) if len(counted) == 1 else (0.0 if not counted else None),
             "by_provider": {p: {"unit": provider.credit_unit, "spent_today": counted.get(p, 0.0)}
                             for p, provider in PROVIDERS.items()},
             "applies_to": "each provider separately, in its own unit"}
    for key, name in (("per_run", caps.RUN_CAP), ("per_day", caps.DAY_CAP)):
        try:
            found[key] = caps.cap(name)
        except BudgetExceeded as exc:
            found[key], found[f"{key}_problem"] = None, str(exc)
    return found


def estimate_answer(prompt: dict) -> dict:
    """The estimate route's answer: the prompt's estimate, the caps, and the server's verdict
    (the page shows it; it decides nothing)."""
    found = budget.estimate_prompt(prompt, hosted_classes(), result_cache.cached_inputs)
    return {**found, "caps": _caps(), "verdict": budget.prompt_verdict(found).as_dict()}


async def estimate(request):
    """POST /sdbridge/estimate with {"prompt": {...}} (what /prompt takes): what each hosted node
    will cost, the total per provider (each in its unit), which nodes have no estimate, the caps
    in force, and whether the caps let it run ("verdict"). Reads only the pack's own files:
    nothing is sent to a provider."""
    body, refused = await _json_body(request, MAX_PROMPT_BODY, 'a prompt such as {"prompt": {...}}')
    if refused is not None:
        return refused
    prompt = body.get("prompt") if isinstance(body, dict) else None
    if not isinstance(prompt, dict):
        return _json({"error": 'send {"prompt": {...}}: an API-format prompt, what /prompt takes'}, 400)
    problem = _prompt_problem(prompt)
    if problem:
        return _json({"error": problem}, 400)
    # Pricing reads the ledger and the result cache's index for each hosted node: seconds for a
    # large graph, so it runs off the event loop (the server keeps answering meanwhile), on one
    # thread of its own: the page asks again at each edit, and those estimates wait their turn
    # rather than fill the worker threads every other route and ComfyUI itself share.
    answer = await asyncio.get_running_loop().run_in_executor(_pricing_thread(), estimate_answer, prompt)
    return _json(answer)


_pricer: list = []  # the estimate's executor, made on first use (importing starts no thread)
_pricer_lock = threading.Lock()


def _pricing_thread():
    from concurrent.futures import ThreadPoolExecutor

    with _pricer_lock:
        if not _pricer:
            _pricer.append(ThreadPoolExecutor(max_workers=1, thread_name_prefix="sdbridge-estimate"))
        return _pricer[0]


def _prompt_problem(prompt: dict) -> str | None:
    """Why an API-format prompt cannot be priced, or None: each node an object whose
    class_type is a node's name, as /prompt requires."""
    for node_id, node in prompt.items():
        if not isinstance(node, dict):
            return f'node {str(node_id)[:40]!r} is not an object; send {{"class_type": "...", "inputs": {{...}}}}'
        if not isinstance(node.get("class_type"), str):
            return (f"node {str(node_id)[:40]!r} has no class_type string (the node's name, such as "
                    '"SDBridgeSinkInTxt2Img"); send the prompt as /prompt takes it')
    return None


async def cache_stats(request):
    """GET /sdbridge/result-cache: whether the result cache is on, what it holds, its bound."""
    return _json(result_cache.stats())


async def clear_cache(request):
    """POST /sdbridge/result-cache/clear with {}: remove every stored result; {files, bytes}."""
    body, refused = await _json_body(request, MAX_KEY_BODY, "clearing the cache")
    if refused is not None:
        return refused
    if not isinstance(body, dict):
        return _json({"error": "send a JSON object: {}"}, 400)
    files, size = await asyncio.to_thread(result_cache.clear)
    return _json({"files": files, "bytes": size})


RECEIPTS_DEFAULT = 50  # receipts one GET answers unless `limit` says otherwise
_PROMPT_ID = 200         # characters a prompt id may have (ComfyUI's are UUIDs)


async def list_receipts(request):
    """GET /sdbridge/receipts[?limit=N][&prompt_id=ID]: the newest receipts first (at most
    `limit`, 1 to receipts.MAX_LIMIT, default RECEIPTS_DEFAULT), only the prompt's when asked,
    and the hosted runs of this process still going (`in_flight`). Each receipt names the unit of
    its cost (its provider's, from the table), so a reader never adds two units."""
    unknown = sorted(set(request.query) - {"limit", "prompt_id"})
    if unknown:
        return _json({"error": f"unknown parameter {unknown[0][:40]!r}; use limit and prompt_id"}, 400)
    text = request.query.get("limit", str(RECEIPTS_DEFAULT)).strip()
    if not text.isdigit() or not 1 <= int(text) <= receipts.MAX_LIMIT:
        return _json({"error": f"limit must be a whole number from 1 to {receipts.MAX_LIMIT}, such as "
                               f"limit={RECEIPTS_DEFAULT}"}, 400)
    prompt_id = request.query.get("prompt_id")
    if prompt_id is not None and not (0 < len(prompt_id) <= _PROMPT_ID and prompt_id.isprintable()):
        return _json({"error": f"prompt_id must be a prompt's id (1 to {_PROMPT_ID} printable characters), "
                               "as /prompt answered it"}, 400)
    found = [receipts.with_unit(r) for r in await asyncio.to_thread(receipts.read, int(text), prompt_id)]
    running = [run for run in receipts.in_flight() if prompt_id is None or run.get("prompt_id") == prompt_id]
    return _json({"receipts": found, "in_flight": running})


async def spending_today(request):
    """GET /sdbridge/spending: for the SD Bridge panel, each provider's day in its own unit (what it
    spent, and what the day cap compares: spent plus what requests under way hold; two units are
    never added), its last known balance (from the receipts), its usage page, and the caps."""
    spent, counted = await asyncio.to_thread(lambda: (spending.spent_today(), spending.counted_today()))
    balances = receipts.last_balances(await asyncio.to_thread(receipts.read, receipts.MAX_LIMIT))
    rows = [{"id": p.id, "name": p.name, "unit": p.credit_unit, "spent_today": spent.get(p.id, 0.0),
             "counted_today": counted.get(p.id, 0.0), "balance": balances.get(p.id), "usage_page": p.billing_page}
            for p in PROVIDERS.values()]
    return _json({"day": spending.today(), "providers": rows, "caps": _caps()})


def _age(receipt: dict) -> float:
    """Seconds since the receipt was written (infinite when its time does not read)."""
    try:
        return time.time() - datetime.fromisoformat(str(receipt.get("time"))).timestamp()
    except ValueError:
        return float("inf")


def _save_fetched(request_id: str, pictures) -> list[str]:
    """The provider's bytes of each image, as received, in output/sdbridge/; their names."""
    folder = runtime.output_directory() / "sdbridge"
    folder.mkdir(parents=True, exist_ok=True)
    stem = re.sub(r"[^A-Za-z0-9_-]", "_", request_id)  # a file name on every system
    names = []
    for index, picture in enumerate(pictures):
        name = f"{stem}_{index}.{imaging.suffix_of(picture.raw)}"
        (folder / name).write_bytes(picture.raw)
        names.append(f"sdbridge/{name}")
    return names


async def fetch_again(request):
    """POST /sdbridge/receipts/fetch-again with {"request_id": "..."}: the images of a Segmind
    v2 request a receipt names, asked again from Segmind while it holds them (its status and
    result URLs: no generation request, no new charge), saved in ComfyUI's output folder."""
    request_id = await _text_field(request, "request_id", "req-1", "a request id")
    if not isinstance(request_id, str):
        return request_id
    found = await asyncio.to_thread(receipts.read, receipts.MAX_LIMIT)
    receipt = next((r for r in found if r.get("provider") == "segmind" and request_id in r.get("request_ids", [])), None)
    if receipt is None:
        return _json({"error": f"no recent receipt names Segmind request {request_id[:60]!r}; only a request a "
                               "receipt shows can be fetched again"}, 404)
    if _age(receipt) > segmind_api.RESULT_WINDOW:
        return _json({"error": f"request {request_id[:60]} is older than the {segmind_api.RESULT_WINDOW // 60} "
                               "minutes Segmind keeps results; it cannot be fetched again"}, 410)
    try:
        pictures = await segmind_api.fetch_again(request_id, segmind_api.POLICIES.outside_a_run())
        saved = await asyncio.to_thread(_save_fetched, request_id, pictures)
    except ProviderError as exc:
        return _json({"error": str(exc)}, 502 if exc.status is None or exc.status >= 500 else 409)
    except OSError as exc:
        return _json({"error": redact(str(exc))}, 503)
    return _json({"saved": saved, "note": f"No new generation request was sent: Segmind's result of request "
                                          f"{request_id} was asked again, at no new charge."})


def register(routes) -> None:
    """Add every route to an aiohttp RouteTableDef."""
    routes.get("/sdbridge/providers")(providers)
    routes.get("/sdbridge/sinkin/catalog")(sinkin_models)
    routes.get(sinkin_covers.ROUTE + "{entry_id}")(sinkin_cover)
    routes.get("/sdbridge/keys")(key_status)
    routes.post("/sdbridge/keys/{provider}")(store_key)
    routes.get("/sdbridge/settings")(settings)
    routes.post("/sdbridge/settings/{name}")(store_setting)
    routes.post("/sdbridge/estimate")(estimate)
    routes.get("/sdbridge/result-cache")(cache_stats)
    routes.post("/sdbridge/result-cache/clear")(clear_cache)
    routes.get("/sdbridge/receipts")(list_receipts)
    routes.get("/sdbridge/spending")(spending_today)
    routes.post("/sdbridge/receipts/fetch-again")(fetch_again)


def install() -> bool:
    """Register the routes with ComfyUI's server; False when not running inside ComfyUI."""
    return runtime.add_routes(register)
