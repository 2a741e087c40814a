"""Headless Chromium screenshots (tests and the docs screenshot).

Debian's ``chromium`` (``apt-get install -y chromium``; ``.ci/run`` installs it), run with
no network use of its own: no background networking, component updates, sync or QUIC, a
throw-away profile folder.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

NAMES = ("chromium", "chromium-browser", "google-chrome")


def find_browser() -> str | None:
    """Path of an installed Chromium, or ``None``."""
    return next((p for p in map(shutil.which, NAMES) if p), None)


def screenshot(html: Path, png: Path, width: int = 1400, height: int = 2600,
               timeout_s: float = 180.0) -> Path:
    """Render ``html`` in headless Chromium and save a ``width`` x ``height`` PNG.

    Raises
    ------
    RuntimeError
        No browser, or it wrote no screenshot.
    """
    browser = find_browser()
    if browser is None:
        raise RuntimeError("no chromium installed")
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--hide-scrollbars", f"--user-data-dir={profile}",
             f"--window-size={width},{height}", f"--screenshot={png}",
             html.resolve().as_uri()],
            check=False, capture_output=True, timeout=timeout_s)
    if not png.is_file() or png.stat().st_size == 0:
        raise RuntimeError(f"{browser} wrote no screenshot")
    return png
