"""The pack's server routes (/sdbridge/...), for the web extension.

Each route is one small handler function; `register` lists them all, and `install` hands them
to ComfyUI's server (through runtime; a no-op outside ComfyUI). No route ever returns a key.
"""

from __future__ import annotations

from . import runtime
from .hosted import sinkin


def _json(data: dict, status: int = 200):
    from aiohttp import web  # ComfyUI's server library; imported only when a route answers

    return web.json_response(data, status=status)


async def sinkin_catalog(request):
    """GET /sdbridge/sinkin/catalog[?refresh=1]: SinkIn's model and LoRA choices, their age,
    and why a refresh failed if it did."""
    refresh = request.query.get("refresh", "").lower() in ("1", "true", "yes")
    return _json(await sinkin.catalog_for_web(refresh=refresh))


def register(routes) -> None:
    """Add every route to an aiohttp RouteTableDef."""
    routes.get("/sdbridge/sinkin/catalog")(sinkin_catalog)


def install() -> bool:
    """Register the routes with ComfyUI's server; False when not running inside ComfyUI."""
    return runtime.add_routes(register)
