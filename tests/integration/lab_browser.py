"""Real JupyterLab on 127.0.0.1 driven by headless Chromium (Debian's, through Playwright).

No browser is downloaded: Playwright's Python package drives the system `chromium`
(`apt-get install chromium chromium-driver`; `.ci/run` installs them). The server runs with a
token on a free port, from a scratch root directory (JupyterLab autosaves the notebooks it
opens: the repository's copies must stay without outputs) and with its own settings, so
news pop-ups and the user's layout stay out of the screenshots.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip
START_LIMIT_S = 180.0  # a safety net against a server that never comes up


def browser_missing() -> str | None:
    """Why the browser test cannot run here, or None."""
    if not CHROMIUM.exists():
        return (
            f"{CHROMIUM} is missing: install Debian's browser with "
            "`apt-get install -y chromium chromium-driver` (.ci/run does)"
        )
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed: pip install -e '.[dev]'"
    return None


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Lab:
    """A running JupyterLab server."""

    url: str
    token: str
    root: Path
    process: subprocess.Popen[bytes]

    def link(self, path: str) -> str:
        """The browser URL of a file under the root, with the token."""
        return f"{self.url}/lab/tree/{path}?token={self.token}"


def _lab_settings(directory: Path) -> None:
    """User settings: no news or update checks, no autosave, start the notebook's kernel."""
    files: dict[str, dict[str, Any]] = {
        "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
            "fetchNews": "false", "checkForUpdates": False,
        },
        "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
        "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {
            "autoStartDefaultKernel": True,
        },
    }  # fmt: skip
    for name, value in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value))


@contextlib.contextmanager
def running_lab(root: Path, env: Mapping[str, str], log: Path) -> Iterator[Lab]:
    """Start JupyterLab serving `root`; stop it (and its kernels) afterwards."""
    port, token = free_port(), secrets.token_hex(16)
    home = root.parent / "lab-home"
    settings = home / "settings"
    _lab_settings(settings)
    lab_env = {
        **env,
        "JUPYTERLAB_SETTINGS_DIR": str(settings),
        "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
        "JUPYTER_CONFIG_DIR": str(home / "config"),
        "IPYTHONDIR": str(home / "ipython"),
    }
    command = [
        sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
        f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
        "--LabApp.news_url=", "--LabServerApp.check_for_updates_class="
        "jupyterlab.NeverCheckForUpdate",
    ]  # fmt: skip
    if os.geteuid() == 0:
        command.append("--allow-root")  # CI runs as root on this machine
    with log.open("wb") as out:
        process = subprocess.Popen(command, env=lab_env, stdout=out, stderr=subprocess.STDOUT)
    lab = Lab(f"http://127.0.0.1:{port}", token, root, process)
    try:
        deadline = time.monotonic() + START_LIMIT_S
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"JupyterLab exited ({process.returncode}); see {log}")
            try:
                urllib.request.urlopen(f"{lab.url}/api/status?token={token}", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"JupyterLab did not start; see {log}") from None
                time.sleep(0.25)
        yield lab
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def copy_notebook(source: Path, root: Path, parameters: Mapping[str, Any]) -> str:
    """Copy a notebook into the lab root with `parameters` injected as papermill does.

    Returns its path relative to the root.
    """
    import nbformat
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    root.mkdir(parents=True, exist_ok=True)
    notebook = parameterize_notebook(load_notebook_node(str(source)), dict(parameters))
    nbformat.write(notebook, root / source.name)
    return source.name


def run_all_cells(page: Any) -> None:
    """Wait for the notebook's kernel, then Run > Run All Cells."""
    page.locator(".jp-NotebookPanel").wait_for()
    page.get_by_text(re.compile(r"\| Idle$")).first.wait_for()
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name=re.compile(r"^Run All Cells")).click()


def hide_left_sidebar(page: Any) -> None:
    """Collapse the left panel (Ctrl+B in command mode): the notebook gets the full width."""
    page.keyboard.press("Escape")
    page.keyboard.press("Control+b")
    page.locator("#jp-left-stack").wait_for(state="hidden")
