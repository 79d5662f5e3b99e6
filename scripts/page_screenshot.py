"""Write a PNG screenshot of a rendered leaderboard page (a folder holding index.html), as a
headless chromium shows it: a fixed viewport width, the first screen or the whole page.

Usage: python scripts/page_screenshot.py FOLDER OUT.png [--width 1280] [--height 900] [--full-page]
       [--browser /usr/bin/chromium]

The browser is the system's chromium (Debian: apt-get install chromium) driven by Playwright
(pip install -e '.[dev]'); ``playwright install`` is never needed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.render.outputs import PAGE_FILE


def screenshot(folder: Path, out: Path, width: int = 1280, height: int = 900,
               full_page: bool = False, browser: Path = Path("/usr/bin/chromium")) -> None:
    from playwright.sync_api import sync_playwright

    page_file = folder.resolve() / PAGE_FILE
    if not page_file.is_file():
        raise SystemExit(f"page_screenshot: no {PAGE_FILE} in {folder}")
    if not browser.exists():
        raise SystemExit(f"page_screenshot: no browser at {browser} (apt-get install chromium)")
    out.parent.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(browser))
        page = chromium.new_page(viewport={"width": width, "height": height})
        errors: list[str] = []
        page.on("console", lambda message: message.type == "error" and errors.append(message.text))
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(page_file.as_uri(), wait_until="load")
        page.screenshot(path=str(out), full_page=full_page, animations="disabled")
        chromium.close()
    for error in errors:
        print(f"page_screenshot: the page reported: {error}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help=f"a folder holding {PAGE_FILE}")
    parser.add_argument("out", type=Path, help="the PNG to write")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=900)
    parser.add_argument("--full-page", action="store_true", help="the whole page, not one screen")
    parser.add_argument("--browser", type=Path, default=Path("/usr/bin/chromium"))
    args = parser.parse_args()
    screenshot(args.folder, args.out, args.width, args.height, args.full_page, args.browser)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
