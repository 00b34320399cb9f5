"""A small headless-Chromium driver over the Chrome DevTools Protocol (no Selenium).

Starts Debian's ``chromium`` with ``--remote-debugging-port=0`` and a fresh profile, reads the
DevTools websocket URL from the profile's ``DevToolsActivePort`` file, opens a page target
and speaks CDP over an aiohttp websocket: navigate, evaluate JavaScript, wait for a
condition, capture a PNG screenshot.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
)


def chromium_binary() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


class Browser:
    """One headless Chromium process and one page; use as an async context manager."""

    def __init__(self, binary: str, *, width: int = 1280, height: int = 1600) -> None:
        self.binary = binary
        self.width, self.height = width, height
        self._profile = tempfile.TemporaryDirectory(prefix="hub-chromium-", ignore_cleanup_errors=True)
        self._proc: subprocess.Popen[bytes] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._ids = itertools.count(1)
        self.console: list[str] = []

    async def __aenter__(self) -> Browser:
        profile = Path(self._profile.name)
        self._proc = subprocess.Popen(
            [
                self.binary,
                *CHROMIUM_FLAGS,
                f"--user-data-dir={profile}",
                "--remote-debugging-port=0",
                f"--window-size={self.width},{self.height}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not port_file.exists() or not port_file.read_text().strip():
            if self._proc.poll() is not None:
                raise RuntimeError(f"chromium exited with {self._proc.returncode}")
            if time.monotonic() > deadline:
                raise TimeoutError("chromium did not open its DevTools port")
            await asyncio.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        self._session = aiohttp.ClientSession()
        async with self._session.get(f"http://127.0.0.1:{port}/json/list") as resp:
            targets = await resp.json()
        page = next(t for t in targets if t.get("type") == "page")
        self._ws = await self._session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=64 * 2**20)
        await self.send("Page.enable")
        await self.send("Runtime.enable")
        await self.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": self.width, "height": self.height, "deviceScaleFactor": 1, "mobile": False},
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._session is not None:
            await self._session.close()
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._profile.cleanup()

    async def send(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send one CDP command and return its result (events in between are kept)."""
        assert self._ws is not None
        msg_id = next(self._ids)
        await self._ws.send_str(json.dumps({"id": msg_id, "method": method, "params": params or {}}))
        while True:
            msg = await asyncio.wait_for(self._ws.receive(), timeout=60)
            if msg.type != aiohttp.WSMsgType.TEXT:
                raise RuntimeError(f"DevTools connection closed: {msg.type}")
            data = json.loads(msg.data)
            if data.get("method") == "Runtime.consoleAPICalled":
                args = data["params"].get("args", [])
                self.console.append(" ".join(str(a.get("value", a.get("description", ""))) for a in args))
            elif data.get("method") == "Runtime.exceptionThrown":
                self.console.append("exception: " + json.dumps(data["params"]["exceptionDetails"])[:500])
            if data.get("id") == msg_id:
                if "error" in data:
                    raise RuntimeError(f"{method}: {data['error']}")
                return data.get("result", {})

    async def goto(self, url: str) -> None:
        await self.send("Page.navigate", {"url": url})

    async def evaluate(self, expression: str) -> Any:
        result = await self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in result:
            raise RuntimeError(f"script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout: float = 30.0) -> Any:
        """Poll ``expression`` until it is truthy; return its value."""
        deadline = time.monotonic() + timeout
        while True:
            value = await self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out waiting for {expression!r}; console: {self.console[-5:]}")
            await asyncio.sleep(0.1)

    # --- the keyboard (every key a user presses, nothing set by script) ------------------------

    KEYS: dict[str, tuple[str, int, str]] = {  # key -> (code, windowsVirtualKeyCode, text)
        "Tab": ("Tab", 9, ""),
        "Enter": ("Enter", 13, "\r"),
        " ": ("Space", 32, " "),
        "ArrowDown": ("ArrowDown", 40, ""),
        "ArrowUp": ("ArrowUp", 38, ""),
    }

    async def press(self, key: str, *, shift: bool = False) -> None:
        """Press and release one key (``Tab``, ``Enter``, ``" "``, ``ArrowDown``, ``ArrowUp``)."""
        code, vk, text = self.KEYS[key]
        base = {"key": key, "code": code, "windowsVirtualKeyCode": vk, "modifiers": 8 if shift else 0}
        await self.send(
            "Input.dispatchKeyEvent",
            {**base, "type": "keyDown" if text else "rawKeyDown", **({"text": text} if text else {})},
        )
        await self.send("Input.dispatchKeyEvent", {**base, "type": "keyUp"})

    async def type(self, text: str) -> None:
        """Type ``text`` into the focused control (as an input method does)."""
        await self.send("Input.insertText", {"text": text})

    async def focused(self) -> str:
        return await self.evaluate("document.activeElement ? document.activeElement.id : ''")

    async def tab_to(self, element_id: str, limit: int = 60) -> None:
        """Press Tab until the element ``element_id`` has the focus (fails after ``limit`` presses)."""
        for _ in range(limit):
            if await self.focused() == element_id:
                return
            await self.press("Tab")
        raise AssertionError(f"Tab never reached #{element_id} (focus on #{await self.focused()})")

    async def screenshot(self, path: Path) -> Path:
        """A full-page PNG screenshot."""
        metrics = await self.send("Page.getLayoutMetrics")
        size = metrics.get("cssContentSize") or metrics["contentSize"]
        shot = await self.send(
            "Page.captureScreenshot",
            {
                "format": "png",
                "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1},
            },
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))
        return path
