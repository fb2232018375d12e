"""How each metadata instruction changes the image config, and the history line it leaves (Docker's rules).

Pure functions over the OCI model: no files, no store. The CMD/ENTRYPOINT interplay follows Docker: an
ENTRYPOINT instruction clears a CMD inherited from the base image (unless this stage set CMD itself).
"""

from __future__ import annotations

from dataclasses import replace

from pybuild.model import instructions as ins
from pybuild.model.oci import ContainerConfig, Healthcheck


def set_env(env: tuple[str, ...], key: str, value: str) -> tuple[str, ...]:
    """Replace KEY in place if present (keeping its position, as Docker does), else append it."""
    out = list(env)
    for i, item in enumerate(out):
        if item.partition("=")[0] == key:
            out[i] = f"{key}={value}"
            return tuple(out)
    out.append(f"{key}={value}")
    return tuple(out)


def command_argv(cmd: tuple[str, ...], prepend_shell: bool, shell: tuple[str, ...]) -> tuple[str, ...]:
    """Shell form runs through the SHELL in effect; exec form is the argv as written."""
    return (*shell, " ".join(cmd)) if prepend_shell else cmd


def apply(
    cfg: ContainerConfig, inst: ins.Instruction, *, shell: tuple[str, ...], workdir: str, cmd_set: bool
) -> ContainerConfig:
    """The container config after a metadata instruction (RUN/COPY/ADD/FROM/ARG leave it unchanged).

    `workdir` is the planner's normalised directory for WORKDIR; `cmd_set` says whether this stage already set
    CMD (then ENTRYPOINT keeps it).
    """
    if isinstance(inst, ins.Env):
        env = cfg.env
        for p in inst.pairs:
            env = set_env(env, p.key, p.value)
        return replace(cfg, env=env)
    if isinstance(inst, ins.Label):
        labels = dict(cfg.labels)
        labels.update({p.key: p.value for p in inst.pairs})
        return replace(cfg, labels=labels)
    if isinstance(inst, ins.Expose):
        return replace(cfg, exposed_ports=tuple(sorted(set(cfg.exposed_ports) | set(inst.ports))))
    if isinstance(inst, ins.Volume):
        return replace(cfg, volumes=tuple(sorted(set(cfg.volumes) | set(inst.paths))))
    if isinstance(inst, ins.Workdir):
        return replace(cfg, working_dir=workdir)
    if isinstance(inst, ins.User):
        return replace(cfg, user=inst.user)
    if isinstance(inst, ins.StopSignal):
        return replace(cfg, stop_signal=inst.signal)
    if isinstance(inst, ins.Healthcheck):
        h = inst.health
        return replace(cfg, healthcheck=Healthcheck(test=h.test, interval=h.interval, timeout=h.timeout,
                                                    start_period=h.start_period, start_interval=h.start_interval,
                                                    retries=h.retries))
    if isinstance(inst, ins.Shell):
        return replace(cfg, shell=inst.shell)
    if isinstance(inst, ins.Onbuild):
        return replace(cfg, on_build=(*cfg.on_build, inst.expression))
    if isinstance(inst, ins.Cmd):
        return replace(cfg, cmd=command_argv(inst.cmd, inst.prepend_shell, shell))
    if isinstance(inst, ins.Entrypoint):
        entry = command_argv(inst.cmd, inst.prepend_shell, shell)
        return replace(cfg, entrypoint=entry, cmd=cfg.cmd if cmd_set else None)
    return cfg


