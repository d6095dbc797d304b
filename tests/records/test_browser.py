"""The report and the UI in a real headless Chromium (Debian's chromium + chromium-driver, via selenium)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import EXPERIMENT
from sample_projects import REPORTING

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--window-size=1280,1600")


def _binary(*names: str) -> str | None:
    for name in names:
        found = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
        if found:
            return found
    return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _start_chromedriver(path: str) -> tuple[int, int]:
    """Start chromedriver detached (through a shell that exits at once); returns (pid, port).

    Detached, chromedriver and its chromium are not children of pytest: their few hundred MB
    never show up in this process's RUSAGE_CHILDREN, which other tests read to measure runs.
    """
    port = _free_port()
    started = subprocess.run(["sh", "-c", '"$0" --port="$1" >/dev/null 2>&1 & echo $!', path, str(port)],
                             capture_output=True, text=True, check=True)
    pid = int(started.stdout.strip())
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=2) as response:
                if json.loads(response.read())["value"]["ready"]:
                    return pid, port
        except (OSError, ValueError, KeyError):
            time.sleep(0.1)
    os.kill(pid, signal.SIGTERM)
    pytest.fail(f"chromedriver did not start on port {port}")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """A headless Chromium driven through chromedriver; skips when either is not installed."""
    chromium, driver_path = _binary("chromium", "chromium-browser"), _binary("chromedriver")
    if chromium is None or driver_path is None:
        pytest.skip("chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")

    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    pid, port = _start_chromedriver(driver_path)
    try:
        driver = webdriver.Remote(command_executor=f"http://127.0.0.1:{port}", options=options)
        driver.set_page_load_timeout(30)
        try:
            yield driver
        finally:
            driver.quit()
    finally:
        os.kill(pid, signal.SIGTERM)
        shutil.rmtree(profile, ignore_errors=True)


def drain_logs(driver: Any) -> tuple[list[dict], list[str]]:
    """Console messages and requested URLs since the last call (chrome:// internals left out)."""
    def log(kind: str) -> list[dict]:
        return driver.execute("getLog", {"type": kind})["value"]  # type: ignore[no-any-return]

    console = [entry for entry in log("browser") if entry["level"] in ("SEVERE", "WARNING")]
    urls = []
    for entry in log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            url = message["params"]["request"]["url"]
            if not url.startswith(("chrome://", "chrome-extension://", "about:", "devtools://")):
                urls.append(url)
    return console, urls


def report_path(stdout: str) -> Path:
    return Path(stdout.split("report:", 1)[1].split()[0])


def test_report_renders_with_no_console_errors_and_no_external_requests(browser, make_project):
    from selenium.webdriver.common.by import By

    proj = make_project(REPORTING)
    proj.experiment("run", "sweep")
    path = report_path(proj.experiment("run", "sweep", "--set", "n=7", "--desc", "seven points").stdout)
    drain_logs(browser)
    browser.get(path.as_uri())
    assert browser.title.startswith("seven points")
    nodes = browser.find_elements(By.CSS_SELECTOR, "#dag svg g.node")
    assert len(nodes) == 5 and all(node.is_displayed() for node in nodes)
    assert {n.get_attribute("data-status") for n in nodes} == {"ran", "cached"}
    assert browser.find_elements(By.CSS_SELECTOR, "#metrics svg.chart polyline.series")
    images = browser.find_elements(By.CSS_SELECTOR, "#reports img")
    assert images and all(browser.execute_script("return arguments[0].naturalWidth", i) > 0 for i in images)
    assert browser.find_element(By.CSS_SELECTOR, "#params-table tr.varying th").text.startswith("lr")
    console, urls = drain_logs(browser)
    assert console == []
    assert urls and all(u.startswith(("file://", "data:")) for u in urls), urls


def test_ui_lists_runs_sorts_compares_and_opens_a_report_with_its_dag(browser, project):
    first = project.run_json("base", "--desc", "baseline")["run_id"]
    second = project.run_json("base", "--set", "scale=3", "--desc", "scaled")["run_id"]
    errors = project.root / "ui.err"
    with open(errors, "w") as err, subprocess.Popen([*EXPERIMENT, "ui", "--port", "0"], cwd=project.root,
                                                     env=project.env(), stdout=subprocess.PIPE, stderr=err,
                                                     text=True) as server:
        try:
            _click_through(browser, server, errors, first, second)
        finally:
            server.terminate()
            server.wait(timeout=10)


def _navigate(browser: Any, action: Any, timeout: float = 15) -> None:
    """Do ``action`` and wait until the browser has left the current page and loaded the next."""
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    page = browser.find_element("tag name", "html")
    action()
    WebDriverWait(browser, timeout).until(expected_conditions.staleness_of(page))
    WebDriverWait(browser, timeout).until(lambda b: b.execute_script("return document.readyState") == "complete")


def _click_through(browser: Any, server: subprocess.Popen[str], errors: Path, first: str, second: str) -> None:
    """Index (newest first) -> sort -> tick two -> compare -> back -> open a report -> see its DAG."""
    from selenium.webdriver.common.by import By

    line = server.stdout.readline() if server.stdout else ""
    assert "http://127.0.0.1:" in line, (line, errors.read_text())
    url = line.split("http://", 1)[1].split()[0]
    base = f"http://{url}".rstrip("/")
    drain_logs(browser)
    browser.get(base + "/")
    rows = browser.find_elements(By.CSS_SELECTOR, "#runs tr.run")
    assert [r.get_attribute("data-run") for r in rows] == [second, first]  # newest first
    _navigate(browser, lambda: browser.find_element(By.ID, "sort-started").click())  # flip: oldest first
    assert [r.get_attribute("data-run") for r in browser.find_elements(By.CSS_SELECTOR, "#runs tr.run")] == \
        [first, second]
    _navigate(browser, lambda: browser.find_element(By.ID, "sort-status").click())
    assert len(browser.find_elements(By.CSS_SELECTOR, "#runs tr.run")) == 2
    for box in browser.find_elements(By.CSS_SELECTOR, "#runs input[type=checkbox]"):
        box.click()
    _navigate(browser, lambda: browser.find_element(By.ID, "compare-button").click())
    assert "/diff?" in browser.current_url
    params = browser.find_element(By.ID, "diff-params").text
    assert "scale" in params and "base" in params
    assert "double_all [base] doubled" in browser.find_element(By.ID, "diff-artifacts").text
    _navigate(browser, browser.back)
    link = next(a for a in browser.find_elements(By.CSS_SELECTOR, "a.run-link") if a.text == second)
    _navigate(browser, link.click)
    assert browser.find_element(By.TAG_NAME, "h1").text == "scaled"
    nodes = browser.find_elements(By.CSS_SELECTOR, "#dag svg g.node")
    assert len(nodes) == 5 and nodes[0].is_displayed()
    assert {n.get_attribute("data-status") for n in nodes} == {"ran", "cached"}
    console, urls = drain_logs(browser)
    assert console == []
    assert all(u.startswith((base, "data:")) for u in urls), urls
