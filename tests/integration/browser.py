"""Test-only: a real headless Chromium driven by Debian's chromedriver over the W3C WebDriver protocol (plain HTTP)."""

from __future__ import annotations

import base64
import shutil
import subprocess
import time
from pathlib import Path

import httpx

from tests.integration.daemon import free_port

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
MISSING = (None if CHROMIUM and CHROMEDRIVER else
           "chromium and chromium-driver are not installed (`make install` installs them when run as root on Debian: "
           "apt-get install chromium chromium-driver)")


class Browser:
    """One chromedriver process (stopped by PID) with one headless session."""

    def __init__(self, work_dir: Path):
        self.work_dir = Path(work_dir)
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.session: str | None = None
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=60)

    def __enter__(self) -> "Browser":
        log = open(self.work_dir / "chromedriver.log", "ab")
        try:
            self.proc = subprocess.Popen([CHROMEDRIVER, f"--port={self.port}"], stdout=log, stderr=subprocess.STDOUT)
        finally:
            log.close()
        deadline = time.monotonic() + 30
        while True:
            try:
                if self.http.get("/status").json()["value"]["ready"]:
                    break
            except (httpx.HTTPError, ValueError, KeyError):
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.__exit__(None, None, None)
                raise RuntimeError("chromedriver did not start; see chromedriver.log")
            time.sleep(0.2)
        args = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1300,2300",
                f"--user-data-dir={self.work_dir / 'chromium-profile'}"]
        caps = {"capabilities": {"alwaysMatch": {"browserName": "chrome",
                                                 "goog:chromeOptions": {"binary": CHROMIUM, "args": args}}}}
        self.session = self._ok(self.http.post("/session", json=caps))["sessionId"]
        return self

    def _ok(self, r: httpx.Response):
        body = r.json()
        if r.status_code != 200:
            raise RuntimeError(f"webdriver {r.request.url.path}: {body}")
        return body["value"]

    def get(self, url: str) -> None:
        self._ok(self.http.post(f"/session/{self.session}/url", json={"url": url}))

    def js(self, script: str, *args):
        return self._ok(self.http.post(f"/session/{self.session}/execute/sync", json={"script": script, "args": list(args)}))

    def screenshot(self, path: Path) -> Path:
        Path(path).write_bytes(base64.b64decode(self._ok(self.http.get(f"/session/{self.session}/screenshot"))))
        return Path(path)

    def __exit__(self, *exc) -> None:
        try:
            if self.session is not None:
                self.http.delete(f"/session/{self.session}")
        except httpx.HTTPError:
            pass
        finally:
            self.session = None
            self.http.close()
            if self.proc is not None and self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(10)
