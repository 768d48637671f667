"""Reading the dashboard's HTML in tests: a section's table as rows of cell texts, and its visible text."""

from __future__ import annotations

from html.parser import HTMLParser


class _Section(HTMLParser):
    def __init__(self, element_id: str) -> None:
        super().__init__(convert_charrefs=True)
        self.element_id = element_id
        self.depth = 0  # > 0 while inside the element with that id
        self.rows: list[list[str]] = []
        self.cell: list[str] | None = None
        self.text: list[str] = []
        self.found = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.depth:
            self.depth += tag not in VOID
        elif dict(attrs).get("id") == self.element_id:
            self.depth, self.found = 1, True
        if not self.depth:
            return
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th") and self.rows:
            self.cell = []

    def handle_endtag(self, tag: str) -> None:
        if not self.depth:
            return
        if tag in ("td", "th") and self.cell is not None:
            self.rows[-1].append(" ".join("".join(self.cell).split()))
            self.cell = None
        self.depth -= tag not in VOID

    def handle_data(self, data: str) -> None:
        if self.depth:
            self.text.append(data)
            if self.cell is not None:
                self.cell.append(data)


VOID = {"area", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


def section(page: str, element_id: str) -> _Section:
    parser = _Section(element_id)
    parser.feed(page)
    assert parser.found, f"no element with id {element_id!r} in the page"
    return parser


def rows(page: str, element_id: str) -> list[list[str]]:
    """The body rows (header rows left out) of the tables inside the element with that id."""
    return [r for r in section(page, element_id).rows if r and r[0] not in HEADERS]


def text(page: str, element_id: str) -> str:
    return " ".join("".join(section(page, element_id).text).split())


HEADERS = {"Symbol", "Order", "Alert"}
