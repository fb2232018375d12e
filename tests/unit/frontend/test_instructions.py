"""The instruction layer: flags, RUN --mount specs, heredoc words, durations, HEALTHCHECK, ONBUILD, FROM."""

from __future__ import annotations

import pytest

from pybuild.errors import PybuildError
from pybuild.frontend.instructions import (
    heredoc_word,
    parse_dockerfile,
    parse_duration,
    parse_instruction,
    parse_mount,
    ram_in_bytes,
)
from pybuild.frontend.parser import parse
from pybuild.model import instructions as ins


def one(text: str) -> ins.Instruction:
    df = parse(text)
    return parse_instruction(df.nodes[0], df.path, df.lines)


def error(text: str) -> PybuildError:
    with pytest.raises(PybuildError) as e:
        one(text)
    return e.value


# --- pure helpers -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("text", "ns"),
    [("0", 0), ("1ms", 1_000_000), ("1.5s", 1_500_000_000), ("1m30s", 90_000_000_000), ("2h", 7_200_000_000_000),
     ("300us", 300_000), ("10µs", 10_000), (".5s", 500_000_000), ("-1s", -1_000_000_000)],
)
def test_parse_duration(text: str, ns: int) -> None:
    assert parse_duration(text) == ns


@pytest.mark.parametrize("text", ["", "1", "s", "1x", "1.s.", "--1s", "."])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(PybuildError, match="duration"):
        parse_duration(text)


def test_ram_in_bytes() -> None:
    assert ram_in_bytes("512") == 512
    assert ram_in_bytes("64m") == 64 << 20
    assert ram_in_bytes("1G") == 1 << 30
    assert ram_in_bytes("2kb") == 2048
    with pytest.raises(ValueError):
        ram_in_bytes("lots")


@pytest.mark.parametrize(
    ("word", "expect"),
    [("<<EOF", ("EOF", False, True)), ("<<-EOF", ("EOF", True, True)), ("<<'EOF'", ("EOF", False, False)),
     ('<<"EOF"', ("EOF", False, False)), ('<<EO"F"', ("EOF", False, False)), ("<< EOF", ("EOF", False, True)),
     ("3<<EOF", ("EOF", False, True)), ("EOF", None), ("<<", None), ("<EOF", None), ("<<<EOF", None),
     ("<<'EOF", None), ("", None)],
)
def test_heredoc_word(word: str, expect: tuple[str, bool, bool] | None) -> None:
    assert heredoc_word(word) == expect


def test_mount_defaults_per_type() -> None:
    m = parse_mount("type=cache,target=/root/.cache", lambda s: s)
    assert (m.type, m.target, m.readonly) == ("cache", "/root/.cache", False)
    b = parse_mount("target=/src", lambda s: s)
    assert (b.type, b.readonly) == ("bind", True)
    t = parse_mount("type=tmpfs,dst=/tmp,size=64m", lambda s: s)
    assert (t.type, t.target, t.size_limit, t.readonly) == ("tmpfs", "/tmp", 64 << 20, False)
    s = parse_mount("type=secret,id=tok,env=TOKEN,required", lambda s: s)
    assert (s.cache_id, s.env, s.required) == ("tok", "TOKEN", True)
    rw = parse_mount("type=bind,from=build,source=/out,target=/in,rw", lambda s: s)
    assert (rw.from_, rw.source, rw.readonly) == ("build", "/out", False)
    c = parse_mount("type=cache,target=/c,id=x,sharing=locked,mode=0700,uid=1000,gid=1000", lambda s: s)
    assert (c.sharing, c.mode, c.uid, c.gid) == ("locked", 0o700, 1000, 1000)


def test_mount_expansion_applies_to_values() -> None:
    m = parse_mount("type=cache,target=/c/$V", lambda s: s.replace("$V", "x"))
    assert m.target == "/c/x"


