"""Reading the dashboard's tables back from its HTML, as an operator would read them."""

from html.parser import HTMLParser


class _Tables(HTMLParser):
    """Collects, per table id, each row's data-key and the text of its cells that carry a data-metric."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, dict[str, dict[str, str]]] = {}
        self._table: str | None = None
        self._row: str | None = None
        self._metric: str | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "table" and attributes.get("id"):
            self._table = attributes["id"]
            self.tables.setdefault(self._table, {})
        elif tag == "tr" and self._table and attributes.get("data-key") is not None:
            self._row = attributes["data-key"] or ""
            self.tables[self._table][self._row] = {}
        elif tag in ("td", "th") and self._row is not None:
            self._metric = attributes.get("data-metric") or ("label" if tag == "th" else None)
            self._text = []

    def handle_data(self, data: str) -> None:
        if self._metric:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._metric and self._table and self._row is not None:
            self.tables[self._table][self._row][self._metric] = " ".join("".join(self._text).split())
            self._metric = None
        elif tag == "tr":
            self._row = None
        elif tag == "table":
            self._table = None


def tables_of(html: str) -> dict[str, dict[str, dict[str, str]]]:
    """{table id: {row key: {metric: cell text}}}; a row's first header cell is its "label"."""
    parser = _Tables()
    parser.feed(html)
    return parser.tables


def numbers(row: dict[str, str], *metrics: str) -> tuple[str, ...]:
    return tuple(row[metric] for metric in metrics)
