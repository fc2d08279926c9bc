"""The pack's routes served by a real aiohttp app on 127.0.0.1 (what ComfyUI's server is)."""

from __future__ import annotations

import asyncio

from aiohttp import ClientSession, web

from sdbridge.nodes import routes


def serve(script):
    """Run `script(session, base_url)` against an app holding the pack's routes."""

    async def main():
        table = web.RouteTableDef()
        routes.register(table)
        app = web.Application()
        app.add_routes(table)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        try:
            async with ClientSession() as session:
                return await script(session, f"http://127.0.0.1:{port}")
        finally:
            await runner.cleanup()

    return asyncio.run(main())


async def call(session, method, url, **kwargs):
    """(status, text) of one request."""
    async with session.request(method, url, **kwargs) as response:
        return response.status, await response.text()
