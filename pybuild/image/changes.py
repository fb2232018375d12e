"""``--change`` for ``import``: Dockerfile instructions applied to an image config, as Docker's
``BuildFromConfig`` applies them (CMD ENTRYPOINT ENV EXPOSE LABEL ONBUILD USER VOLUME WORKDIR STOPSIGNAL).

Each change is parsed by the Dockerfile parser (``pybuild.frontend.parser.parse``) and the instruction
layer, then applied with its words expanded against the config's Env, as a build would expand them.
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from dataclasses import replace

from pybuild.errors import Location, PybuildError
from pybuild.model import instructions as ins
from pybuild.model.ast import Node
from pybuild.model.oci import ContainerConfig

ALLOWED = ("cmd", "entrypoint", "env", "expose", "label", "onbuild", "user", "volume", "workdir", "stopsignal")
_DEFAULT_SHELL = ("/bin/sh", "-c")


def parse_changes(changes: Sequence[str]) -> list[ins.Instruction]:
    """Parse and validate each ``--change`` value; PybuildError naming the bad one."""
    from pybuild.frontend.instructions import parse_instruction

    out: list[ins.Instruction] = []
    for text in changes:
        nodes = _nodes(text)
        if not nodes:
            continue
        for node in nodes:
            if node.keyword.lower() not in ALLOWED:
                raise PybuildError(
                    f"{node.keyword.upper()} is not a valid change command",
                    Location("--change", 1, 1, text),
                    hint="allowed: " + " ".join(k.upper() for k in ALLOWED),
                )
            out.append(parse_instruction(node, "--change", [text]))
    return out


def _nodes(text: str) -> tuple[Node, ...]:
    from pybuild.frontend.parser import parse

    return tuple(parse(text, "--change").nodes)


def _ports(specs: Sequence[str]) -> list[str]:
    out: list[str] = []
    for spec in specs:
        port, _, proto = spec.partition("/")
        proto = (proto or "tcp").lower()
        lo, dash, hi = port.partition("-")
        if not lo.isdigit() or (dash and not hi.isdigit()):
            raise PybuildError(f"invalid port {spec!r} in EXPOSE", hint="e.g. EXPOSE 80 443/tcp 53/udp 8000-8010")
        for p in range(int(lo), int(hi if dash else lo) + 1):
            out.append(f"{p}/{proto}")
    return out


def apply_changes(cfg: ContainerConfig, changes: Sequence[ins.Instruction]) -> ContainerConfig:
    """The container config after applying parsed changes in order, expanding words against its Env."""
    from pybuild.frontend.shell import Lexer

    lex = Lexer()
    for change in changes:
        env = cfg.env_dict()
        shell = cfg.shell or _DEFAULT_SHELL
        if isinstance(change, ins.Env):
            merged = dict(env)
            for kv in change.pairs:
                merged[lex.process_word(kv.key, env)] = lex.process_word(kv.value, env)
            cfg = replace(cfg, env=tuple(f"{k}={v}" for k, v in merged.items()))
        elif isinstance(change, ins.Label):
            labels = dict(cfg.labels)
            for kv in change.pairs:
                labels[lex.process_word(kv.key, env)] = lex.process_word(kv.value, env)
            cfg = replace(cfg, labels=labels)
        elif isinstance(change, ins.Cmd):
            cmd = (*shell, *change.cmd) if change.prepend_shell else change.cmd
            cfg = replace(cfg, cmd=tuple(cmd))
        elif isinstance(change, ins.Entrypoint):
            ep = (*shell, *change.cmd) if change.prepend_shell else change.cmd
            cfg = replace(cfg, entrypoint=tuple(ep))
        elif isinstance(change, ins.Expose):
            words = [w for p in change.ports for w in lex.process_words(p, env)]
            cfg = replace(cfg, exposed_ports=tuple(sorted({*cfg.exposed_ports, *_ports(words)})))
        elif isinstance(change, ins.User):
            cfg = replace(cfg, user=lex.process_word(change.user, env))
        elif isinstance(change, ins.Workdir):
            path = lex.process_word(change.path, env)
            cfg = replace(cfg, working_dir=posixpath.normpath(posixpath.join(cfg.working_dir or "/", path)))
        elif isinstance(change, ins.Volume):
            vols = {*cfg.volumes, *(lex.process_word(v, env) for v in change.paths)}
            cfg = replace(cfg, volumes=tuple(sorted(vols)))
        elif isinstance(change, ins.StopSignal):
            cfg = replace(cfg, stop_signal=lex.process_word(change.signal, env))
        elif isinstance(change, ins.Onbuild):
            cfg = replace(cfg, on_build=(*cfg.on_build, change.expression))
    return cfg
