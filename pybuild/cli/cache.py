"""`pybuild cache ls|du|prune`: look at and trim the build cache (like `docker builder du/prune`)."""

from __future__ import annotations

import typer

from pybuild.cli.app import app, default_root
from pybuild.errors import UsageError

cache_app = typer.Typer(
    name="cache", help="Inspect and prune the build cache.", no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(cache_app, name="cache")


@cache_app.command("ls")
def ls() -> None:
    """List cache records, most recently used first.

    Example: pybuild cache ls
    """
    import time

    from pybuild.image.display import ellipsis, human_duration, human_size, table
    from pybuild.store import Store

    with Store.open(default_root()) as store:
        records = store.cache.records()
    now = time.time()
    rows = [(r.key.removeprefix("sha256:")[:12], human_size(r.size), human_duration(now - r.last_used) + " ago",
             ellipsis(r.instruction, 60)) for r in records]
    typer.echo(table(("CACHE ID", "SIZE", "LAST USED", "INSTRUCTION"), rows))


@cache_app.command("du")
def du() -> None:
    """Show how much space the build cache's layers take.

    Example: pybuild cache du
    """
    from pybuild.image.display import human_size
    from pybuild.store import Store

    with Store.open(default_root()) as store:
        records = store.cache.records()
    total = sum(r.size for r in records)
    typer.echo(f"Records:\t{len(records)}")
    typer.echo(f"Total:\t\t{human_size(total)}")


@cache_app.command("prune")
def prune(
    all_: bool = typer.Option(False, "--all", "-a", help="Remove every cache record."),
    keep_storage: str | None = typer.Option(None, "--keep-storage", help="Keep this much cache (e.g. 2GB)."),
    filter_: list[str] = typer.Option([], "--filter", help="until=DURATION: only records unused for DURATION."),
) -> None:
    """Remove build cache records, least recently used first; never what a named image needs.

    Example: pybuild cache prune --keep-storage 5GB --filter until=24h
    """
    from pybuild.image.display import human_size
    from pybuild.store import Store

    older: float | None = None
    for f in filter_:
        key, _, value = f.partition("=")
        if key != "until" or not value:
            raise UsageError(f"invalid --filter {f!r}: expected until=DURATION (e.g. until=24h)")
        older = parse_duration(value)
    keep = parse_size(keep_storage) if keep_storage is not None else None
    with Store.open(default_root()) as store:
        count, report = store.cache.prune(everything=all_, keep_storage=keep, older_than=older)
    typer.echo(f"Removed {count} cache record(s)")
    typer.echo(f"Total reclaimed space: {human_size(report.freed_bytes)}")


_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3, "gb": 1000**3,
          "kib": 1024, "mib": 1024**2, "gib": 1024**3, "t": 1000**4, "tb": 1000**4}


def parse_size(text: str) -> int:
    import re

    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    if not m or m.group(2).lower() not in _UNITS:
        raise UsageError(f"invalid size {text!r}: expected a number with an optional unit (e.g. 500MB, 2GB)")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def parse_duration(text: str) -> float:
    """Go-style durations as Docker takes them: 90m, 24h, 1h30m, 10s."""
    import re

    parts = re.findall(r"(\d+(?:\.\d+)?)(h|m|s)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise UsageError(f"invalid duration {text!r}: expected e.g. 24h, 90m, 1h30m")
    return sum(float(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in parts)
