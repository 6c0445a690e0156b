"""Fail on a broken internal link of the built site: every href and src of every page must name a file of the
site, and every #fragment an id in that file. External links (http:, mailto:, ...) are not followed.

Usage: python docs/check_links.py [docs/_build/html]
"""
from __future__ import annotations

import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit


class Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids: set[str] = set()
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("id", "name") and value:
                self.ids.add(value)
            elif name in ("href", "src") and value:
                self.links.append(value)


def broken_links(site: Path) -> list[str]:
    """'page: link' for each internal link of the HTML files under ``site`` whose target is missing."""
    pages = {}
    for path in sorted(site.rglob("*.html")):
        page = Page()
        page.feed(path.read_text(encoding="utf-8"))
        pages[path.resolve()] = page
    broken = []
    for path, page in pages.items():
        for link in page.links:
            parts = urlsplit(link)
            if parts.scheme or parts.netloc:
                continue
            target = (path.parent / unquote(parts.path)).resolve() if parts.path else path
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                broken.append(f"{path.relative_to(site.resolve())}: {link} (no such file)")
            elif parts.fragment and target in pages and unquote(parts.fragment) not in pages[target].ids:
                broken.append(f"{path.relative_to(site.resolve())}: {link} (no such anchor)")
    return broken


def main(argv: list[str]) -> int:
    site = Path(argv[1] if len(argv) > 1 else Path(__file__).parent / "_build" / "html")
    if not (site / "index.html").exists():
        print(f"no built site at {site}", file=sys.stderr)
        return 2
    broken = broken_links(site)
    for line in broken:
        print("broken link:", line)
    count = sum(1 for _ in site.rglob("*.html"))
    print(f"{len(broken)} broken internal links in {count} pages" if broken else f"internal links OK ({count} pages)")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
