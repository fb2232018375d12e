"""`pybuild store ...`: maintenance of the local store (verify, gc).

`pybuild prune` lives with the image commands and calls :meth:`pybuild.store.Store.prune`.
"""

from __future__ import annotations

import typer

from pybuild.cli.app import app, default_root

store_app = typer.Typer(
    name="store", help="Maintain the local store (blobs, layers, image names).", no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(store_app, name="store")


@store_app.command("verify")
def verify() -> None:
    """Re-hash every blob and check every record points at existing content; exit 1 on damage.

    Example: pybuild --root /var/lib/pybuild store verify
    """
    from pybuild.store import Store

    with Store.open(default_root()) as store:
        problems = store.verify()
    for p in problems:
        typer.echo(str(p))
    if problems:
        typer.echo(f"{len(problems)} problem(s) found in {default_root()}", err=True)
        raise typer.Exit(1)
    typer.echo("store OK")


@store_app.command("gc")
def gc() -> None:
    """Delete content that no image, build cache entry or running build references.

    Example: pybuild store gc
    """
    from pybuild.image.display import human_size
    from pybuild.store import Store

    with Store.open(default_root()) as store:
        rep = store.gc()
    typer.echo(f"removed {len(rep.blobs)} blob(s), {len(rep.layers)} layer(s); freed {human_size(rep.freed_bytes)}")
