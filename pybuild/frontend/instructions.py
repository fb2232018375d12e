"""The instruction layer: raw ``Node``s -> typed, validated instructions (pybuild.model.instructions).

Behaviour follows BuildKit's ``frontend/dockerfile/instructions/parse.go``: argument counts, which
``--flags`` each instruction accepts (and their boolean/string/repeatable kinds), ``RUN --mount`` specs,
heredoc sources for COPY/ADD and inline files for RUN, HEALTHCHECK durations, ONBUILD restrictions and
doc comments. Error messages are BuildKit's, raised as PybuildError with the node's location.
Nothing here expands variables (the planner does, where BuildKit does) or knows about stages' meaning.
"""

from __future__ import annotations

import csv
import difflib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TypedDict

from pybuild.errors import Location, PybuildError
from pybuild.model import instructions as ins
from pybuild.model.ast import Dockerfile, Node

KNOWN_INSTRUCTIONS = (
    "add", "arg", "cmd", "copy", "entrypoint", "env", "expose", "from", "healthcheck", "label",
    "maintainer", "onbuild", "run", "shell", "stopsignal", "user", "volume", "workdir",
)

# ---------------------------------------------------------------------------------------------------------------
# --flag handling (BuildKit's BFlags): flags are declared per instruction, then the node's flag words checked.


@dataclass
class _Flag:
    """One --flag of an instruction."""

    name: str
    kind: str  # "bool" | "string" | "strings"
    value: str = ""
    values: list[str] = field(default_factory=list)


class _Flags:
    def __init__(self, words: Sequence[str]) -> None:
        self.words = words
        self.flags: dict[str, _Flag] = {}
        self.used: dict[str, _Flag] = {}

    def add_bool(self, name: str, default: bool = False) -> _Flag:
        f = self.flags[name] = _Flag(name, "bool", "true" if default else "false")
        return f

    def add_string(self, name: str, default: str = "") -> _Flag:
        f = self.flags[name] = _Flag(name, "string", default)
        return f

    def add_strings(self, name: str) -> _Flag:
        f = self.flags[name] = _Flag(name, "strings")
        return f

    def parse(self) -> None:
        for word in self.words:
            if word == "--":
                return
            if not word.startswith("--"):
                raise PybuildError(f"arg should start with -- : {word}")
            flag_name, eq, value = word.partition("=")
            name = flag_name[2:]
            flag = self.flags.get(name)
            if flag is None:
                raise PybuildError(f"unknown flag: {flag_name}", hint=_suggest(name, list(self.flags), prefix="--"))
            if name in self.used and flag.kind != "strings":
                raise PybuildError(f"duplicate flag specified: {flag_name}")
            self.used[name] = flag
            if flag.kind == "bool":
                if eq and value == "":
                    raise PybuildError(f"missing a value on flag: {flag_name}")
                low = value.lower()
                if low in ("true", ""):
                    flag.value = "true"
                elif low == "false":
                    flag.value = "false"
                else:
                    raise PybuildError(f"expecting boolean value for flag {flag_name}, not: {value}")
            else:
                if not eq:
                    raise PybuildError(f"missing a value on flag: {flag_name}")
                if flag.kind == "string":
                    flag.value = value
                else:
                    flag.values.append(value)


def _suggest(word: str, options: Sequence[str], *, prefix: str = "") -> str | None:
    """A 'did you mean' hint, like BuildKit's suggest package."""
    close = difflib.get_close_matches(word.lower(), [o.lower() for o in options], n=1, cutoff=0.6)
    if not close:
        return None
    match = next(o for o in options if o.lower() == close[0])
    return f"did you mean {prefix}{match}?"


# ---------------------------------------------------------------------------------------------------------------
# Value parsers shared with the planner.

_DURATION_UNITS = {
    "ns": 1, "us": 1_000, "µs": 1_000, "μs": 1_000, "ms": 1_000_000, "s": 1_000_000_000,
    "m": 60_000_000_000, "h": 3_600_000_000_000,
}
_DURATION_PART = re.compile(r"([0-9]*(?:\.[0-9]*)?)([^0-9.]+)")


