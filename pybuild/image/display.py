"""How Docker shows sizes, ages, times and tables, reproduced for pybuild's image commands.

``human_size`` and ``human_duration`` follow docker/go-units (decimal units, three significant digits;
"2 minutes ago"); ``table`` lays columns out like Docker's tabwriter (minimum width 10, padding 3).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

_UNITS = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")


def human_size(size: float, precision: int = 3) -> str:
    """``4261550`` -> ``4.26MB``, as ``docker images`` shows sizes."""
    i = 0
    while size >= 1000.0 and i < len(_UNITS) - 1:
        size /= 1000.0
        i += 1
    return f"{size:.{precision}g}{_UNITS[i]}"


def human_duration(seconds: float) -> str:
    """A duration as Docker words it: "Less than a second", "About a minute", "3 days", "2 years"."""
    if seconds < 1:
        return "Less than a second"
    if seconds < 2:
        return "1 second"
    minutes = seconds / 60
    if minutes < 1:
        return f"{int(seconds)} seconds"
    if int(minutes) == 1:
        return "About a minute"
    if minutes < 60:
        return f"{int(minutes)} minutes"
    hours = int(seconds / 3600 + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // (24 * 7)} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // (24 * 30)} months"
    return f"{hours // (24 * 365)} years"


def parse_time(text: str | None) -> datetime | None:
    """An RFC 3339 timestamp from an image config (nanosecond fractions allowed), or None."""
    if not text:
        return None
    s = text.strip().replace("Z", "+00:00").replace("z", "+00:00")
    # Python takes at most 6 fraction digits; Go writes up to 9.
    if "." in s:
        head, _, rest = s.partition(".")
        digits = "".join(c for c in rest if c.isdigit())
        s = head + "." + digits[:6].ljust(6, "0") + rest[len(digits):]
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def since(created: str | None, now: float | None = None) -> str:
    """"2 minutes ago" for a config's created time; "N/A" when unknown (as Docker shows it)."""
    dt = parse_time(created)
    if dt is None or dt.year <= 1:
        return "N/A"
    age = (time.time() if now is None else now) - dt.timestamp()
    return human_duration(max(age, 0)) + " ago"


def go_time(created: str | None) -> str:
    """Go's time.String() in UTC, as ``docker images --format json`` writes CreatedAt."""
    dt = parse_time(created)
    if dt is None:
        return "0001-01-01 00:00:00 +0000 UTC"
    return dt.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S +0000 UTC")


def rfc3339(created: str | None) -> str:
    dt = parse_time(created)
    if dt is None:
        return "0001-01-01T00:00:00Z"
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def ellipsis(text: str, width: int) -> str:
    """Shorten to width characters, the last being "…" (Docker's stringutils.Ellipsis)."""
    if len(text) <= width:
        return text
    return text[: width - 1] + "…"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded like Docker's tabwriter: each but the last is max(widest + 3, 10) wide."""
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    lines = []
    for row in (headers, *rows):
        parts = [cell.ljust(max(widths[i] + 3, 10)) for i, cell in enumerate(row[:-1])]
        lines.append(("".join(parts) + row[-1]).rstrip())
    return "\n".join(lines)


def go_json(obj: Mapping[str, Any] | Sequence[Any]) -> str:
    """JSON as Go's encoder writes it for ``--format json``: sorted keys, <, > and & escaped."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
