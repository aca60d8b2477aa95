"""The studio in headless Chromium: every page, the memory scrubber, replay/verify/export, a branch
started from a shot's page and followed live until done, and a CLI run followed live on open pages
(a clip playing meanwhile keeps playing: live updates keep unchanged media elements).

A screenshot of each page is written under the test's ``tmp_path`` (``screens/*.png``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from codirector.cli import app

pytestmark = [pytest.mark.browser, pytest.mark.slow]
runner = CliRunner()


def wait_for(driver: Any, script: str, *, timeout: float = 30, poll: float = 0.1) -> Any:
    """Run ``script`` (a JS expression) until it is truthy; its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = driver.execute_script(f"return ({script});")
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {script!r}; page {driver.current_url}")
        time.sleep(poll)


def open_page(driver: Any, url: str, page: str) -> None:
    driver.get(url)
    wait_for(driver, f"document.body && document.body.dataset.page === {page!r}")


def screenshot(driver: Any, tmp_path: Path, name: str) -> Path:
    folder = tmp_path / "screens"
    folder.mkdir(exist_ok=True)
    path = folder / f"{name}.png"
    assert driver.save_screenshot(str(path)) and path.stat().st_size > 10_000
    return path


def console_errors(driver: Any) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def summary(driver: Any) -> tuple[str, int] | None:
    got = driver.execute_script("const s = document.querySelector('section.summary[data-status]');"
                                "return s ? [s.dataset.status, +s.dataset.shotsCompleted] : null;")
    return (got[0], got[1]) if got else None


