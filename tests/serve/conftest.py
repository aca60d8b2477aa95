"""Fixtures for the studio: one logged home per test session, one real server per test module,
one headless Chromium driven by Debian's chromedriver (selenium) per module.

The home holds the bundled 8-shot lighthouse story (main, and a branch ``storm`` from shot 5) and
a brief directed for two rounds, run with the offline preview profile and a tiny open_clip model
(``support.tiny_preview_config``), so runs the studio starts rebuild the same backends from the log.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from codirector.engine.studio import Studio

from support import chromium, free_port, tiny_preview_config

ROOT = Path(__file__).resolve().parents[2]
STORY = ROOT / "examples" / "stories" / "lighthouse.yaml"
BRIEF = ROOT / "examples" / "briefs" / "dewline_serum.yaml"
REQUIRE_BROWSER = os.environ.get("CODIRECTOR_REQUIRE_BROWSER") == "1"


@dataclass(frozen=True)
class Home:
    root: Path
    config: Path


@dataclass
class Served:
    url: str
    studio: Studio
    home: Home


@pytest.fixture(scope="session")
def studio_home(tmp_path_factory: pytest.TempPathFactory) -> Home:
    """lighthouse (main + storm from shot 5) and dewline_serum (2 director rounds), preview profile."""
    base = tmp_path_factory.mktemp("studio")
    config = tiny_preview_config(base, width=128, height=96)
    home = Home(base / "home", config)
    with Studio(home.root) as studio:
        studio.init()
        studio.run(STORY, config=config, story_id="lighthouse")
        studio.branch("lighthouse", from_shot=5, name="storm",
                      overrides={"shots.5.keyframe": "Mia and Tom shelter in the lantern room during a storm"})
        studio.run_branch("lighthouse", "storm")
        studio.direct(BRIEF, iterations=2, config=config, story_id="dewline")
    return home


@pytest.fixture(scope="module")
def served(studio_home: Home) -> Iterator[Served]:
    """The studio over the session's home, on 127.0.0.1 and a free port, for one test module."""
    from codirector.serve.app import create_app
    from codirector.serve.server import StudioServer

    studio = Studio(studio_home.root)
    with StudioServer.start(create_app(studio)) as server:
        yield Served(server.url, studio, studio_home)
    studio.close()


@dataclass(frozen=True)
class Serving:
    """A ``codirector serve`` process: its port, the process, and the first line it printed (the address)."""

    port: int
    proc: subprocess.Popen[str]
    line: str


@contextmanager
def _codirector_serve(home: str, *args: str) -> Iterator[Serving]:
    port = free_port()
    environ = {**{k: v for k, v in os.environ.items() if k != "CODIRECTOR_SERVE_TOKEN"}, "CODIRECTOR_HOME": home}
    proc = subprocess.Popen([sys.executable, "-m", "codirector.cli", "serve", *args, "--port", str(port)], env=environ,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        assert f":{port}/" in line, line
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                try:
                    with socket.create_connection(("::1", port), timeout=1):
                        break
                except OSError:
                    assert time.monotonic() < deadline and proc.poll() is None
                    time.sleep(0.2)
        yield Serving(port, proc, line)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.fixture
def codirector_serve() -> Callable[..., AbstractContextManager[Serving]]:
    """``codirector_serve(home, *ARGS)``: ``codirector serve ARGS --port P`` in a subprocess until the block ends."""
    return _codirector_serve


def chromedriver() -> str | None:
    return shutil.which("chromedriver")


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """Headless Chromium under selenium, with downloads going to a folder of its own."""
    exe, drv = chromium(), chromedriver()
    if exe is None or drv is None:
        why = "Chromium and chromedriver are needed (apt-get install chromium chromium-driver); .ci/run installs them"
        if REQUIRE_BROWSER:
            pytest.fail(f"CODIRECTOR_REQUIRE_BROWSER=1 but {why}")
        pytest.skip(why)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    downloads = tmp_path_factory.mktemp("downloads")
    profile = tempfile.mkdtemp(prefix="codirector-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = exe
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--hide-scrollbars", f"--user-data-dir={profile}",
                 "--window-size=1300,1600"):
        opts.add_argument(flag)
    opts.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                           "download.prompt_for_download": False})
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    browser = webdriver.Chrome(options=opts, service=Service(drv))
    browser.downloads = downloads  # type: ignore[attr-defined]
    browser.set_page_load_timeout(60)
    try:
        yield browser
    finally:
        browser.quit()
        shutil.rmtree(profile, ignore_errors=True)
