"""Registry commands: login, logout, search, pull, push (flags -> one library call)."""

from __future__ import annotations

import sys

import typer

from pybuild.cli.app import app
from pybuild.errors import UsageError


@app.command("login")
def login(
    server: str | None = typer.Argument(None, metavar="[SERVER]"),
    username: str | None = typer.Option(None, "-u", "--username", help="Username."),
    password: str | None = typer.Option(None, "-p", "--password", help="Password (prefer --password-stdin)."),
    password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the password from stdin."),
    tls_verify: bool = typer.Option(True, "--tls-verify/--no-tls-verify", help="Verify the registry's TLS."),
) -> None:
    """Log in to a registry (checks the credentials, then saves them in Docker's config.json, mode 0600).

    Example: echo "$TOKEN" | pybuild login -u ci --password-stdin registry.example.com
    """
    from pybuild.registry.login import login as do_login

    if password_stdin:
        if password is not None:
            raise UsageError("--password and --password-stdin are mutually exclusive")
        if username is None:
            raise UsageError("--password-stdin needs a username (-u)")
        password = sys.stdin.read().rstrip("\r\n")
    if username is None:
        if not sys.stdin.isatty():
            raise UsageError("login needs a username (-u) when stdin is not a terminal")
        username = typer.prompt("Username")
    if password is None:
        if not sys.stdin.isatty():
            raise UsageError("login needs a password", hint="--password-stdin reads it from standard input")
        import getpass

        password = getpass.getpass("Password: ")
    res = do_login(server, username, password, tls_verify=None if tls_verify else False)
    typer.echo(f"Login Succeeded ({res.registry}; credentials saved in {res.config})")


@app.command("logout")
def logout(server: str | None = typer.Argument(None, metavar="[SERVER]")) -> None:
    """Remove a registry's saved credentials.

    Example: pybuild logout registry.example.com
    """
    from pybuild.registry.login import logout as do_logout

    host, found = do_logout(server)
    typer.echo(f"Removing login credentials for {host}" if found else f"Not logged in to {host}")


@app.command("search")
def search(
    term: str = typer.Argument(..., metavar="[REGISTRY/]TERM"),
    limit: int = typer.Option(25, "--limit", help="Show at most this many results."),
    tls_verify: bool = typer.Option(True, "--tls-verify/--no-tls-verify", help="Verify the registry's TLS."),
) -> None:
    """Search a registry's catalog for repositories whose name contains TERM.

    Example: pybuild search localhost:5000/app
    """
    from pybuild.registry.login import search as do_search

    names = do_search(term, limit=limit, tls_verify=None if tls_verify else False)
    typer.echo("NAME")
    for n in names:
        typer.echo(n)


@app.command("pull")
def pull(
    reference: str = typer.Argument(..., metavar="NAME[:TAG|@DIGEST]"),
    platform: str | None = typer.Option(None, "--platform", help="Pull this platform's image (e.g. linux/arm64)."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="Print only the image's full name."),
    tls_verify: bool = typer.Option(True, "--tls-verify/--no-tls-verify", help="Verify the registry's TLS."),
) -> None:
    """Download an image from a registry into the store.

    Example: pybuild pull --platform linux/arm64 localhost:5000/team/app:1
    """
    from pybuild.cli.app import default_root
    from pybuild.planner.platform import parse_platform
    from pybuild.registry.pull import pull_image
    from pybuild.store import Store

    want = parse_platform(platform) if platform else None

    def progress(short: str, status: str) -> None:
        if not quiet:
            typer.echo(f"{short}: {status}")

    with Store.open(default_root()) as store:
        res = pull_image(store, reference, want, tls_verify=None if tls_verify else False, progress=progress)
    ref = res.remote.reference
    if not quiet:
        typer.echo(f"Digest: {res.remote.index_digest or res.remote.manifest_digest}")
        status = "Downloaded newer image" if res.downloaded else "Image is up to date"
        typer.echo(f"Status: {status} for {ref.familiar()}")
    typer.echo(ref.full())


@app.command("push")
def push(
    image: str = typer.Argument(..., metavar="IMAGE"),
    dest: str | None = typer.Argument(None, metavar="[DESTINATION]"),
    digestfile: str | None = typer.Option(None, "--digestfile", help="Write the pushed manifest digest here."),
    compression: str | None = typer.Option(None, "--compression", help="Convert layers to gzip or zstd."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="Print only the digest."),
    tls_verify: bool = typer.Option(True, "--tls-verify/--no-tls-verify", help="Verify the registry's TLS."),
) -> None:
    """Upload a stored image to a registry (to its own name, or to DESTINATION).

    Example: pybuild push hello:1 localhost:5000/team/hello:1
    """
    from pathlib import Path

    from pybuild.cli.app import default_root
    from pybuild.errors import PybuildError
    from pybuild.registry.push import push_image
    from pybuild.store import Store

    def progress(short: str, status: str) -> None:
        if not quiet:
            typer.echo(f"{short}: {status}")

    with Store.open(default_root()) as store:
        res = push_image(store, image, dest, tls_verify=None if tls_verify else False, compression=compression,
                         progress=progress)
    if digestfile:
        try:
            Path(digestfile).write_text(res.digest)
        except OSError as e:
            raise PybuildError(f"cannot write {digestfile}: {e.strerror}") from None
    if quiet:
        typer.echo(res.digest)
    else:
        typer.echo(f"{res.reference}: digest: {res.digest} size: {res.size}")