def parse_duration(text: str) -> int:
    """Go's time.ParseDuration: "1m30s", "1.5h", "300ms" -> nanoseconds."""
    s = text
    sign = 1
    if s[:1] in "+-" and s:
        sign = -1 if s[0] == "-" else 1
        s = s[1:]
    if s == "0":
        return 0
    if not s:
        raise PybuildError(f'time: invalid duration "{text}"')
    total = 0.0
    pos = 0
    while pos < len(s):
        m = _DURATION_PART.match(s, pos)
        if not m or m.group(1) in ("", "."):
            raise PybuildError(f'time: invalid duration "{text}"')
        unit = m.group(2)
        if unit not in _DURATION_UNITS:
            raise PybuildError(f'time: unknown unit "{unit}" in duration "{text}"')
        total += float(m.group(1)) * _DURATION_UNITS[unit]
        pos = m.end()
    if total > 2**63 - 1:
        raise PybuildError(f'time: invalid duration "{text}"')
    return sign * int(total)


_RAM = re.compile(r"^(\d+(?:\.\d+)*) ?([kKmMgGtTpP])?[iI]?[bB]?$")


def ram_in_bytes(text: str) -> int:
    """docker/go-units RAMInBytes: "64m", "1g", "512" (binary multiples)."""
    m = _RAM.match(text)
    if not m:
        raise ValueError(text)
    mult = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}[(m.group(2) or "").lower()]
    return int(float(m.group(1)) * mult)


def _parse_bool(text: str) -> bool:
    """Go's strconv.ParseBool."""
    if text in ("1", "t", "T", "true", "TRUE", "True"):
        return True
    if text in ("0", "f", "F", "false", "FALSE", "False"):
        return False
    raise ValueError(text)


_MOUNT_TYPES = ("bind", "cache", "tmpfs", "secret", "ssh")
_SHARING = ("shared", "private", "locked")
_MOUNT_KEYS = (
    "type", "from", "source", "target", "readonly", "id", "sharing", "required", "size", "mode", "uid", "gid",
    "src", "dst", "destination", "ro", "rw", "readwrite", "env",
)


def _csv_fields(spec: str) -> list[str]:
    try:
        rows = list(csv.reader([spec], strict=True))
    except csv.Error as e:
        raise PybuildError(f"failed to parse csv mounts: {e}") from None
    return rows[0] if rows else []


def parse_mount(spec: str, expand: Callable[[str], str] | None = None) -> ins.Mount:
    """Parse one ``--mount`` value (BuildKit's parseMount).

    With ``expand`` None only what can be checked before expansion is checked (the ``from`` key may not use
    variables); the planner calls it again with an expander to get the real Mount.
    """
    fields = _csv_fields(spec)
    m: dict[str, object] = {"type": "bind", "readonly": True}
    ro_auto = True
    mtype = "bind"
    for f in fields:
        key, eq, value = f.partition("=")
        key = key.lower()
        if not eq:
            if expand is None:
                continue
            if key in ("readonly", "ro"):
                m["readonly"] = True
                ro_auto = False
                continue
            if key in ("readwrite", "rw"):
                m["readonly"] = False
                ro_auto = False
                continue
            if key == "required":
                if mtype in ("secret", "ssh"):
                    m["required"] = True
                    continue
                raise PybuildError(f"unexpected key '{key}' for mount type '{mtype}'")
            raise PybuildError(f"invalid field '{f}' must be a key=value pair")
        if expand is not None:
            value = expand(value)
        elif key == "from":
            idx = value.find("$")
            if idx != -1 and idx != len(value) - 1:
                raise PybuildError(
                    f"'{key}' doesn't support variable expansion, define alias stage instead"
                )
        else:
            continue
        try:
            if key == "type":
                v = value.lower()
                if v not in _MOUNT_TYPES:
                    raise PybuildError(f'unsupported mount type "{value}"', hint=_suggest(value, _MOUNT_TYPES))
                mtype = v
                m["type"] = v
            elif key == "from":
                m["from_"] = value
            elif key in ("source", "src"):
                m["source"] = value
            elif key in ("target", "dst", "destination"):
                m["target"] = value
            elif key in ("readonly", "ro"):
                m["readonly"] = _parse_bool(value)
                ro_auto = False
            elif key in ("readwrite", "rw"):
                m["readonly"] = not _parse_bool(value)
                ro_auto = False
            elif key == "required":
                if mtype not in ("secret", "ssh"):
                    raise PybuildError(f"unexpected key '{key}' for mount type '{mtype}'")
                m["required"] = _parse_bool(value)
            elif key == "size":
                if mtype != "tmpfs":
                    raise PybuildError(f"unexpected key '{key}' for mount type '{mtype}'")
                m["size_limit"] = ram_in_bytes(value)
            elif key == "id":
                m["cache_id"] = value
            elif key == "sharing":
                v = value.lower()
                if v not in _SHARING:
                    raise PybuildError(f'unsupported sharing value "{value}"', hint=_suggest(value, _SHARING))
                m["sharing"] = v
            elif key == "mode":
                m["mode"] = _go_uint(value, 8)
            elif key in ("uid", "gid"):
                m[key] = _go_uint(value, 10)
            elif key == "env":
                m["env"] = value
            else:
                raise PybuildError(f"unexpected key '{key}' in '{f}'", hint=_suggest(key, _MOUNT_KEYS))
        except ValueError:
            if key in ("mode", "uid", "gid"):
                raise PybuildError(f"invalid value {value} for {key}") from None
            raise PybuildError(f"invalid value for {key}: {value}") from None
    if mtype not in ("secret", "ssh", "cache"):
        for k in ("mode", "uid", "gid"):
            if m.get(k) is not None:
                raise PybuildError(f'{k} not allowed for "{mtype}" type mounts')
    if ro_auto:
        m["readonly"] = mtype not in ("cache", "tmpfs")
    if mtype == "secret":
        if m.get("from_"):
            raise PybuildError("secret mount should not have a from")
        if m.get("sharing"):
            raise PybuildError("secret mount should not define sharing")
        if not m.get("source") and not m.get("target") and not m.get("cache_id"):
            raise PybuildError("invalid secret mount. one of source, target required")
        if m.get("source") and m.get("cache_id"):
            raise PybuildError("both source and id can't be set")
    if m.get("sharing") and mtype != "cache":
        raise PybuildError(f"invalid cache sharing set for {mtype} mount")
    return ins.Mount(**m)  # type: ignore[arg-type]


