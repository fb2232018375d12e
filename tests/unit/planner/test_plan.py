"""The planner: ARG scope, overrides, predefined args, stage references, target pruning, ONBUILD, expansion."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from pybuild.errors import PybuildError
from pybuild.frontend.parser import parse
from pybuild.model import instructions as ins
from pybuild.model.oci import ContainerConfig, Platform
from pybuild.planner.plan import DEFAULT_PATH, BaseImage, Plan, Source, Step, plan

AMD64 = Platform(architecture="amd64", os="linux")
ARM64 = Platform(architecture="arm64", os="linux")


def P(text: str, **kw: Any) -> Plan:
    kw.setdefault("build_platform", AMD64)
    return plan(parse(text), **kw)


def err(text: str, **kw: Any) -> PybuildError:
    with pytest.raises(PybuildError) as e:
        P(text, **kw)
    return e.value


def steps(p: Plan, stage: int = -1) -> tuple[Step, ...]:
    return p.stages[stage].steps


def env_of(step: Step) -> dict[str, str]:
    return dict(step.env)


def inst(p: Plan, stage: int, i: int) -> ins.Instruction:
    return p.stages[stage].steps[i].instruction


class FakeResolver:
    def __init__(self, images: Mapping[str, BaseImage]) -> None:
        self.images = images
        self.asked: list[tuple[str, Platform]] = []

    def resolve(self, ref: str, platform: Platform) -> BaseImage | None:
        self.asked.append((ref, platform))
        return self.images.get(ref)


# --- ARG scope -----------------------------------------------------------------------------------------------------

def test_global_arg_is_visible_in_from_only() -> None:
    p = P("ARG IMG=alpine:3\nARG V=1\nFROM $IMG\nENV A=x$V\nRUN true\n")
    assert p.stages[0].base_image == "alpine:3"
    env = inst(p, 0, 0)
    assert isinstance(env, ins.Env) and env.pairs[0].value == "x"
    assert "V" not in env_of(steps(p)[1])


def test_global_arg_redeclared_in_stage_takes_global_value() -> None:
    p = P("ARG V=1\nFROM scratch\nARG V\nENV A=$V\n")
    env = inst(p, 0, 1)
    assert isinstance(env, ins.Env) and env.pairs[0].value == "1"
    assert dict(steps(p)[1].args) == {"V": "1"}


def test_build_arg_overrides_global_and_stage_defaults() -> None:
    text = "ARG V=1\nFROM scratch\nARG V\nARG W=default\nENV A=$V B=$W\n"
    p = P(text, build_args={"V": "7", "W": "8"})
    env = inst(p, 0, 2)
    assert isinstance(env, ins.Env) and [kv.value for kv in env.pairs] == ["7", "8"]
    assert p.unused_build_args == ()


def test_global_default_expands_earlier_global_args() -> None:
    p = P("ARG A=x\nARG B=${A}y\nFROM scratch\nARG B\nLABEL b=$B\n", build_args={"A": "z"})
    label = inst(p, 0, 1)
    assert isinstance(label, ins.Label) and label.pairs[0].value == "zy"


def test_stage_arg_default_expands_env_and_env_wins_later() -> None:
    p = P("FROM scratch\nENV X=1\nARG Y=$X\nENV Y=env\nLABEL y=$Y\n")
    arg = inst(p, 0, 1)
    assert isinstance(arg, ins.Arg) and arg.args[0].value == "1"
    label = inst(p, 0, 3)
    assert isinstance(label, ins.Label) and label.pairs[0].value == "env"


def test_env_words_see_environment_from_before_the_instruction() -> None:
    p = P("FROM scratch\nENV A=1\nENV A=2 B=$A\n")
    env = inst(p, 0, 1)
    assert isinstance(env, ins.Env) and [kv.value for kv in env.pairs] == ["2", "1"]
    assert dict(p.stages[0].config_env)["B"] == "1"


def test_arg_without_value_is_declared_but_not_in_env() -> None:
    p = P("FROM scratch\nARG NOVALUE\nRUN true\n")
    assert "NOVALUE" not in env_of(steps(p)[1])
    assert not [w for w in p.warnings if w.rule == "UndefinedVar"]


def test_args_are_inherited_by_child_stage_but_not_sibling() -> None:
    p = P("FROM scratch AS base\nARG V=1\nFROM base AS child\nRUN true\nFROM scratch\nCOPY --from=child a b\n")
    child = p.stages[1]
    assert env_of(child.steps[0])["V"] == "1" and dict(child.steps[0].args) == {"V": "1"}
    assert "V" not in env_of(p.stages[2].steps[0])


def test_args_are_in_step_env_but_not_in_config_env() -> None:
    p = P("FROM scratch\nARG A=1\nENV B=2\nRUN true\n")
    run = steps(p)[2]
    assert env_of(run)["A"] == "1" and env_of(run)["B"] == "2"
    assert "A" not in dict(run.config_env) and dict(run.config_env)["B"] == "2"
    assert env_of(run)["PATH"] == DEFAULT_PATH


# --- predefined args -------------------------------------------------------------------------------------------

def test_predefined_platform_args() -> None:
    text = "FROM --platform=$BUILDPLATFORM scratch AS b\nARG TARGETARCH\nARG BUILDPLATFORM\nARG TARGETPLATFORM\nRUN x\n"
    p = P(text, platform=ARM64)
    env = env_of(steps(p)[3])
    assert env["TARGETARCH"] == "arm64" and env["BUILDPLATFORM"] == "linux/amd64"
    assert env["TARGETPLATFORM"] == "linux/arm64"
    assert p.stages[0].platform == AMD64
    assert p.stages[0].from_.platform == "linux/amd64"


def test_predefined_args_need_declaring_in_stage() -> None:
    p = P("FROM scratch\nRUN true\n")
    assert "TARGETARCH" not in env_of(steps(p)[0])
    assert dict(p.global_args)["TARGETARCH"] == "amd64"


def test_predefined_arg_usable_in_from() -> None:
    p = P("FROM busybox:$TARGETARCH\n", platform=ARM64)
    assert p.stages[0].base_image == "busybox:arm64"


def test_proxy_args_go_to_proxy_env_not_history() -> None:
    p = P("FROM scratch\nRUN true\n", build_args={"HTTP_PROXY": "http://p:3128", "no_proxy": "x"})
    assert dict(p.proxy_env) == {"HTTP_PROXY": "http://p:3128", "no_proxy": "x"}
    assert p.unused_build_args == ()
    assert "HTTP_PROXY" not in env_of(steps(p)[0])


def test_unused_build_arg_warning() -> None:
    p = P("ARG USED\nFROM scratch\n", build_args={"USED": "1", "EXTRA": "2"})
    assert p.unused_build_args == ("EXTRA",)
    assert [w.rule for w in p.warnings] == ["UnusedBuildArg"]


# --- stages, references, target ----------------------------------------------------------------------------------

MULTI = """\
FROM scratch AS base
COPY a /a
FROM base AS build
RUN make
FROM scratch AS unrelated
RUN true
FROM alpine AS final
COPY --from=build /out /out
"""


def test_target_pruning_and_order() -> None:
    p = P(MULTI)
    assert [s.name for s in p.stages] == ["base", "build", "final"]
    assert p.target == 3 and p.target_stage.name == "final"
    assert p.stage(1).base_stage == 0 and p.stage(1).deps == frozenset({0})
    assert p.stage(3).deps == frozenset({1}) and p.stage(3).images == ("alpine",)
    assert steps(p)[0].sources == (Source(stage=1),)


def test_target_selects_stage_case_insensitively() -> None:
    p = P(MULTI, target="BUILD")
    assert [s.name for s in p.stages] == ["base", "build"] and p.target == 1


def test_all_stages_plans_everything() -> None:
    assert len(P(MULTI, all_stages=True).stages) == 4


def test_unknown_target() -> None:
    e = err(MULTI, target="biuld")
    assert e.message == 'target stage "biuld" could not be found' and e.hint == "did you mean build?"


def test_numeric_from_and_image_from() -> None:
    p = P("FROM scratch\nRUN a\nFROM scratch\nCOPY --from=0 /x /y\nCOPY --from=busybox:1 /bin/sh /sh\n")
    st = p.stages[-1]
    assert st.deps == frozenset({0}) and st.images == ("busybox:1",)
    assert [s.sources for s in st.steps] == [(Source(stage=0),), (Source(image="busybox:1"),)]


def test_stage_names_are_case_insensitive_in_copy_from() -> None:
    p = P("FROM scratch AS Build\nFROM scratch\nCOPY --from=BUILD /x /y\n")
    assert p.stages[-1].deps == frozenset({0})


def test_invalid_stage_index() -> None:
    e = err("FROM scratch\nCOPY --from=5 /x /y\n")
    assert e.message == "invalid stage index 5" and e.location is not None and e.location.line == 2


def test_variable_in_copy_from_is_an_error() -> None:
    e = err("ARG S=x\nFROM scratch\nCOPY --from=$S /x /y\n")
    assert "variable expansion is not supported for --from" in e.message


def test_forward_reference() -> None:
    e = err("FROM scratch AS a\nCOPY --from=b /x /y\nFROM scratch AS b\nRUN true\nFROM a\n")
    assert e.message == 'cannot copy from stage "b", it needs to be defined before current stage "a"'
    assert e.location is not None and e.location.line == 2


def test_cycle() -> None:
    e = err("FROM scratch AS a\nCOPY --from=b /x /y\nFROM a AS b\nRUN true\n")
    assert e.message.startswith("circular dependency detected on stage: ")


def test_self_reference_is_a_cycle() -> None:
    e = err("FROM scratch AS a\nCOPY --from=a /x /y\n")
    assert e.message == "circular dependency detected on stage: a"


def test_forward_from_name_is_an_image() -> None:
    # BuildKit only matches FROM against stages defined above it; a later name is an image reference
    p = P("FROM later\nFROM scratch AS later\n", all_stages=True)
    assert p.stages[0].base_image == "later" and p.stages[0].base_stage is None


def test_run_mount_from_stage_is_a_dependency() -> None:
    p = P("FROM scratch AS deps\nFROM scratch\nRUN --mount=from=deps,target=/d --mount=type=cache,target=/c make\n")
    run = steps(p)[0]
    assert run.sources == (Source(stage=0), None)
    assert p.stages[-1].deps == frozenset({0})
    r = run.instruction
    assert isinstance(r, ins.Run) and [m.type for m in r.mounts] == ["bind", "cache"]


def test_duplicate_stage_name() -> None:
    e = err("FROM scratch AS x\nFROM scratch AS X\n")
    assert e.message == 'duplicate stage name "x", stage names should be unique'
    assert e.location is not None and e.location.line == 2


def test_no_from() -> None:
    e = err("ARG A=1\n")
    assert e.message == "dockerfile contains no stages to build"
    e2 = err("RUN true\nFROM scratch\n")
    assert "no build stage in current context" in e2.message


def test_blank_base_name() -> None:
    e = err("ARG IMG\nFROM $IMG\n")
    assert e.message == "base name ($IMG) should not be blank"


def test_invalid_image_reference() -> None:
    e = err("FROM Alpine:3\n")
    assert 'failed to parse stage name "Alpine:3"' in e.message


# --- ONBUILD ----------------------------------------------------------------------------------------------------

def test_onbuild_from_base_stage_is_injected_first() -> None:
    p = P("FROM scratch AS base\nONBUILD ENV A=1\nONBUILD RUN echo $A\nFROM base\nRUN after\n")
    child = p.stages[-1].steps
    assert [type(s.instruction).__name__ for s in child] == ["Env", "Run", "Run"]
    assert child[0].instruction.from_onbuild and child[0].instruction.location.line == 4
    assert not child[2].instruction.from_onbuild
    assert env_of(child[1])["A"] == "1"


def test_onbuild_from_resolver_and_base_env() -> None:
    cfg = ContainerConfig(env=("PATH=/opt/bin", "FOO=bar"), on_build=("COPY . /app", "RUN make $FOO"),
                          working_dir="/srv", user="app", shell=("/bin/bash", "-c"))
    resolver = FakeResolver({"python:3": BaseImage(config=cfg)})
    p = P("FROM python:3\nWORKDIR sub\nRUN x\n", resolver=resolver)
    st = p.stages[0]
    kinds = [(type(s.instruction).__name__, s.instruction.from_onbuild) for s in st.steps]
    assert kinds == [("Copy", True), ("Run", True), ("Workdir", False), ("Run", False)]
    first = st.steps[0]
    assert env_of(first)["FOO"] == "bar" and env_of(first)["PATH"] == "/opt/bin"
    assert first.workdir == "/srv" and first.user == "app" and first.shell == ("/bin/bash", "-c")
    assert st.steps[3].workdir == "/srv/sub"
    assert resolver.asked == [("python:3", AMD64)]
    assert st.base is not None and st.base.config is cfg


def test_onbuild_trigger_adds_stage_dependency() -> None:
    cfg = ContainerConfig(on_build=("COPY --from=assets /x /y",))
    resolver = FakeResolver({"img": BaseImage(config=cfg)})
    p = P("FROM scratch AS assets\nFROM scratch AS unused\nFROM img\n", resolver=resolver)
    assert [s.name for s in p.stages] == ["assets", None]
    assert p.stages[-1].deps == frozenset({0})


def test_resolver_not_asked_for_pruned_stages() -> None:
    resolver = FakeResolver({})
    P("FROM a:1 AS a\nFROM b:1 AS b\n", target="b", resolver=resolver)
    assert [r for r, _ in resolver.asked] == ["b:1"]


# --- expansion positions ---------------------------------------------------------------------------------------

def test_run_cmd_entrypoint_text_not_expanded() -> None:
    p = P("FROM scratch\nENV A=1\nRUN echo $A\nCMD echo $A\nENTRYPOINT [\"echo\", \"$A\"]\n")
    assert [inst(p, 0, i).cmd for i in (1, 2, 3)] == [  # type: ignore[attr-defined]
        ("echo $A",), ("echo $A",), ("echo", "$A")]


def test_expanded_positions() -> None:
    text = """\
