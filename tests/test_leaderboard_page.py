"""leaderboard.html in a real browser (headless Chromium through Selenium): no horizontal scroll at
1400 px, the first click on a header sorts best-first in that column's direction, and the page
embeds the transfer report's tables and plots. CI (.ci/run) installs Debian's chromium and
chromium-driver and sets CI, so there a missing browser fails; elsewhere the test skips saying
what to install."""
from __future__ import annotations

import json
import math
import os
import runpy
from pathlib import Path

import pytest
from PIL import Image
from test_leaderboard import _write

from perception_mtl.analysis.browser import BrowserMissing, chromium, horizontal_overflow
from perception_mtl.analysis.leaderboard import write_leaderboard
from perception_mtl.analysis.transfer import write_transfer_report

WIDTH = 1400


ROOT = Path(__file__).resolve().parents[1]


def _results(tmp_path: Path) -> Path:
    """A results folder with 3 methods x 2 seeds, baselines and logged gradient cosines."""
    (tmp_path / "suite.yaml").write_text(
        "name: page\ntasks: [det, seg, depth]\ndelta_metrics: {det: [mAP50], seg: [mIoU, pixel_acc], depth: [abs_rel]}\n")
    all3 = ["det", "seg", "depth"]
    for seed in (0, 1):
        _write(tmp_path, "stl-det", ["det"], seed, {"det/mAP50": (0.38, 0.42)[seed]})
        _write(tmp_path, "stl-seg", ["seg"], seed, {"seg/mIoU": 0.50 + 0.01 * seed, "seg/pixel_acc": 0.80})
        _write(tmp_path, "stl-depth", ["depth"], seed, {"depth/abs_rel": (0.19, 0.21)[seed]})
        for run, det, miou, rel in (("equal", 0.448, 0.50, 0.20), ("B", 0.40, 0.545, 0.19), ("C", 0.38, 0.52, 0.23)):
            _write(tmp_path, run, all3, seed, {"det/mAP50": det + 0.01 * seed, "seg/mIoU": miou + 0.003 * seed,
                                               "seg/pixel_acc": 0.8, "depth/abs_rel": rel + 0.002 * seed})
        logged = [{"step": s, "train/grad/cos/det-seg": math.cos(s), "train/grad/cos/det-depth": 0.1,
                   "train/grad/cos/seg-depth": -0.2} for s in range(1, 6)]
        (tmp_path / "runs" / "equal" / f"seed{seed}" / "train.jsonl").write_text(
            "\n".join(json.dumps(r) for r in logged) + "\n")
    return tmp_path


@pytest.fixture
def page(tmp_path: Path) -> Path:
    """`_results`' transfer report, then its leaderboard page (the suite's order)."""
    write_transfer_report(_results(tmp_path))
    return write_leaderboard(tmp_path, "disabled")["html"]


def test_analyze_transfer_refreshes_the_page_it_is_embedded_in(tmp_path, capsys):
    page = write_leaderboard(_results(tmp_path), "disabled")["html"]
    assert 'class="transfer"' not in page.read_text()  # no report yet
    runpy.run_path(str(ROOT / "tools" / "analyze_transfer.py"))["main"]([str(tmp_path)])
    assert f"refreshed: {page}" in capsys.readouterr().out
    assert '<section class="transfer"><h1>Negative-transfer report</h1>' in page.read_text()


@pytest.fixture
def browser():
    try:
        driver = chromium(WIDTH, 900)
    except BrowserMissing as err:
        if os.environ.get("CI"):
            pytest.fail(f"CI needs a browser for the page test: {err}")
        pytest.skip(f"no browser for the page test: {err}")
    yield driver
    driver.quit()


COLUMN = """const ths = Array.from(document.querySelectorAll("table.leaderboard th"));
const col = ths.findIndex(th => th.textContent.startsWith(arguments[0]));
return Array.from(document.querySelectorAll("table.leaderboard tbody tr")).map(r =>
  [r.cells[1].textContent, r.cells[col].dataset.v === undefined ? null : +r.cells[col].dataset.v]);"""


def _click(driver, title: str) -> list[tuple[str, float | None]]:
    """Click the header starting with `title`; the rows' (run, that column's value) top to bottom."""
    from selenium.webdriver.common.by import By

    header = next(th for th in driver.find_elements(By.CSS_SELECTOR, "table.leaderboard th")
                  if th.text.replace("\n", " ").startswith(title))
    header.click()
    return [tuple(row) for row in driver.execute_script(COLUMN, title)]


def _sorted(rows: list[tuple[str, float | None]], higher_first: bool) -> bool:
    values = [v for _, v in rows if v is not None]
    blanks_last = all(v is None for _, v in rows[len(values):])
    return blanks_last and values == sorted(values, reverse=higher_first)


def test_page_in_chromium(page, browser, tmp_path):
    browser.get(page.as_uri())
    assert horizontal_overflow(browser) == 0, f"horizontal scrollbar at {WIDTH} px"

    by_map = _click(browser, "det/mAP50 ↑")  # higher is better: best (equal, 0.448/0.458) on top
    assert by_map[0][0] == "equal" and _sorted(by_map, higher_first=True), by_map
    assert [run for run, v in by_map if v is None] == ["stl-seg", "stl-depth"]  # blanks last
    by_rel = _click(browser, "depth/abs_rel ↓")  # lower is better: B (0.19) on top
    assert by_rel[0][0] == "B" and _sorted(by_rel, higher_first=False), by_rel
    assert _sorted(_click(browser, "depth/abs_rel ↓"), higher_first=True)  # the second click reverses
    by_dm = _click(browser, "Δm% per-task ↓")  # lower is better: equal (-4.3) on top
    assert by_dm[0][0] == "equal" and _sorted(by_dm, higher_first=False), by_dm
    assert _click(browser, "run")[0][0] == "B"  # text: alphabetical first

    transfer = browser.execute_script("""const s = document.querySelector("section.transfer");
      return s && [s.querySelectorAll("table").length, Array.from(s.querySelectorAll("img")).map(
        i => [i.alt, i.complete && i.naturalWidth > 0]), s.textContent.includes("positive = worse")];""")
    assert transfer is not None, "the page lacks the transfer report"
    tables, images, sign_stated = transfer
    assert tables >= 1 and sign_stated
    assert dict(images) == {"conflict_curves": True, "conflict_heatmap": True}  # decoded, not broken

    shot = tmp_path / "page.png"
    assert browser.save_screenshot(str(shot))
    assert Image.open(shot).size[0] == WIDTH


def test_a_missing_browser_is_named_with_the_packages_to_install(monkeypatch):
    monkeypatch.setattr("perception_mtl.analysis.browser.shutil.which",
                        lambda name: None if name == "chromedriver" else f"/usr/bin/{name}")
    with pytest.raises(BrowserMissing, match=r"chromedriver not on PATH: apt-get install -y chromium chromium-driver"):
        chromium()


def test_a_figure_the_report_shows_but_lacks_is_named(tmp_path):
    from perception_mtl.analysis.render import transfer_html

    (tmp_path / "transfer_report.md").write_text("# Negative-transfer report\n\n![affinity](affinity.png)\n")
    with pytest.raises(FileNotFoundError, match=r"shows affinity.png, which is not in .*analyze_transfer.py"):
        transfer_html(tmp_path / "transfer_report.md")
