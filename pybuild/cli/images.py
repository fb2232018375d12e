"""Image commands: images, tag, rmi, inspect, history, import, save, load, prune.

Each command parses its flags, opens the store at ``default_root()`` and calls one function of
``pybuild.image`` (or the store); output is shaped like Docker's.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from pybuild.cli.app import app, default_root
from pybuild.errors import PybuildError, UsageError


def _format(value: str | None) -> bool:
    """True for --format json; other Go templates are not supported."""
    if value is None or value in ("", "table"):
        return False
    if value == "json":
        return True
    raise UsageError(f"unsupported --format {value!r}", hint="use --format json (Go templates are not supported)")


@app.command("images")
def images(
    repository: str | None = typer.Argument(None, metavar="[REPOSITORY[:TAG]]"),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="Only show image IDs."),
    no_trunc: bool = typer.Option(False, "--no-trunc", help="Show full image IDs."),
    fmt: str | None = typer.Option(None, "--format", help="json: one JSON object per line."),
) -> None:
    """List images: REPOSITORY TAG IMAGE ID CREATED SIZE.

    Example: pybuild images busybox --format json
    """
    from pybuild.image.display import go_json, table
    from pybuild.image.query import image_rows
    from pybuild.store import Store

    as_json = _format(fmt)
    with Store.open(default_root()) as store:
        rows = image_rows(store, repository)
    if quiet:
        seen: list[str] = []
        for r in rows:
            shown = r.id if no_trunc else r.short_id
            if shown not in seen:
                seen.append(shown)
        for shown in seen:
            typer.echo(shown)
    elif as_json:
        for r in rows:
            obj = r.to_json()
            if no_trunc:
                obj["ID"] = r.id
            typer.echo(go_json(obj))
    else:
        cells = [r.cells() for r in rows]
        if no_trunc:
            for c, r in zip(cells, rows, strict=True):
                c[2] = r.id
        typer.echo(table(["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"], cells))


@app.command("tag")
def tag(
    source: str = typer.Argument(..., metavar="SOURCE_IMAGE[:TAG]"),
    target: str = typer.Argument(..., metavar="TARGET_IMAGE[:TAG]"),
) -> None:
    """Create a name TARGET that refers to SOURCE.

    Example: pybuild tag hello:1 registry.example.com/team/hello:1
    """
    from pybuild.image.manage import tag_image
    from pybuild.store import Store

    with Store.open(default_root()) as store:
        tag_image(store, source, target)


@app.command("rmi")
def rmi(
    refs: list[str] = typer.Argument(..., metavar="IMAGE..."),
    force: bool = typer.Option(False, "-f", "--force", help="Remove even if other names or child images use it."),
) -> None:
    """Remove images (untag names; delete an image when its last name goes).

    Example: pybuild rmi hello:1
    """
    from pybuild.image.manage import remove_image
    from pybuild.store import Store

    errors: list[PybuildError] = []
    with Store.open(default_root()) as store:
        deleted = False
        for ref in refs:
            try:
                result = remove_image(store, ref, force=force)
            except PybuildError as e:
                errors.append(e)
                continue
            deleted = deleted or result.deleted is not None
            for line in result.lines():
                typer.echo(line)
        if deleted:
            store.gc()
    if errors:
        if len(errors) == 1:
            raise errors[0]
        for err in errors[:-1]:
            typer.echo(err.render(), err=True)
        raise errors[-1]


@app.command("inspect")
def inspect(refs: list[str] = typer.Argument(..., metavar="IMAGE...")) -> None:
    """Show images' details as a JSON array, like `docker image inspect`.

    Example: pybuild inspect hello:1
    """
    from pybuild.image.query import inspect_image
    from pybuild.store import Store

    out = []
    missing: list[str] = []
    with Store.open(default_root()) as store:
        for ref in refs:
            img = store.find(ref)
            if img is None:
                missing.append(ref)
            else:
                out.append(inspect_image(store, img))
    typer.echo(json.dumps(out, indent=4))
    if missing:
        raise PybuildError(f"no such image: {', '.join(missing)}", hint="`pybuild images` lists the local images")


@app.command("history")
def history(
    ref: str = typer.Argument(..., metavar="IMAGE"),
    no_trunc: bool = typer.Option(False, "--no-trunc", help="Don't truncate output."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="Only show image IDs."),
    fmt: str | None = typer.Option(None, "--format", help="json: one JSON object per line."),
) -> None:
    """Show the history of an image: IMAGE CREATED CREATED BY SIZE COMMENT.

    Example: pybuild history --no-trunc hello:1
    """
    from pybuild.image.display import go_json, table
    from pybuild.image.query import history_rows, history_table
    from pybuild.store import Store

    as_json = _format(fmt)
    with Store.open(default_root()) as store:
        rows = history_rows(store.resolve(ref))
    if quiet:
        for cells in history_table(rows, no_trunc=no_trunc):
            typer.echo(cells[0])
    elif as_json:
        for r in rows:
            typer.echo(go_json(r.to_json(no_trunc=no_trunc)))
    else:
        typer.echo(table(["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"], history_table(rows, no_trunc=no_trunc)))


@app.command("import")
def import_(
    source: str = typer.Argument(..., metavar="FILE|-"),
    name: str | None = typer.Argument(None, metavar="[REPOSITORY[:TAG]]"),
    change: list[str] = typer.Option([], "-c", "--change", help="Apply a Dockerfile instruction (CMD, ENV, ...)."),
    message: str | None = typer.Option(None, "-m", "--message", help="Commit message for the imported image."),
    compression: str = typer.Option("gzip", "--compression", help="Layer compression: gzip, zstd or none."),
) -> None:
    """Import a root filesystem tarball (plain, gzip, zstd, xz or bzip2) as a one-layer image.

    Example: tar -C rootfs -c . | pybuild import --change 'CMD ["sh"]' - mybase:1
    """
    from pybuild.image.importer import import_tarball
    from pybuild.store import Store

    with Store.open(default_root()) as store:
        if source == "-":
            img = import_tarball(store, None, name, changes=change, message=message, compression=compression,
                                 stdin=sys.stdin.buffer)
        else:
            img = import_tarball(store, Path(source), name, changes=change, message=message,
                                 compression=compression)
    typer.echo(img.id)


@app.command("save")
def save(
    refs: list[str] = typer.Argument(..., metavar="IMAGE..."),
    output: Path | None = typer.Option(None, "-o", "--output", help="Write to a file instead of stdout."),
    fmt: str = typer.Option("docker", "--format", help="docker (docker-archive) or oci (oci-archive)."),
) -> None:
    """Save images to a tar archive that docker/podman load and skopeo read.

    Example: pybuild save -o hello.tar hello:1
    """
    from pybuild.export.common import ArchiveFormat
    from pybuild.image.transfer import save_images
    from pybuild.store import Store

    try:
        archive_format = ArchiveFormat(fmt)
    except ValueError:
        raise UsageError(f"unknown archive format {fmt!r}", hint="use --format docker or --format oci") from None
    with Store.open(default_root()) as store:
        save_images(store, refs, output, archive_format)


@app.command("load")
def load(
    input_: Path | None = typer.Option(None, "-i", "--input", help="Read from a file instead of stdin."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="Suppress the load output."),
) -> None:
    """Load images from a docker-archive or OCI-archive tar (optionally compressed).

    Example: pybuild load -i hello.tar
    """
    from pybuild.image.transfer import load_images
    from pybuild.store import Store

    if input_ is None and sys.stdin.isatty():
        raise UsageError("requested load from stdin, but stdin is empty", hint="use -i FILE or redirect stdin")
    with Store.open(default_root()) as store:
        loaded = load_images(store, input_, None if input_ is not None else sys.stdin.buffer)
    if not quiet:
        for img in loaded:
            for line in img.lines():
                typer.echo(line)


@app.command("prune")
def prune(
    all_images: bool = typer.Option(False, "-a", "--all", help="Remove every image, not only nameless ones."),
    force: bool = typer.Option(False, "-f", "--force", help="Do not prompt for confirmation."),
) -> None:
    """Remove nameless images (every image with -a) and all content nothing references.

    Example: pybuild prune -a
    """
    from pybuild.image.display import human_size
    from pybuild.image.manage import prune as prune_images
    from pybuild.store import Store

    if not force and sys.stdin.isatty():
        what = "all images" if all_images else "all dangling images and unreferenced content"
        if not typer.confirm(f"WARNING! This will remove {what}.\nAre you sure you want to continue?"):
            raise typer.Exit(0)
    with Store.open(default_root()) as store:
        report = prune_images(store, all_images=all_images)
    if report.images:
        typer.echo("Deleted Images:")
        for name in report.names:
            typer.echo(f"untagged: {name}")
        for digest in report.images:
            typer.echo(f"deleted: {digest}")
        typer.echo("")
    typer.echo(f"Total reclaimed space: {human_size(report.freed_bytes)}")
