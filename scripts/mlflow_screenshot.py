"""Check the README's MLflow comparison recipe in a real browser, and keep a screenshot.

Starts ``mlflow server`` on loopback over a store, drives headless Chromium through the
DevTools protocol to the experiment's runs table with the README's search filter, groups the
runs by a tag (the UI's "Group by" menu, clicked as a user would), and saves a PNG. Prints
what the page showed (its run rows and group labels) so a caller can check it.

    python scripts/mlflow_screenshot.py --store sqlite:////abs/runs/mlflow.db \\
        --experiment quickstart --out docs/mlflow_comparison.png

Needs ``chromium`` (Debian: ``apt-get install chromium``). The DevTools client below is written
by hand on the standard library (a WebSocket client of ~40 lines): no CDP or WebSocket package
is installed here, and MLflow and Ray have none. Links that open an experiment in MLflow 3's
model-training view (not GenAI's) carry ``?workflowType=machine_learning``.
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

FILTER = "tags.hinas.stage = 'evaluate' AND tags.hinas.kind = 'hinas'"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1600,1000"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 120.0) -> bytes:
    deadline = time.time() + timeout
    while True:
        try:
            return urllib.request.urlopen(url, timeout=2).read()
        except OSError:
            if time.time() > deadline:
                raise RuntimeError(f"{url} did not answer in {timeout:.0f} s") from None
            time.sleep(0.5)


class DevTools:
    """A minimal Chrome DevTools Protocol client over one WebSocket (RFC 6455, client side)."""

    def __init__(self, ws_url: str):
        url = urllib.parse.urlparse(ws_url)
        self.sock = socket.create_connection((url.hostname, url.port), timeout=60)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {url.path} HTTP/1.1\r\nHost: {url.hostname}:{url.port}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += self.sock.recv(1)
        if b" 101 " not in head.split(b"\r\n")[0]:
            raise RuntimeError(f"DevTools refused the WebSocket: {head.decode(errors='replace')[:200]}")
        self.next_id = 0

    def _read(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise RuntimeError("DevTools closed the connection")
            data += chunk
        return data

    def _message(self) -> dict:
        payload = b""
        while True:
            b0, b1 = self._read(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._read(8))[0]
            payload += self._read(n)  # the server does not mask its frames
            if b0 & 0x80:  # FIN: the last fragment
                return json.loads(payload)

    def call(self, method: str, **params):
        self.next_id += 1
        data = json.dumps({"id": self.next_id, "method": method, "params": params}).encode()
        n = len(data)
        head = bytes([0x81]) + (bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + struct.pack(">H", n)
                                if n < 65536 else bytes([0x80 | 127]) + struct.pack(">Q", n))
        mask = os.urandom(4)
        self.sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))
        while True:
            msg = self._message()
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def js(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"page script failed: {result['exceptionDetails'].get('text')}: {expression[:80]}")
        return result["result"].get("value")

    def wait_for(self, expression: str, what: str, timeout: float = 60.0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            value = self.js(expression)
            if value:
                return value
            time.sleep(0.5)
        raise RuntimeError(f"the page never showed {what}")


# Where an element with this visible text is, to click it as a user would (MLflow's markup has
# few stable ids; its menus open on real pointer events, not on element.click()).
FIND = """(text => { const el = [...document.querySelectorAll(
  'button, [role=menuitem], [role=menuitemcheckbox], [role=option], [role=radio], label, span, div')]
  .filter(e => e.offsetParent !== null && e.textContent.trim() === text).pop();
  if (!el) return null; const r = el.getBoundingClientRect();
  return [r.left + r.width / 2, r.top + r.height / 2]; })(%s)"""


def click_text(tools: DevTools, text: str, timeout: float = 20.0) -> None:
    x, y = tools.wait_for(FIND % json.dumps(text), f"'{text}'", timeout)
    for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
        tools.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)
    time.sleep(1.0)


def screenshot(store: str, experiment: str, out: Path, search: str, group_by: str, wait_s: float,
               run_id: str = "", charts: bool = False, chart_search: str = "") -> dict:
    """The runs table (searched, grouped; with ``charts`` the runs' metric charts side by side),
    or with ``run_id`` that run's metric charts; returns the page's URL and text."""
    from mlflow import MlflowClient

    exp = MlflowClient(store).get_experiment_by_name(experiment)
    if exp is None:
        raise RuntimeError(f"no experiment {experiment!r} in {store}")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise RuntimeError("chromium is not installed (apt-get install -y chromium)")
    port, debug_port = free_port(), free_port()
    mlflow_bin = str(Path(sys.executable).with_name("mlflow"))
    server = subprocess.Popen([mlflow_bin, "server", "--backend-store-uri", store, "--host", "127.0.0.1",
                               "--port", str(port), "--workers", "1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    profile = tempfile.mkdtemp(prefix="hinas-chromium-")
    browser = None
    try:
        wait_http(f"http://127.0.0.1:{port}/health")
        browser = subprocess.Popen([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                                    f"--remote-debugging-port={debug_port}", "about:blank"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        pages = json.loads(wait_http(f"http://127.0.0.1:{debug_port}/json/list"))
        page = next(p for p in pages if p.get("type") == "page")
        tools = DevTools(page["webSocketDebuggerUrl"])
        # MLflow 3's UI takes its view from this parameter (default: GenAI's traces and evaluations).
        query = urllib.parse.urlencode({"workflowType": "machine_learning", "searchFilter": search,
                                        **({"compareRunsMode": "CHART"} if charts else {})})
        page = f"runs/{run_id}/model-metrics" if run_id else "runs"
        url = f"http://127.0.0.1:{port}/#/experiments/{exp.experiment_id}/{page}?{query}"
        tools.call("Page.navigate", url=url)
        tools.wait_for("document.body && document.body.innerText.includes(%s)" % json.dumps("Model metrics" if run_id else "Group by"),
                       "the run" if run_id else "the runs table")
        time.sleep(wait_s)
        tools.js("(b => b && b.click())(document.querySelector('button[aria-label=Close]'))")  # the assistant panel
        grouped = False
        if group_by and not run_id:
            click_text(tools, "Group by")
            click_text(tools, group_by)
            grouped = True
            tools.call("Input.dispatchKeyEvent", type="keyDown", key="Escape", code="Escape", windowsVirtualKeyCode=27)
            time.sleep(wait_s)
        if chart_search:  # typed into the charts' own search box, as a user would
            tools.wait_for("!!document.querySelector('input[placeholder=\"Search metric charts\"]')", "the chart search box")
            tools.js("document.querySelector('input[placeholder=\"Search metric charts\"]').focus()")
            tools.call("Input.insertText", text=chart_search)
            time.sleep(wait_s)
        text = tools.js("document.body.innerText")
        png = base64.b64decode(tools.call("Page.captureScreenshot", format="png")["data"])
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(png)
        return {"url": url, "grouped": grouped, "text": text}
    finally:
        for proc in (browser, server):
            if proc is not None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        shutil.rmtree(profile, ignore_errors=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--store", required=True, help="the MLflow backend store, e.g. sqlite:////abs/runs/mlflow.db")
    p.add_argument("--experiment", required=True, help="MLflow experiment name")
    p.add_argument("--out", type=Path, required=True, help="PNG to write")
    p.add_argument("--search", default=FILTER, help=f"runs search filter (default: {FILTER!r})")
    p.add_argument("--group-by", default="hinas.ablation", help="tag to group the runs by ('' for none)")
    p.add_argument("--charts", action="store_true", help="the runs' metric charts instead of the table")
    p.add_argument("--chart-search", default="", help="text typed into the charts' search box")
    p.add_argument("--run-id", default="", help="show this run's metric charts instead of the runs table")
    p.add_argument("--wait", type=float, default=4.0, help="seconds to let the page settle before the screenshot")
    args = p.parse_args(argv)
    try:
        shown = screenshot(args.store, args.experiment, args.out, args.search, args.group_by, args.wait, args.run_id,
                           args.charts, args.chart_search)
    except RuntimeError as exc:
        print(f"mlflow_screenshot: {exc}", file=sys.stderr)
        return 1
    print(f"mlflow_screenshot: {shown['url']} -> {args.out} (grouped by {args.group_by!r}: {shown['grouped']})")
    print(shown["text"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
