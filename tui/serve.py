"""`attnlab serve`: the dashboard in a web browser, one app process per tab (textual-serve).

Every tab trains in the one shared saves folder: a tab has no identity (a reload is a new process), so
a folder per tab would strand its saves the moment it closed; shared, the next tab resumes them from
the Saves tab and the command line sees them. `python -m tui.serve` is the per-tab app process.
"""

from __future__ import annotations

import html
import ipaddress
import shlex
import sys

from tui.app import AttnLab

LOOPBACK_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost")


class SessionApp(AttnLab):
    """The dashboard as one browser tab runs it: any way the tab ends stops training and saves `last`.

    AttnLab turns SIGTERM and SIGHUP into its quit action; closing the tab arrives as an exit request
    (the server's quit message), which must not skip the save either.
    """

    async def on_exit_app(self, message) -> None:
        """Closing the tab (the server sends quit), SIGTERM or SIGHUP: stop training, save `last`."""
        await self.stop_and_save()


def run_session() -> int:
    SessionApp().run()
    return 0


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve anywhere
        return False


def busy_text(limit: int) -> str:
    return (f"attnlab is already serving {limit} browser session{'s' if limit != 1 else ''}, the most it was "
            f"started with (--max-sessions {limit}). Each session trains on a CPU core of its own, so more "
            f"would slow every one of them. Close another attnlab tab and reload this page, or ask whoever "
            f"runs `attnlab serve` to raise --max-sessions.")


def busy_page(limit: int) -> str:
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>attnlab: all sessions in use</title></head>"
            "<body style='font-family: monospace; background: #0c181f; color: #eee; padding: 2em'>"
            f"<h1>attnlab: all sessions are in use</h1><p id='busy'>{html.escape(busy_text(limit))}</p>"
            "</body></html>")


def make_server(host: str, port: int, max_sessions: int):
    """A textual-serve Server for the dashboard that refuses tabs beyond max_sessions."""
    import aiohttp_jinja2
    from aiohttp import web
    from textual_serve.server import Server, to_int

    class AttnlabServer(Server):
        def __init__(self):
            command = f"{shlex.quote(sys.executable)} -m tui.serve"
            super().__init__(command, host=host, port=port, title="attnlab")
            self.max_sessions = max_sessions
            self.active = 0

        async def on_startup(self, app) -> None:
            print(f"attnlab: serving the dashboard on http://{host}:{port} (at most {max_sessions} "
                  f"session{'s' if max_sessions != 1 else ''}); Ctrl+C stops", flush=True)

        async def handle_index(self, request):
            if self.active >= self.max_sessions:
                return web.Response(status=503, text=busy_page(self.max_sessions), content_type="text/html")
            # the URLs the browser used, so a server bound to 0.0.0.0 still hands out reachable ones
            origin, ws = f"{request.scheme}://{request.host}", "wss" if request.scheme == "https" else "ws"
            context = {"font_size": to_int(request.query.get("fontsize", "16"), 16),
                       "app_websocket_url": f"{ws}://{request.host}/ws",
                       "config": {"static": {"url": f"{origin}/static/"}}, "application": {"name": "attnlab"}}
            return aiohttp_jinja2.render_template("app_index.html", request, context)

        async def handle_websocket(self, request):
            if self.active >= self.max_sessions:  # a tab that loaded the page before the last slot went
                socket = web.WebSocketResponse()
                await socket.prepare(request)
                await socket.send_bytes(("\r\n  " + busy_text(self.max_sessions) + "\r\n").encode())
                async for _ in socket:  # keep the text on screen until the tab goes
                    pass
                return socket
            self.active += 1
            try:
                return await super().handle_websocket(request)
            finally:
                self.active -= 1

    return AttnlabServer()


if __name__ == "__main__":
    sys.exit(run_session())
