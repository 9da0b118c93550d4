"""The report as a reader sees it: report.html rendered by headless Chromium, where one is
installed (`apt-get install chromium`; the test skips with that reason otherwise). No raw
markdown (`**`, backticks) in the rendered text, every image loaded, the claims first."""
import re
import shutil
import subprocess

import pytest

from smoke_results import make

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# after load: the page's title says how many images decoded and how many there are
PROBE = ("<script>window.addEventListener('load', () => { const imgs = [...document.images]; "
         "document.title = 'images ' + imgs.filter(i => i.complete && i.naturalWidth > 0).length"
         " + '/' + imgs.length; });</script>")


def browser():
    return next((b for b in map(shutil.which, BROWSERS) if b), None)


@pytest.mark.skipif(browser() is None, reason="no Chromium here (apt-get install chromium); "
                                              "the report is checked in a real browser where one is")
def test_report_renders_in_a_browser_without_raw_markdown(dirs, smoke, tmp_path):
    make("report", dirs)
    page = (dirs[1] / "report.html").read_text()
    probed = tmp_path / "report.html"
    probed.write_text(page.replace("</body>", PROBE + "</body>"))
    profile = tmp_path / "profile"
    dom = subprocess.run([browser(), *FLAGS, f"--user-data-dir={profile}",
                          "--virtual-time-budget=5000", "--dump-dom", probed.as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    title = re.search(r"<title>images (\d+)/(\d+)</title>", dom)
    assert title, dom[:500]
    loaded, total = map(int, title.groups())
    assert total >= 5 and loaded == total
    text = re.sub(r"<(script|style)[^>]*>.*?</\1>", "", dom, flags=re.S)
    text = re.sub(r"<[^>]+>", " ", text)
    assert "**" not in text and "`" not in text
    assert text.index("Did the paper") < text.index("§5.2 Test-set")
    make("screenshot", dirs)   # the README's way to look at it: the first screen as a PNG
    shot = dirs[1] / "report_first_screen.png"
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
