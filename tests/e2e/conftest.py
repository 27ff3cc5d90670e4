"""Browser tests: Playwright (async API) driving Debian's headless Chromium against a real server
(`live_server`, a `bookingtms serve` process). Data is set up through the API in-process (`client`):
both share the run's PostgreSQL and Redis.

Screenshots go to $BOOKINGTMS_SCREENSHOTS (default var/screenshots); the README's images are made
with BOOKINGTMS_SCREENSHOTS=docs/screenshots."""

from __future__ import annotations

import os
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = Path(os.environ.get("BOOKINGTMS_SCREENSHOTS", ROOT / "var" / "screenshots"))
if not SCREENSHOTS.is_absolute():
    SCREENSHOTS = ROOT / SCREENSHOTS

pytestmark = pytest.mark.xdist_group("browser")


def chromium_path() -> str:
    found = os.environ.get("BOOKINGTMS_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.fail("Debian's chromium is not installed: scripts/bootstrap installs it (apt-get install chromium)")
    return found


@pytest.fixture(scope="session")
async def browser():
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        instance = await playwright.chromium.launch(executable_path=chromium_path(), headless=True,
                                                    args=["--no-sandbox", "--disable-dev-shm-usage"])
        yield instance
        await instance.close()


@pytest.fixture
async def new_page(browser):
    """Opens pages in fresh browser contexts (separate cookie jars: separate people)."""
    contexts = []

    async def open_page(width: int = 1280, height: int = 860):
        context = await browser.new_context(viewport={"width": width, "height": height}, locale="en-US")
        context.set_default_timeout(15_000)
        contexts.append(context)
        return await context.new_page()

    yield open_page
    for context in contexts:
        await context.close()


async def screenshot(page, name: str, full_page: bool = True) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=full_page)
    return path


class _HostPage(BaseHTTPRequestHandler):
    """A business's own site on another origin: one page that pastes the widget's script tag."""

    html = b""

    def do_GET(self):  # noqa: N802 (http.server's name)
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.end_headers()
        self.wfile.write(self.html)

    def log_message(self, *args):
        pass


@pytest.fixture
def host_site():
    """Serves `html` from http://localhost:<another port>/ (a different origin from the live server's
    127.0.0.1) and answers its URL."""
    servers = []

    def serve(html: str) -> str:
        handler = type("HostPage", (_HostPage,), {"html": html.encode()})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://localhost:{server.server_address[1]}/"

    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()