def _go_uint(text: str, base: int) -> int:
    if not text or not text.isascii() or not text.isalnum():
        raise ValueError(text)
    v = int(text, base)
    if v >= 1 << 32:
        raise ValueError(text)
    return v


# ---------------------------------------------------------------------------------------------------------------
# Heredoc words in COPY/ADD arguments.

_HEREDOC_WORD = re.compile(r"^(\d*)<<(-?)\s*([^<]*)$")


def heredoc_word(word: str) -> tuple[str, bool, bool] | None:
    """Classify an argument word as a heredoc marker: (name, chomp, expand), or None when it is not one."""
    m = _HEREDOC_WORD.match(word)
    if not m or not m.group(3):
        return None
    rest = m.group(3)
    name: list[str] = []
    quoted = False
    quote = ""
    i = 0
    while i < len(rest):
        c = rest[i]
        if quote:
            if c == quote:
                quote = ""
            elif c == "\\" and quote == '"' and i + 1 < len(rest):
                i += 1
                name.append(rest[i])
            else:
                name.append(c)
        elif c in "'\"":
            quote = c
            quoted = True
        elif c == "\\" and i + 1 < len(rest):
            i += 1
            name.append(rest[i])
            quoted = True
        elif c.isspace():
            return None
        else:
            name.append(c)
        i += 1
    if quote or not name:
        return None
    return "".join(name), m.group(2) == "-", not quoted


def chomp_heredoc(data: str) -> str:
    """Remove leading TABs from every line (the <<- form)."""
    return re.sub(r"(?m)^\t+", "", data)


# ---------------------------------------------------------------------------------------------------------------
# Node -> instruction.


class _Common(TypedDict):
    location: Location
    end_line: int
    original: str
    keyword: str
    comments: tuple[str, ...]


def _location(node: Node, file: str, lines: Sequence[str]) -> Location:
    src = lines[node.start_line - 1] if 0 < node.start_line <= len(lines) else (node.original or None)
    return Location(file, node.start_line, node.column, src)


def _keyword_as_written(node: Node) -> str:
    words = node.original.strip().split(None, 1)
    if words and words[0].lower() == node.keyword:
        return words[0]
    return node.keyword.upper()


def _comments(node: Node) -> tuple[str, ...]:
    out = []
    for c in node.prev_comments:
        c = c.strip()
        if c.startswith("#"):
            c = c[1:].strip()
        out.append(c)
    return tuple(out)


def doc_comment(comments: Sequence[str], name: str) -> str:
    """The rest of the first comment line starting with "<name> " (BuildKit's getDocComment)."""
    if not name:
        return ""
    for line in comments:
        if line.startswith(name + " "):
            return line[len(name) + 1 :]
    return ""