FROM scratch
ENV D=/data U=app P=8080 S=SIGTERM F=file K=key
WORKDIR $D
USER $U:$U
VOLUME $D/vol $D/two
EXPOSE $P 9000-9001/udp
STOPSIGNAL $S
LABEL $K="v $F"
COPY --chown=$U --chmod=644 $F* $D/
ADD --checksum=sha256:$K https://example.com/$F $D/
COPY --exclude=$F <<EOT $D/inline
$D ${U}
EOT
"""
    p = P(text)
    got = [s.instruction for s in steps(p)]
    wd, user, vol, expose, sig, label, copy, add, heredoc = got[1:]
    assert isinstance(wd, ins.Workdir) and wd.path == "/data"
    assert isinstance(user, ins.User) and user.user == "app:app"
    assert isinstance(vol, ins.Volume) and vol.paths == ("/data/vol", "/data/two")
    assert isinstance(expose, ins.Expose) and expose.ports == ("8080/tcp", "9000/udp", "9001/udp")
    assert isinstance(sig, ins.StopSignal) and sig.signal == "SIGTERM"
    assert isinstance(label, ins.Label) and (label.pairs[0].key, label.pairs[0].value) == ("key", "v file")
    assert isinstance(copy, ins.Copy) and (copy.chown, copy.sources, copy.dest) == ("app", ("file*",), "/data/")
    assert isinstance(add, ins.Add) and add.checksum == "sha256:key"
    assert add.sources == ("https://example.com/file",)
    assert isinstance(heredoc, ins.Copy) and heredoc.contents[0].data == "/data app\n"
    assert heredoc.exclude == ("$F",)  # BuildKit does not expand --exclude patterns


def test_quoted_heredoc_is_not_expanded() -> None:
    p = P("FROM scratch\nENV A=1\nCOPY <<'EOT' /x\n$A \"q\"\nEOT\n")
    c = inst(p, 0, 1)
    assert isinstance(c, ins.Copy) and c.contents[0].data == '$A "q"\n'


def test_heredoc_body_keeps_quotes_when_expanded() -> None:
    p = P("FROM scratch\nENV A=1\nCOPY <<EOT /x\n'$A' \"$A\"\nEOT\n")
    c = inst(p, 0, 1)
    assert isinstance(c, ins.Copy) and c.contents[0].data == "'1' \"1\"\n"


def test_backtick_escape_directive() -> None:
    p = P("# escape=`\nFROM scratch\nENV A=C:\\dir\nWORKDIR $A\nLABEL x=a`$A\n")
    label = inst(p, 0, 2)
    assert isinstance(label, ins.Label) and label.pairs[0].value == "a$A"
    assert p.escape == "`"


def test_workdir_normalisation() -> None:
    p = P("FROM scratch\nWORKDIR /a/b/\nWORKDIR ../c\nWORKDIR d\nRUN pwd\n")
    assert [s.workdir for s in steps(p)] == ["/a/b", "/a/c", "/a/c/d", "/a/c/d"]


def test_expansion_error_is_located() -> None:
    e = err("FROM scratch\n\nENV A=${B\n")
    assert e.location is not None and e.location.line == 3
    assert "missing '}'" in e.message


def test_mount_values_are_expanded() -> None:
    p = P("FROM scratch\nARG C=/cache\nRUN --mount=type=cache,target=$C,id=${C}-id true\n")
    r = inst(p, 0, 1)
    assert isinstance(r, ins.Run) and (r.mounts[0].target, r.mounts[0].cache_id) == ("/cache", "/cache-id")


def test_invalid_signal_and_port() -> None:
    assert err("FROM scratch\nSTOPSIGNAL SIGNOPE\n").message == "invalid signal: SIGNOPE"
    assert "invalid containerPort" in err("FROM scratch\nEXPOSE 99999\n").message
    assert "invalid proto" in err("FROM scratch\nEXPOSE 80/icmp\n").message


def test_shell_instruction_sets_shell() -> None:
    p = P('FROM scratch\nSHELL ["/bin/bash", "-eo", "pipefail", "-c"]\nRUN true\n')
    assert steps(p)[1].shell == ("/bin/bash", "-eo", "pipefail", "-c")
    assert steps(p)[0].shell == ("/bin/sh", "-c")


def test_stage_platform_is_inherited_from_base_stage() -> None:
    p = P("FROM --platform=$BUILDPLATFORM scratch AS build\nFROM build AS child\nFROM scratch\n",
          platform=ARM64, all_stages=True)
    assert [s.platform for s in p.stages] == [AMD64, AMD64, ARM64]


def test_windows_base_image_gets_cmd_shell_and_no_default_path() -> None:
    win = Platform(architecture="amd64", os="windows")
    resolver = FakeResolver({"servercore": BaseImage(config=ContainerConfig(), platform=win)})
    p = P("FROM servercore\nRUN dir\n", resolver=resolver)
    run = steps(p)[0]
    assert run.shell == ("cmd", "/S", "/C") and "PATH" not in env_of(run)
    assert p.stages[0].platform == win
