"""Escaped-by-default HTML from plain string templates (no template engine is installed).

Every value put into a template goes through `escape` unless it is already
`Markup` (HTML this module built). `escape` also masks anything shaped like a
resident identity number, so no page can show one in full by accident.
"""

from __future__ import annotations

import datetime as dt
import html
import re
from functools import cache
from importlib import resources
from string import Template

from enrollment import identity
from enrollment.china_time import CHINA

_ID_NUMBER = re.compile(r"(?<![0-9A-Za-z])[0-9]{17}[0-9Xx](?![0-9A-Za-z])")


class Markup(str):
    """A string that is already safe HTML."""


def mask_identity_numbers(text: str) -> str:
    return _ID_NUMBER.sub(lambda match: identity.mask(match.group(0)), text)


def escape(value: object) -> Markup:
    if isinstance(value, Markup):
        return value
    if value is None or value == "":
        return Markup("—")
    if isinstance(value, bool):
        value = "是 yes" if value else "否 no"
    elif isinstance(value, dt.datetime):
        value = when(value)
    return Markup(html.escape(mask_identity_numbers(str(value)), quote=True))


def when(moment: dt.datetime | str | None) -> str:
    """A moment in China time, to the second."""
    if moment is None:
        return "—"
    if isinstance(moment, str):
        try:
            moment = dt.datetime.fromisoformat(moment)
        except ValueError:
            return moment
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return moment.astimezone(CHINA).strftime("%Y-%m-%d %H:%M:%S")


def fill(template: str, **values: object) -> Markup:
    """Substitute escaped values into an inline `$name` template."""
    return Markup(Template(template).substitute({key: escape(value) for key, value in values.items()}))


@cache
def _template(name: str) -> Template:
    return Template((resources.files("console") / "templates" / f"{name}.html").read_text(encoding="utf-8"))


def render(name: str, **values: object) -> Markup:
    """A template from console/templates/<name>.html with escaped values."""
    return Markup(_template(name).substitute({key: escape(value) for key, value in values.items()}))


def join(parts) -> Markup:
    return Markup("".join(escape(part) for part in parts))


def table(headers: list[str], rows: list[list[object]], empty: str, table_id: str | None = None) -> Markup:
    if not rows:
        return fill('<p class="muted">$empty</p>', empty=empty)
    head = join(fill("<th>$h</th>", h=h) for h in headers)
    body = join(fill("<tr>$cells</tr>", cells=join(fill("<td>$c</td>", c=c) for c in row)) for row in rows)
    opening = fill('<table id="$id">', id=table_id) if table_id else Markup("<table>")
    return Markup(f"{opening}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