def _node_args(node: Node) -> list[str]:
    """BuildKit's nodeArgs: for ONBUILD the nested keyword then its arguments."""
    if node.child is not None:
        return [node.child.keyword, *_node_args(node.child)]
    return list(node.args)


def handle_json_args(args: Sequence[str], json_form: bool) -> tuple[str, ...]:
    """Shell-form argument words are joined with single spaces into one string (BuildKit's handleJSONArgs)."""
    if not args:
        return ()
    if json_form:
        return tuple(args)
    return (" ".join(args),)


def _kvps(args: Sequence[str], name: str) -> tuple[ins.KeyValue, ...]:
    if not args:
        raise PybuildError(f"{name} requires at least one argument")
    if len(args) % 3:
        raise PybuildError(f"Bad input to {name}, too many arguments")
    out = []
    for j in range(0, len(args), 3):
        if not args[j]:
            raise PybuildError(f"{name} names can not be blank")
        out.append(ins.KeyValue(args[j], args[j + 1], legacy=args[j + 2] == ""))
    return tuple(out)


def _one_arg(args: Sequence[str], name: str) -> str:
    if len(args) != 1:
        raise PybuildError(f"{name} requires exactly one argument")
    return args[0]


def _interval(flag: _Flag) -> int:
    if not flag.value:
        return 0
    d = parse_duration(flag.value)
    if d == 0:
        return 0
    if d < 1_000_000:
        raise PybuildError(f'Interval "{flag.name}" cannot be less than 1ms')
    return d


_STAGE_NAME = re.compile(r"^[a-z][a-z0-9\-_.]*$")
_ONBUILD_PREFIX = re.compile(r"(?i)^\s*ONBUILD\s*")


def parse_instruction(node: Node, file: str = "Dockerfile", lines: Sequence[str] = ()) -> ins.Instruction:
    """Turn one raw node into its typed instruction; errors carry the node's location."""
    try:
        return _parse(node, file, lines)
    except PybuildError as e:
        raise e.with_location(_location(node, file, lines)) from None


def _parse(node: Node, file: str, lines: Sequence[str]) -> ins.Instruction:
    kw = node.keyword.lower()
    args = _node_args(node)
    flags = _Flags(node.flags)
    comments = _comments(node)
    common = _Common(
        location=_location(node, file, lines),
        end_line=node.end_line or node.start_line,
        original=node.original,
        keyword=_keyword_as_written(node),
        comments=comments,
    )
    json_form = node.json_form

    if kw == "env":
        flags.parse()
        return ins.Env(pairs=_kvps(args, "ENV"), **common)
    if kw == "label":
        flags.parse()
        return ins.Label(pairs=_kvps(args, "LABEL"), **common)
    if kw == "maintainer":
        value = _one_arg(args, "MAINTAINER")
        flags.parse()
        return ins.Maintainer(maintainer=value, **common)
    if kw in ("add", "copy"):
        return _parse_copy(kw, node, args, flags, common)
    if kw == "from":
        return _parse_from(args, flags, comments, common)
    if kw == "onbuild":
        return _parse_onbuild(node, args, flags, file, lines, common)
    if kw == "workdir":
        value = _one_arg(args, "WORKDIR")
        flags.parse()
        return ins.Workdir(path=value, **common)
    if kw == "run":
        f_mount = flags.add_strings("mount")
        f_network = flags.add_string("network", "default")
        f_security = flags.add_string("security", "sandbox")
        flags.parse()
        if f_network.value not in ("default", "none", "host"):
            raise PybuildError(f'invalid network mode "{f_network.value}"')
        if f_security.value not in ("sandbox", "insecure"):
            raise PybuildError(f'security "{f_security.value}" is not valid')
        for spec in f_mount.values:
            parse_mount(spec)
        files = tuple(ins.InlineFile(h.name, h.content, h.chomp) for h in node.heredocs)
        return ins.Run(
            cmd=handle_json_args(args, json_form), prepend_shell=not json_form, files=files,
            mount_specs=tuple(f_mount.values), network=f_network.value, security=f_security.value,
            flags_used=tuple(flags.used), **common,
        )
    if kw == "cmd":
        flags.parse()
        return ins.Cmd(cmd=handle_json_args(args, json_form), prepend_shell=not json_form, **common)
    if kw == "entrypoint":
        flags.parse()
        return ins.Entrypoint(
            cmd=handle_json_args(args, json_form), prepend_shell=not json_form, **common
        )
    if kw == "healthcheck":
        return _parse_healthcheck(args, flags, json_form, common)
    if kw == "expose":
        if not args:
            raise PybuildError("EXPOSE requires at least one argument")
        flags.parse()
        return ins.Expose(ports=tuple(sorted(args)), **common)
    if kw == "user":
        value = _one_arg(args, "USER")
        flags.parse()
        return ins.User(user=value, **common)
    if kw == "volume":
        if not args:
            raise PybuildError("VOLUME requires at least one argument")
        flags.parse()
        vols = []
        for v in args:
            v = v.strip()
            if not v:
                raise PybuildError("VOLUME specified can not be an empty string")
            vols.append(v)
        return ins.Volume(paths=tuple(vols), **common)
    if kw == "stopsignal":
        value = _one_arg(args, "STOPSIGNAL")
        flags.parse()
        return ins.StopSignal(signal=value, **common)
    if kw == "arg":
        if not args:
            raise PybuildError("ARG requires at least one argument")
        flags.parse()
        decls = []
        for a in args:
            key, eq, value = a.partition("=")
            if eq and not key:
                raise PybuildError("ARG names can not be blank")
            decls.append(ins.ArgDecl(key, value if eq else None, doc_comment(comments, key)))
        return ins.Arg(args=tuple(decls), **common)
    if kw == "shell":
        flags.parse()
        cmd = handle_json_args(args, json_form)
        if not cmd:
            raise PybuildError("SHELL requires at least one argument")
        if not json_form:
            raise PybuildError(
                "SHELL requires the arguments to be in JSON form",
                hint='write it as SHELL ["executable", "param1"]',
            )
        return ins.Shell(shell=cmd, **common)
    raise PybuildError(
        f"unknown instruction: {node.keyword if node.original == '' else _keyword_as_written(node)}",
        hint=_suggest(node.keyword, [k.upper() for k in KNOWN_INSTRUCTIONS]),
    )


