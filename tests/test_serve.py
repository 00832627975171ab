"""`attnlab serve`: a tab's app saves `last` however it ends; the server refuses tabs past --max-sessions;
and one real headless Chromium session opens the page, starts reversal training with a key press, and
sees the save appear (a screenshot is kept under tests/artifacts/).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.checkpoint import list_runs, load_checkpoint
from tui.screens.setup import input_id
from tui.serve import SessionApp, busy_text, is_loopback

ARTIFACTS = Path(__file__).parent / "artifacts"
CHROMIUM = os.environ.get("ATTNLAB_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = os.environ.get("ATTNLAB_CHROMEDRIVER") or shutil.which("chromedriver")


def test_loopback_hosts():
    assert all(is_loopback(h) for h in ("127.0.0.1", "localhost", "::1", "[::1]", "127.1.2.3"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "192.168.1.5", "::", "example.org"))
    assert "--max-sessions 2" in busy_text(2)


async def _exit_while_training(saves, end):
    from textual.widgets import Input
    app = SessionApp()
    async with app.run_test(size=(120, 40)) as pilot:
        app.query_one("#" + input_id("train.max_steps"), Input).value = "100000"
        await pilot.press("s")
        t0 = time.monotonic()
        while time.monotonic() - t0 < 30 and not (app.trainer and app.trainer.step_count >= 3):
            await pilot.pause(0.05)
        assert app.trainer.step_count >= 3
        end(app)
        t0 = time.monotonic()
        while app.is_running and time.monotonic() - t0 < 10:
            await asyncio.sleep(0.05)
        assert not app.is_running
    runs = list_runs()
    assert len(runs) == 1 and "last" in runs[0].tags
    step = load_checkpoint(runs[0].name, "last").meta["step"]
    assert 3 <= step < 100000  # stopped, not finished


async def test_a_closed_tab_stops_training_and_saves_last(saves):
    # textual-serve closes a tab's app with a quit message, which the web driver turns into ExitApp
    await _exit_while_training(saves, lambda app: app.exit())


async def test_sighup_stops_training_and_saves_last(saves):
    await _exit_while_training(saves, lambda app: os.kill(os.getpid(), signal.SIGHUP))


# -- a real server process

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(saves):
    pytest.importorskip("textual_serve")
    import urllib.request
    port = free_port()
    saves.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([sys.executable, "-c", "from tui.cli import main; raise SystemExit(main())", "serve",
                             "--host", "0.0.0.0", "--port", str(port), "--max-sessions", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}/"
    t0 = time.monotonic()
    while time.monotonic() - t0 < 60:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            break
        except OSError:
            if proc.poll() is not None:
                pytest.fail(f"attnlab serve exited: {proc.stderr.read()}")
            time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("attnlab serve did not answer in 60 s")
    yield url, proc
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def status(url):
    import urllib.error
    import urllib.request
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def wait(cond, timeout, what):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def tags(saves):
    runs = list_runs()
    return set(runs[0].tags) if runs else set()


async def _one_session_over_a_websocket(url, saves):
    import aiohttp
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(url + "ws?width=120&height=40")
        got, t0 = 0, time.monotonic()
        while got < 1000 and time.monotonic() - t0 < 60:  # the app's first screen
            m = await ws.receive(timeout=60)
            got += len(m.data) if m.type == aiohttp.WSMsgType.BINARY else 0
        assert got >= 1000
        code, page = status(url)
        assert code == 503 and "--max-sessions 1" in page  # the second tab is refused, saying why
        late = await http.ws_connect(url + "ws")  # one that had the page before the slot went
        assert b"--max-sessions 1" in (await late.receive(timeout=10)).data
        await late.close()
        await ws.send_json(["stdin", "s"])  # start reversal training
        t0 = time.monotonic()
        while time.monotonic() - t0 < 60 and "best" not in tags(saves):
            try:
                await ws.receive(timeout=0.1)
            except asyncio.TimeoutError:
                pass
        assert "best" in tags(saves)
        await ws.close()  # the tab goes: its app stops training and saves last


def test_max_sessions_and_closing_a_session_over_a_websocket(server, saves):
    url, proc = server
    asyncio.run(_one_session_over_a_websocket(url, saves))
    wait(lambda: "last" in tags(saves), 30, "the closed session's last save")
    wait(lambda: status(url)[0] == 200, 30, "the slot to free up")


def test_non_loopback_host_warns(server):
    url, proc = server
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=20)
    assert "anyone who can reach port" in err and "delete saves" in err


@pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="needs Debian's chromium and chromium-driver")
def test_in_headless_chromium(server, saves):
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    url, _ = server
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,800"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    try:
        driver.set_page_load_timeout(30)
        driver.get(url)
        wait(lambda: "-first-byte" in driver.execute_script("return document.body.className"), 60, "the app's screen")
        keys = driver.find_element(By.CSS_SELECTOR, ".xterm-helper-textarea")  # xterm.js reads keys here
        driver.execute_script("arguments[0].focus()", keys)
        keys.send_keys("s")
        wait(lambda: "best" in tags(saves), 60, "a reversal save after pressing s in the browser")
        time.sleep(1)  # let the Train tab draw a few plot points for the screenshot
        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / "serve-chromium.png"
        driver.save_screenshot(str(shot))
        print(f"screenshot: {shot}")
        first = driver.current_window_handle
        driver.switch_to.new_window("tab")
        driver.get(url)
        assert "--max-sessions 1" in driver.find_element(By.ID, "busy").text
        driver.close()
        driver.switch_to.window(first)
        driver.get("about:blank")  # leaving the page closes its websocket: the session ends
        wait(lambda: "last" in tags(saves), 30, "the closed tab's last save")
    finally:
        driver.quit()