@pytest.mark.parametrize(
    ("spec", "message"),
    [("type=nfs,target=/x", 'unsupported mount type "nfs"'),
     ("type=cache,target=/x,sharing=sometimes", 'unsupported sharing value "sometimes"'),
     ("target=/x,bogus=1", "unexpected key 'bogus' in 'bogus=1'"),
     ("type=bind,target=/x,mode=0755", 'mode not allowed for "bind" type mounts'),
     ("type=bind,target=/x,required", "unexpected key 'required' for mount type 'bind'"),
     ("type=secret", "invalid secret mount. one of source, target required"),
     ("type=secret,id=a,source=b", "both source and id can't be set"),
     ("type=secret,id=a,from=x", "secret mount should not have a from"),
     ("type=bind,target=/x,sharing=shared", "invalid cache sharing set for bind mount"),
     ("type=cache,target=/x,uid=abc", "invalid value abc for uid"),
     ("type=bind,target=/x,ro=maybe", "invalid value for ro: maybe"),
     ("type=tmpfs,target=/x,size=huge", "invalid value for size: huge"),
     ("target", "invalid field 'target' must be a key=value pair")],
)
def test_mount_errors(spec: str, message: str) -> None:
    with pytest.raises(PybuildError) as e:
        parse_mount(spec, lambda s: s)
    assert e.value.message == message


def test_mount_from_cannot_use_variables() -> None:
    with pytest.raises(PybuildError, match="doesn't support variable expansion"):
        parse_mount("from=$STAGE,target=/x")
    assert parse_mount("from=build$,target=/x").from_ == "build$"


# --- instructions from real parsed text ----------------------------------------------------------------------------

def test_run_flags_and_mounts() -> None:
    r = one("RUN --mount=type=cache,target=/c --network=none --security=insecure make")
    assert isinstance(r, ins.Run)
    assert r.mount_specs == ("type=cache,target=/c",)
    assert (r.network, r.security, r.prepend_shell, r.cmd) == ("none", "insecure", True, ("make",))
    assert set(r.flags_used) == {"mount", "network", "security"}


@pytest.mark.parametrize(
    ("text", "message"),
    [("RUN --network=bridge x", 'invalid network mode "bridge"'),
     ("RUN --security=lax x", 'security "lax" is not valid'),
     ("RUN --mount x", "missing a value on flag: --mount"),
     ("COPY --link=maybe a b", "expecting boolean value for flag --link, not: maybe"),
     ("COPY --link= a b", "missing a value on flag: --link"),
     ("COPY --from=a --from=b x y", "duplicate flag specified: --from"),
     ("COPY --chown a b", "missing a value on flag: --chown"),
     ("ADD --from=x a b", "unknown flag: --from"),
     ("FROM --platfrom=linux/amd64 alpine", "unknown flag: --platfrom"),
     ("FROM a b", "FROM requires either one or three arguments"),
     ("FROM a AS 1st", 'invalid name for build stage: "1st", name can\'t start with a number or contain symbols'),
     ("HEALTHCHECK NONE x", "HEALTHCHECK NONE takes no arguments"),
     ("HEALTHCHECK CMD", "Missing command after HEALTHCHECK CMD"),
     ("HEALTHCHECK RUN x", 'Unknown type "RUN" in HEALTHCHECK (try CMD)'),
     ("HEALTHCHECK --retries=-1 CMD x", "--retries cannot be negative (-1)"),
     ("HEALTHCHECK --timeout=1ns CMD x", 'Interval "timeout" cannot be less than 1ms'),
     ("SHELL /bin/bash -c", "SHELL requires the arguments to be in JSON form"),
     ("SHELL []", "SHELL requires at least one argument"),
     ("ONBUILD MAINTAINER me", "MAINTAINER isn't allowed as an ONBUILD trigger"),
     ("ONBUILD BOGUS x", "unknown instruction: BOGUS"),
     ("ARG =x", "ARG names can not be blank"),
     ("VOLUME [\"\"]", "VOLUME specified can not be an empty string")],
)
def test_errors(text: str, message: str) -> None:
    e = error(text)
    assert e.message == message
    assert e.location is not None and e.location.line == 1 and e.location.source_line == text


def test_unknown_flag_suggests() -> None:
    e = error("COPY --chmown=1 a b")
    assert e.hint == "did you mean --chown?"