def _parse_copy(kw: str, node: Node, args: list[str], flags: _Flags, common: _Common) -> ins.Instruction:
    name = kw.upper()
    if len(args) < 2:
        raise PybuildError(
            f"{name} requires at least two arguments, but only one was provided. Destination could not be determined"
        )
    f_chown = flags.add_string("chown")
    f_chmod = flags.add_string("chmod")
    f_link = flags.add_bool("link")
    f_exclude = flags.add_strings("exclude")
    if kw == "add":
        f_keep = flags.add_bool("keep-git-dir")
        f_checksum = flags.add_string("checksum")
        f_unpack = flags.add_bool("unpack")
    else:
        f_from = flags.add_string("from")
        f_parents = flags.add_bool("parents")
    flags.parse()

    dest = args[-1]
    if not node.json_form and heredoc_word(dest) is not None:
        raise PybuildError(f"{name} cannot accept a heredoc as a destination")
    bodies = {h.name: h for h in node.heredocs}
    paths: list[str] = []
    contents: list[ins.SourceContent] = []
    for src in args[:-1]:
        hd = None if node.json_form else heredoc_word(src)
        if hd is None:
            paths.append(src)
            continue
        hname, chomp, expand = hd
        body = bodies.get(hname)
        data = body.content if body is not None else ""
        if chomp:
            data = chomp_heredoc(data)
        contents.append(ins.SourceContent(hname, data, expand))
    if kw == "add":
        return ins.Add(
            sources=tuple(paths), contents=tuple(contents), dest=dest, chown=f_chown.value, chmod=f_chmod.value,
            link=f_link.value == "true", exclude=tuple(f_exclude.values), checksum=f_checksum.value,
            keep_git_dir=(f_keep.value == "true") if "keep-git-dir" in flags.used else None,
            unpack=(f_unpack.value == "true") if "unpack" in flags.used else None,
            **common,
        )
    return ins.Copy(
        sources=tuple(paths), contents=tuple(contents), dest=dest, chown=f_chown.value, chmod=f_chmod.value,
        link=f_link.value == "true", exclude=tuple(f_exclude.values), from_=f_from.value,
        parents=f_parents.value == "true", **common,
    )