def created_by(inst: ins.Instruction, *, shell: tuple[str, ...], args: tuple[tuple[str, str], ...],
               workdir: str) -> str:
    """The history `created_by` text, exactly as BuildKit writes it (`RUN /bin/sh -c make # buildkit`).

    BuildKit formats several instructions with Go's fmt verbs (`CMD %q`, `SHELL %v`, `EXPOSE %v` of a map,
    `HEALTHCHECK %q` of the struct), and `docker history` users know those strings, so they are mimicked here.
    """
    if isinstance(inst, ins.Run):
        argv = command_argv(inst.cmd, inst.prepend_shell, shell)
        prefix = f"|{len(args)} " + " ".join(f"{k}={v}" for k, v in args) + " " if args else ""
        return f"RUN {prefix}{' '.join(argv)} # buildkit"
    if isinstance(inst, ins.Copy | ins.Add):
        word = "COPY" if isinstance(inst, ins.Copy) else "ADD"
        # BuildKit names only these flags (not --from, --link or --exclude), in this order.
        flags = []
        if isinstance(inst, ins.Copy) and inst.parents:
            flags.append("--parents")
        if inst.chown:
            flags.append(f"--chown={inst.chown}")
        if inst.chmod:
            flags.append(f"--chmod={inst.chmod}")
        srcs = [*inst.sources, *(f"<<{c.path}" for c in inst.contents)]
        return f"{word} {' '.join([*flags, *srcs, inst.dest])} # buildkit"
    if isinstance(inst, ins.Env):
        return "ENV " + " ".join(f"{p.key}={p.value}" for p in inst.pairs)
    if isinstance(inst, ins.Label):
        return "LABEL " + " ".join(f"{p.key}={p.value}" for p in inst.pairs)
    if isinstance(inst, ins.Expose):
        # Go's %v of a map: keys sorted, `map[80/tcp:{} 443/tcp:{}]`.
        return "EXPOSE map[" + " ".join(f"{p}:{{}}" for p in sorted(set(inst.ports))) + "]"
    if isinstance(inst, ins.Volume):
        return "VOLUME [" + " ".join(inst.paths) + "]"
    if isinstance(inst, ins.Workdir):
        return f"WORKDIR {workdir}"
    if isinstance(inst, ins.User):
        return f"USER {inst.user}"
    if isinstance(inst, ins.StopSignal):
        return f"STOPSIGNAL {inst.signal}"
    if isinstance(inst, ins.Healthcheck):
        h = inst.health
        durations = " ".join(_go_quote(_go_duration(d)) for d in (h.interval, h.timeout, h.start_period,
                                                                 h.start_interval))
        return f"HEALTHCHECK &{{{_go_quote_list(h.test)} {durations} {_go_quote_rune(h.retries)}}}"
    if isinstance(inst, ins.Shell):
        return "SHELL [" + " ".join(inst.shell) + "]"
    if isinstance(inst, ins.Onbuild):
        return f"ONBUILD {inst.expression}"
    if isinstance(inst, ins.Cmd | ins.Entrypoint):
        word = "CMD" if isinstance(inst, ins.Cmd) else "ENTRYPOINT"
        return f"{word} " + _go_quote_list(command_argv(inst.cmd, inst.prepend_shell, shell))
    if isinstance(inst, ins.Maintainer):
        return f"MAINTAINER {inst.maintainer}"
    if isinstance(inst, ins.Arg):
        return "ARG " + " ".join(a.key if a.value is None else f"{a.key}={a.value}" for a in inst.args)
    return inst.original


def _go_quote(s: str) -> str:
    """Go's strconv.Quote: a double-quoted string with Go escapes, printable Unicode kept as is."""
    out = ['"']
    for ch in s:
        code = ord(ch)
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch in _GO_ESCAPES:
            out.append(_GO_ESCAPES[ch])
        elif ch.isprintable() or ch == " ":
            out.append(ch)
        elif code < 0x80:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


_GO_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}


def _go_quote_list(items: tuple[str, ...] | list[str]) -> str:
    """Go's %q of a []string: `["a" "b"]`."""
    return "[" + " ".join(_go_quote(i) for i in items) + "]"


def _go_quote_rune(n: int) -> str:
    """Go's %q of an integer: a quoted character literal (BuildKit prints Retries this way, e.g. '\\x03')."""
    if 0 <= n < 0x110000 and chr(n).isprintable() and chr(n) not in ("'", "\\"):
        return f"'{chr(n)}'"
    if n in (ord("'"), ord("\\")):
        return "'\\" + chr(n) + "'"
    if 0 <= n < 0x80:
        return f"'\\x{n:02x}'"
    if 0 <= n < 0x10000:
        return f"'\\u{n:04x}'"
    return f"'\\U{n:08x}'"


def _go_duration(ns: int) -> str:
    """Go's time.Duration.String: `0s`, `1.5s`, `2m0s`, `1h0m0s`, `500ms`, `1µs`."""
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    if ns < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if ns >= size:
                return sign + _go_frac(ns, size) + unit
    hours, rest = divmod(ns, 3600 * 1_000_000_000)
    minutes, rest = divmod(rest, 60 * 1_000_000_000)
    text = _go_frac(rest, 1_000_000_000) + "s"
    if hours:
        return f"{sign}{hours}h{minutes}m{text}"
    if minutes:
        return f"{sign}{minutes}m{text}"
    return sign + text


def _go_frac(value: int, unit: int) -> str:
    whole, frac = divmod(value, unit)
    if not frac:
        return str(whole)
    digits = str(frac).rjust(len(str(unit)) - 1, "0").rstrip("0")
    return f"{whole}.{digits}"