def test_error_location_points_at_instruction_line() -> None:
    df = parse("FROM alpine\n\n  COPY onlyone\n")
    with pytest.raises(PybuildError) as e:
        parse_dockerfile(df)
    loc = e.value.location
    assert loc is not None and (loc.line, loc.column) == (3, 3)
    assert "COPY onlyone" in e.value.render()


def test_copy_and_add_flags() -> None:
    c = one("COPY --from=build --chown=1:2 --chmod=755 --link --parents --exclude=*.md --exclude=*.txt a b /d/")
    assert isinstance(c, ins.Copy)
    assert (c.from_, c.chown, c.chmod, c.link, c.parents) == ("build", "1:2", "755", True, True)
    assert c.exclude == ("*.md", "*.txt") and c.sources == ("a", "b") and c.dest == "/d/"
    a = one("ADD --checksum=sha256:abc --keep-git-dir=true --unpack=false https://x/y.tgz /z")
    assert isinstance(a, ins.Add)
    assert (a.checksum, a.keep_git_dir, a.unpack) == ("sha256:abc", True, False)
    plain = one("ADD a b")
    assert isinstance(plain, ins.Add) and plain.keep_git_dir is None and plain.unpack is None


def test_double_dash_ends_flags() -> None:
    c = one("COPY -- a b")
    assert isinstance(c, ins.Copy) and c.sources == ("a",)


def test_healthcheck() -> None:
    h = one("HEALTHCHECK --interval=30s --timeout=3s --start-period=1m --start-interval=2s --retries=3 "
            "CMD curl -f http://localhost/ || exit 1")
    assert isinstance(h, ins.Healthcheck)
    assert h.health.test == ("CMD-SHELL", "curl -f http://localhost/ || exit 1")
    assert (h.health.interval, h.health.timeout, h.health.start_period) == (30 * 10**9, 3 * 10**9, 60 * 10**9)
    assert (h.health.start_interval, h.health.retries) == (2 * 10**9, 3)
    j = one('HEALTHCHECK CMD ["/bin/check", "-q"]')
    assert isinstance(j, ins.Healthcheck) and j.health.test == ("CMD", "/bin/check", "-q")
    n = one("HEALTHCHECK NONE")
    assert isinstance(n, ins.Healthcheck) and n.health.test == ("NONE",)


def test_from_forms() -> None:
    f = one("FROM --platform=$BUILDPLATFORM golang:1.22 AS Build")
    assert isinstance(f, ins.From)
    assert (f.base, f.stage_name, f.stage_name_as_written, f.platform) == (
        "golang:1.22", "build", "Build", "$BUILDPLATFORM")


def test_onbuild_keeps_expression_and_trigger() -> None:
    o = one("ONBUILD COPY --from=build . /app")
    assert isinstance(o, ins.Onbuild)
    assert o.expression == "COPY --from=build . /app"
    assert isinstance(o.trigger, ins.Copy) and o.trigger.from_ == "build"


def test_env_label_and_legacy_form() -> None:
    e = one('ENV A=1 B="two words"')
    assert isinstance(e, ins.Env)
    assert [(p.key, p.value, p.legacy) for p in e.pairs] == [("A", "1", False), ("B", '"two words"', False)]
    legacy = one("ENV PATH /usr/bin")
    assert isinstance(legacy, ins.Env) and legacy.pairs[0].legacy


def test_keyword_casing_is_kept() -> None:
    r = one("Run echo")
    assert r.keyword == "Run" and r.name == "RUN"


def test_instructions_before_from() -> None:
    with pytest.raises(PybuildError) as e:
        parse_dockerfile(parse("ARG A=1\nRUN echo\nFROM scratch\n"))
    assert "no build stage in current context" in e.value.message
    assert e.value.location is not None and e.value.location.line == 2


def test_meta_args_and_stages() -> None:
    p = parse_dockerfile(parse("ARG A=1\nARG B\nFROM a AS one\nRUN x\nFROM one\nCOPY a b\n"))
    assert [a.args[0].key for a in p.meta_args] == ["A", "B"]
    assert [len(s.commands) for s in p.stages] == [1, 1]
    assert p.stages[0].from_.stage_name == "one"