def _parse_from(args: list[str], flags: _Flags, comments: tuple[str, ...], common: _Common) -> ins.From:
    stage_name: str | None = None
    as_kw = ""
    if len(args) == 3 and args[1].lower() == "as":
        stage_name = args[2].lower()
        as_kw = args[1]
        if not _STAGE_NAME.match(stage_name):
            raise PybuildError(
                f'invalid name for build stage: "{args[2]}", name can\'t start with a number or contain symbols'
            )
    elif len(args) != 1:
        raise PybuildError("FROM requires either one or three arguments")
    f_platform = flags.add_string("platform")
    flags.parse()
    return ins.From(
        base=args[0], stage_name=stage_name, as_keyword=as_kw, platform=f_platform.value or None,
        stage_name_as_written=args[2] if stage_name else "",
        doc_comment=doc_comment(comments, stage_name or ""), **common,
    )


def _parse_onbuild(
    node: Node, args: list[str], flags: _Flags, file: str, lines: Sequence[str], common: _Common
) -> ins.Onbuild:
    if not args or node.child is None:
        raise PybuildError("ONBUILD requires at least one argument")
    flags.parse()
    trigger = args[0].strip().upper()
    if trigger == "ONBUILD":
        raise PybuildError("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
    if trigger in ("MAINTAINER", "FROM"):
        raise PybuildError(f"{trigger} isn't allowed as an ONBUILD trigger")
    expression = _ONBUILD_PREFIX.sub("", node.original, count=1)
    heredocs = node.heredocs or node.child.heredocs
    if heredocs:
        expression += "".join(f"\n{h.content}{h.name}" for h in heredocs)
    child = node.child
    if not child.original:
        child = _with_original(child, expression)
    parsed = _parse(child, file, lines)
    return ins.Onbuild(expression=expression, trigger=parsed, **common)


def _with_original(node: Node, original: str) -> Node:
    return replace(node, original=original, start_line=node.start_line, column=node.column)


def _parse_healthcheck(
    args: list[str], flags: _Flags, json_form: bool, common: _Common
) -> ins.Healthcheck:
    if not args:
        raise PybuildError("HEALTHCHECK requires at least one argument")
    typ = args[0].upper()
    rest = args[1:]
    if typ == "NONE":
        if rest:
            raise PybuildError("HEALTHCHECK NONE takes no arguments")
        flags.parse()
        return ins.Healthcheck(health=ins.HealthConfig(("NONE",)), **common)
    f_interval = flags.add_string("interval")
    f_timeout = flags.add_string("timeout")
    f_start_period = flags.add_string("start-period")
    f_start_interval = flags.add_string("start-interval")
    f_retries = flags.add_string("retries")
    flags.parse()
    if typ != "CMD":
        raise PybuildError(f'Unknown type "{typ}" in HEALTHCHECK (try CMD)')
    cmd = handle_json_args(rest, json_form)
    if not cmd:
        raise PybuildError("Missing command after HEALTHCHECK CMD")
    test = ("CMD", *cmd) if json_form else ("CMD-SHELL", *cmd)
    retries = 0
    if f_retries.value:
        try:
            retries = int(f_retries.value, 10)
        except ValueError:
            raise PybuildError(f'strconv.ParseInt: parsing "{f_retries.value}": invalid syntax') from None
        if retries < 0:
            raise PybuildError(f"--retries cannot be negative ({retries})")
    health = ins.HealthConfig(
        test=test, interval=_interval(f_interval), timeout=_interval(f_timeout),
        start_period=_interval(f_start_period), start_interval=_interval(f_start_interval), retries=retries,
    )
    return ins.Healthcheck(health=health, **common)


# ---------------------------------------------------------------------------------------------------------------
# Whole file.


def parse_dockerfile(df: Dockerfile) -> ins.ParsedDockerfile:
    """All nodes -> ARGs before the first FROM plus stages (BuildKit's instructions.Parse)."""
    meta: list[ins.Arg] = []
    stages: list[tuple[ins.From, list[ins.Instruction]]] = []
    for node in df.nodes:
        inst = parse_instruction(node, df.path, df.lines)
        if isinstance(inst, ins.From):
            stages.append((inst, []))
        elif not stages:
            if isinstance(inst, ins.Arg):
                meta.append(inst)
                continue
            raise PybuildError(
                f"no build stage in current context: {inst.name} comes before the first FROM",
                inst.location,
                hint="only ARG instructions may come before the first FROM",
            )
        else:
            stages[-1][1].append(inst)
    return ins.ParsedDockerfile(
        path=df.path,
        meta_args=tuple(meta),
        stages=tuple(ins.StageDef(i, f, tuple(cmds)) for i, (f, cmds) in enumerate(stages)),
        escape=df.escape,
    )