def follow_until_complete(driver: Any, *, timeout: float = 240) -> list[tuple[str, int]]:
    """Every distinct (status, shots completed) the open timeline shows until it says complete."""
    seen: list[tuple[str, int]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = summary(driver)
        if now is not None and (not seen or seen[-1] != now):
            seen.append(now)
        if now is not None and now[0] == "complete":
            return seen
        time.sleep(0.1)
    raise AssertionError(f"the page never showed the branch complete; it showed {seen}")


def test_every_page_in_chromium(served, driver, tmp_path) -> None:  # type: ignore[no-untyped-def]
    url, studio = served.url, served.studio
    open_page(driver, url + "/", "stories")
    wait_for(driver, "document.body.dataset.liveState === 'connected'")  # the SSE stream is open
    rows = driver.execute_script("return [...document.querySelectorAll('tr[data-branch]')].map(r => r.dataset.branch)")
    assert {"main", "storm", *(b.name for b in studio.store.story("dewline").branches)} <= set(rows)
    screenshot(driver, tmp_path, "stories")

    open_page(driver, url + "/timeline?story=lighthouse&branch=main", "timeline")
    assert driver.execute_script("return document.querySelectorAll('section.shot[data-state=complete]').length") == 8
    assert wait_for(driver, "document.querySelector('figure.selected img').naturalWidth") > 0
    ready = driver.execute_script(
        "const v = document.querySelector('video'); v.preload = 'auto'; v.load(); return v.readyState;")
    assert ready is not None
    assert wait_for(driver, "document.querySelector('video').readyState >= 2 && "
                            "document.querySelector('video').duration") > 0  # the clip plays in Chromium
    screenshot(driver, tmp_path, "timeline")

    open_page(driver, url + "/shot?story=lighthouse&branch=main&shot=4", "shot")
    retrieval = studio.audit("lighthouse").shot(4).retrievals[0]
    shown = driver.execute_script(
        "return [...document.querySelectorAll('tr[data-candidate]')].map(r => r.dataset.candidate)")
    assert shown == [c.entity for c in retrieval.candidates]
    assert wait_for(driver, "[...document.querySelectorAll('figure.ref img')].every(i => i.complete && "
                            "i.naturalWidth > 0)")
    screenshot(driver, tmp_path, "shot")

    open_page(driver, url + "/memory?story=lighthouse&branch=main", "memory")
    driver.execute_script("window.__notReloaded = 1")
    slider = driver.find_element("id", "scrub-shot")
    assert slider.get_attribute("value") == "8"
    from selenium.webdriver.common.keys import Keys

    slider.send_keys(Keys.ARROW_LEFT, Keys.ARROW_LEFT, Keys.ARROW_LEFT)  # shot 8 -> 5: input + change events
    wait_for(driver, "document.querySelector('[data-memory-shot]').dataset.memoryShot === '5'")
    names = driver.execute_script(
        "return [...document.querySelectorAll('.gallery article.entity')].map(e => e.dataset.entity)")
    assert names == studio.memory("lighthouse", at_shot=5).names()
    assert "shot=5" in driver.current_url and driver.execute_script("return window.__notReloaded") == 1
    links = driver.execute_script(
        "return [...document.querySelectorAll('svg.lineage path.link')].map(p => p.dataset.from + '>' + p.dataset.to)")
    assert links == ["Mia>Mia_red_scarf"]  # Mia_red_scarf_back comes later, at shot 6, the shot that shows it
    screenshot(driver, tmp_path, "memory")
    driver.find_element("css selector", "svg.lineage g[data-entity=Mia_red_scarf]").find_element(
        "xpath", "..").click()  # each entity's history one click away
    wait_for(driver, "document.body.dataset.page === 'entity'")
    assert driver.find_element("css selector", "p.chain").get_attribute("data-chain") == "Mia > Mia_red_scarf"
    screenshot(driver, tmp_path, "entity")

    open_page(driver, url + "/compare?story=lighthouse&a=main&b=storm", "compare")
    rows = driver.execute_script("return [...document.querySelectorAll('.compare-row')].map(r => +r.dataset.shot)")
    assert rows == [5, 6, 7, 8]
    assert driver.execute_script("return document.querySelectorAll('.compare-row .side img').length") == 8
    screenshot(driver, tmp_path, "compare")

    open_page(driver, url + "/director?story=dewline", "director")
    dims = driver.execute_script("return [...document.querySelectorAll('figure.chart')].map(f => f.dataset.dimension)")
    assert dims == ["strategy", "narrative_mode", "aesthetic"]
    pulls = driver.execute_script("return [...document.querySelectorAll('g.arm')].reduce((n, g) => n + "
                                  "+g.dataset.pulls, 0)")
    assert pulls == 2 * 3  # two rewarded rounds, one arm per dimension each
    screenshot(driver, tmp_path, "director")
    assert console_errors(driver) == []


def test_replay_verify_and_export_buttons(served, driver, tmp_path) -> None:  # type: ignore[no-untyped-def]
    open_page(driver, served.url + "/timeline?story=lighthouse&branch=storm", "timeline")
    driver.find_element("css selector", "button[data-action=replay]").click()
    wait_for(driver, "document.body.dataset.page === 'result'", timeout=120)
    result = driver.find_element("css selector", "[data-result=replay]")
    assert result.get_attribute("data-identical") == "yes"
    assert driver.find_element("css selector", "[data-model-calls]").text == "0"
    screenshot(driver, tmp_path, "replay")

    open_page(driver, served.url + "/timeline?story=lighthouse&branch=storm", "timeline")
    driver.find_element("css selector", "button[data-action=verify]").click()
    wait_for(driver, "document.body.dataset.page === 'result'", timeout=120)
    assert driver.find_element("css selector", "[data-result=verify]").get_attribute("data-ok") == "yes"

    open_page(driver, served.url + "/timeline?story=lighthouse&branch=storm", "timeline")
    driver.find_element("css selector", "button[data-action=export]").click()
    downloads: Path = driver.downloads
    deadline = time.monotonic() + 120
    while not list(downloads.glob("*.mp4")):
        assert time.monotonic() < deadline, list(downloads.iterdir())
        time.sleep(0.2)
    video = next(downloads.glob("*.mp4"))
    assert video.name == "lighthouse-storm.mp4" and video.read_bytes()[4:8] == b"ftyp"
    assert console_errors(driver) == []


def test_branch_from_here_runs_and_the_page_follows_it(served, driver, tmp_path) -> None:  # type: ignore[no-untyped-def]
    studio = served.studio
    new_prompt = "Mia and Tom race down the spiral stair as the lamp fails, torchlight on the walls, wide shot."
    open_page(driver, served.url + "/shot?story=lighthouse&branch=main&shot=3", "shot")
    name = driver.find_element("css selector", "input[name=name]")
    name.clear()
    name.send_keys("from-the-page")
    keyframe = driver.find_element("css selector", "textarea[name='keyframe.3']")
    keyframe.clear()
    keyframe.send_keys(new_prompt)
    screenshot(driver, tmp_path, "branch-form")
    driver.find_element("css selector", "button[data-action=branch]").click()
    wait_for(driver, "document.body.dataset.page === 'timeline' && location.search.includes('from-the-page')")
    driver.execute_script("window.__notReloaded = 1")
    seen = follow_until_complete(driver)
    screenshot(driver, tmp_path, "branch-live-done")
    assert driver.execute_script("return window.__notReloaded") == 1  # followed without a reload
    assert len(seen) >= 2 and seen[0] != seen[-1] and seen[-1] == ("complete", 8), seen
    assert [n for _, n in seen] == sorted(n for _, n in seen)
    assert driver.execute_script("return document.querySelectorAll('section.shot[data-state=complete]').length") == 8
    created = studio.log("lighthouse", "from-the-page", types=["BranchCreated"])[-1]
    assert created.payload["overrides"] == {"shots.3.keyframe": new_prompt}  # only what was edited
    assert created.payload["from_shot"] == 3 and created.payload["parent"] == "main"
    listing = studio.stories().get("lighthouse")
    status = next(b for b in listing.branches if b.name == "from-the-page")
    assert status.status == "completed" and not status.running
    assert console_errors(driver) == []


def test_a_run_started_from_the_cli_shows_up_live(served, driver, tmp_path) -> None:  # type: ignore[no-untyped-def]
    home = str(served.home.root)
    open_page(driver, served.url + "/", "stories")
    wait_for(driver, "document.body.dataset.liveState === 'connected'")
    driver.execute_script("window.__notReloaded = 1")
    stories_tab = driver.current_window_handle
    made = runner.invoke(app, ["--home", home, "branch", "lighthouse", "--from-shot", "2", "--name", "cli-live",
                               "--set", "shots.2.keyframe=Tom waves a lantern from the gallery in thick fog"])
    assert made.exit_code == 0, made.output
    wait_for(driver, "document.querySelector('tr[data-branch=\"cli-live\"]')")  # appeared without a reload

    driver.switch_to.new_window("tab")
    open_page(driver, served.url + "/timeline?story=lighthouse&branch=cli-live", "timeline")
    assert summary(driver) == ("stopped", 1)
    driver.execute_script("window.__notReloaded = 1")
    driver.execute_script("const v = document.querySelector('#shot-1 video'); v.__kept = 1; v.muted = true; "
                          "v.loop = true; v.play();")  # shot 1's clip plays while the run moves the page
    wait_for(driver, "!document.querySelector('#shot-1 video').paused && "
                     "document.querySelector('#shot-1 video').currentTime > 0")
    env = {**os.environ, "CODIRECTOR_HOME": home}
    proc = subprocess.Popen([sys.executable, "-m", "codirector.cli", "run", "--story", "lighthouse", "--branch",
                             "cli-live"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        seen = follow_until_complete(driver)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out
    screenshot(driver, tmp_path, "cli-run-live")
    assert driver.execute_script("return window.__notReloaded") == 1
    assert seen[0] == ("stopped", 1) and seen[-1] == ("complete", 8)
    clip = driver.execute_script("const v = document.querySelector('#shot-1 video'); "
                                 "return [v.__kept, v.paused, document.querySelectorAll('video').length];")
    assert clip == [1, False, 8]  # live updates kept the playing clip's element (and added the new shots' clips)
    assert len(seen) >= 3, seen  # it advanced in steps while the CLI ran
    driver.switch_to.window(stories_tab)
    wait_for(driver, "document.querySelector('tr[data-branch=\"cli-live\"]').dataset.status === 'complete'")
    assert driver.execute_script("return window.__notReloaded") == 1
    assert console_errors(driver) == []
