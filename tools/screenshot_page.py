"""Screenshot of a page (e.g. a leaderboard.html) in headless Chromium at a given viewport.

    python tools/screenshot_page.py PAGE.html OUT.png [--width 1400] [--height 1000]

Needs Debian's chromium and chromium-driver and the test extra (selenium). Reports how far the
page overflows the viewport horizontally (0 = no horizontal scrollbar).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from perception_mtl.analysis.browser import BrowserMissing, chromium, horizontal_overflow  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("page", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--width", type=int, default=1400)
    p.add_argument("--height", type=int, default=1000)
    args = p.parse_args(argv)
    if not args.page.is_file():
        p.exit(2, f"error: no page at {args.page}\n")
    try:
        driver = chromium(args.width, args.height)
    except BrowserMissing as err:
        p.exit(2, f"error: {err}\n")
    try:
        driver.get(args.page.resolve().as_uri())
        overflow = horizontal_overflow(driver)
        if not driver.save_screenshot(str(args.out)):
            p.exit(2, f"error: could not write {args.out}\n")
    finally:
        driver.quit()
    print(f"written: {args.out} ({args.width}x{args.height}; horizontal overflow {overflow} px)")


if __name__ == "__main__":
    main()
