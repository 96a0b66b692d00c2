"""ComfyUI's own browser front end, driven headless with Playwright: what a user does by hand.

Optional: needs `pip install playwright` and a Chromium (Playwright's download, the Debian package
`chromium`, or FLOAT_CHROMIUM=/path/to/chrome). `frontend_unavailable()` says why it cannot run, for a
pytest skip.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import time
from pathlib import Path

from .server import ComfyServer

VIEWPORT = {"width": 1800, "height": 1100}


def chromium_path() -> str | None:
    """A Chromium to run: FLOAT_CHROMIUM, else one on PATH; None means Playwright's own download."""
    return os.environ.get("FLOAT_CHROMIUM") or next(
        (path for name in ("chromium", "chromium-browser", "google-chrome") if (path := shutil.which(name))), None
    )


def frontend_unavailable() -> str | None:
    if importlib.util.find_spec("playwright") is None:
        return "the front-end checks need Playwright: pip install playwright"
    if chromium_path() is None and not (Path.home() / ".cache" / "ms-playwright").is_dir():
        return "the front-end checks need Chromium: install it (apt install chromium) or set FLOAT_CHROMIUM"
    return None


class FrontEnd:
    """A browser page on a running ComfyServer; `errors` collects the page's uncaught errors."""

    def __init__(self, server: ComfyServer):
        self.server = server
        self.errors: list[str] = []

    def __enter__(self) -> FrontEnd:
        from playwright.sync_api import sync_playwright

        self._playwright = sync_playwright().start()
        self._browser = self._playwright.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        self.page = self._browser.new_page(viewport=VIEWPORT)
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.goto(self.server.url)
        self.page.wait_for_function("window.app && window.app.graph && window.app.canvas", timeout=60_000)
        time.sleep(2)  # the first-run dialogs open after the app object exists
        self.page.keyboard.press("Escape")
        return self

    def __exit__(self, *exc_info) -> None:
        self._browser.close()
        self._playwright.stop()

    def load(self, workflow: dict) -> None:
        """What dropping a workflow file on the page (or choosing a template) does."""
        self.page.evaluate("async (workflow) => { await window.app.loadGraphData(workflow); }", workflow)
        time.sleep(0.5)

    def prompt(self) -> dict:
        """The API prompt the front end would queue for the loaded graph."""
        return self.page.evaluate("async () => (await window.app.graphToPrompt()).output")

    def queue(self, timeout: float = 120.0) -> None:
        """Press Run and wait until ComfyUI's queue is empty again."""
        self.page.evaluate("async () => { await window.app.queuePrompt(0, 1); }")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            time.sleep(0.5)
            if not self.server.busy():
                time.sleep(0.5)  # let the last websocket messages reach the page
                return
        raise TimeoutError(f"the queue did not empty within {timeout} s")

    def widget_text(self, node_type: str, widget: str) -> str | None:
        return self.page.evaluate(
            """([type, name]) => {
                const node = window.app.graph._nodes.find((n) => n.type === type);
                const widget = node && node.widgets && node.widgets.find((w) => w.name === name);
                return widget ? (widget.element ? widget.element.value : widget.value) : null;
            }""",
            [node_type, widget],
        )

    def screenshot(self, path: Path) -> None:
        """The loaded graph alone: dialogs, banners and the minimap removed, the view fitted to the nodes."""
        self.page.evaluate(
            """async () => {
                document.querySelectorAll('.p-toast, .p-dialog-mask, .minimap-main-container').forEach((e) => e.remove());
                await window.app.extensionManager.command.execute('Comfy.Canvas.FitView');
            }"""
        )
        time.sleep(1)
        box = self.page.evaluate(
            """() => {
                const canvas = window.app.canvas, rect = canvas.canvas.getBoundingClientRect();
                let [x0, y0, x1, y1] = [Infinity, Infinity, -Infinity, -Infinity];
                for (const node of window.app.graph._nodes) {
                    const [x, y] = canvas.ds.convertOffsetToCanvas([node.pos[0], node.pos[1] - 32]);
                    const [x2, y2] = canvas.ds.convertOffsetToCanvas([node.pos[0] + node.size[0], node.pos[1] + node.size[1]]);
                    [x0, y0, x1, y1] = [Math.min(x0, x), Math.min(y0, y), Math.max(x1, x2), Math.max(y1, y2)];
                }
                return {x: rect.left + x0 - 12, y: rect.top + y0 - 12, width: x1 - x0 + 24, height: y1 - y0 + 24};
            }"""
        )
        self.page.screenshot(path=str(path), clip=box, type="jpeg", quality=85)
