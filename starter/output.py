"""How `enroll` prints: readable tables and key-value blocks for people, JSON (--json) for scripts."""

from __future__ import annotations

import json
import sys
import unicodedata
from collections.abc import Iterable, Sequence


def _width(text: str) -> int:
    # Chinese characters take two columns in a terminal.
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, (list, tuple)):
        return "; ".join(str(v) for v in value) or "-"
    return str(value)


class Output:
    def __init__(self, as_json: bool, stream=None):
        self.as_json = as_json
        self.stream = stream or sys.stdout

    def row(self, document: dict, columns: Sequence[str], widths: dict[str, int] | None = None) -> None:
        """One record as it comes (streamed): a JSON line, or one table row."""
        if self.as_json:
            print(json.dumps(document, ensure_ascii=False, default=str), file=self.stream, flush=True)
            return
        cells = [_cell(document.get(column)) for column in columns]
        sizes = widths or {}
        print(
            "  ".join(
                c + " " * max(0, sizes.get(col, 0) - _width(c)) for col, c in zip(columns, cells, strict=True)
            ).rstrip(),
            file=self.stream,
            flush=True,
        )

    def header(self, columns: Sequence[str], widths: dict[str, int]) -> None:
        if not self.as_json:
            self.row({c: c.upper() for c in columns}, columns, widths)

    def table(self, documents: Iterable[dict], columns: Sequence[str]) -> None:
        documents = list(documents)
        if self.as_json:
            for document in documents:
                self.row(document, columns)
            return
        widths = {c: max([_width(c)] + [_width(_cell(d.get(c))) for d in documents]) for c in columns}
        self.header(columns, widths)
        for document in documents:
            self.row(document, columns, widths)
        print(f"({len(documents)} rows)", file=self.stream)

    def document(self, document: dict, timeline: list[dict] | None = None) -> None:
        """A single record: JSON, or `key: value` lines with an optional timeline table."""
        if self.as_json:
            print(json.dumps(document, ensure_ascii=False, indent=2, default=str), file=self.stream)
            return
        for key, value in document.items():
            if key == "timeline" or value in (None, [], {}):
                continue
            if isinstance(value, dict):
                value = ", ".join(f"{k}={v.get('outcome', v) if isinstance(v, dict) else v}" for k, v in value.items())
            print(f"{key:>22}: {_cell(value)}", file=self.stream)
        if timeline:
            print("", file=self.stream)
            self.table(timeline, ["at", "step", "actor", "detail"])


def progress(done: int, total: int | None, label: str) -> None:
    """Progress on stderr, so stdout stays the results."""
    of = f"/{total}" if total else ""
    print(f"\r{label}: {done}{of}", end="" if sys.stderr.isatty() else "\n", file=sys.stderr, flush=True)
