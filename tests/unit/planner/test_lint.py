"""Build checks: each rule fires where BuildKit's does (same names and messages), and the check directive."""

from __future__ import annotations

from typing import Any

import pytest

from pybuild.errors import PybuildError
from pybuild.frontend.parser import parse
from pybuild.model.oci import ContainerConfig, Platform
from pybuild.planner.lint import CheckConfig
from pybuild.planner.plan import BaseImage, Plan, plan

AMD64 = Platform(architecture="amd64", os="linux")


def P(text: str, **kw: Any) -> Plan:
    kw.setdefault("build_platform", AMD64)
    kw.setdefault("all_stages", True)
    return plan(parse(text), **kw)


def rules(text: str, **kw: Any) -> list[tuple[str, int]]:
    return [(w.rule, w.line) for w in P(text, **kw).warnings]


def messages(text: str, rule: str, **kw: Any) -> list[str]:
    return [w.message for w in P(text, **kw).warnings if w.rule == rule]


class Images:
    def __init__(self, **configs: ContainerConfig) -> None:
        self.configs = configs

    def resolve(self, ref: str, platform: Platform) -> BaseImage | None:
        cfg = self.configs.get(ref.replace(":", "_"))
        return BaseImage(config=cfg) if cfg is not None else None


def test_clean_file_has_no_warnings() -> None:
    assert rules('FROM alpine:3 AS build\nRUN make\nFROM scratch\nCOPY --from=build /x /x\nCMD ["/x"]\n') == []


def test_json_args_recommended() -> None:
    assert messages("FROM scratch\nCMD run me\nENTRYPOINT exec me\n", "JSONArgsRecommended") == [
        "JSON arguments recommended for CMD to prevent unintended behavior related to OS signals",
        "JSON arguments recommended for ENTRYPOINT to prevent unintended behavior related to OS signals",
    ]
    assert messages('FROM scratch\nSHELL ["/bin/bash", "-c"]\nCMD run me\n', "JSONArgsRecommended") == []


def test_maintainer_deprecated() -> None:
    assert rules("FROM scratch\nMAINTAINER me\n") == [("MaintainerDeprecated", 2)]


def test_from_as_casing_and_stage_name_casing() -> None:
    assert rules("FROM scratch as base\nRUN x\n") == [("FromAsCasing", 1)]
    assert messages("from scratch AS base\nrun x\n", "FromAsCasing") == [
        "'AS' and 'from' keywords' casing do not match"]
    assert messages("FROM scratch AS Base\n", "StageNameCasing") == ["Stage name 'Base' should be lowercase"]


def test_consistent_instruction_casing() -> None:
    assert messages("FROM scratch\nRUN a\nrun b\nRUN c\n", "ConsistentInstructionCasing") == [
        "Command 'run' should match the case of the command majority (uppercase)"]
    assert rules("from scratch\nrun a\nRun b\n") == [("ConsistentInstructionCasing", 3)]


def test_multiple_instructions_disallowed_points_at_the_earlier_one() -> None:
    text = 'FROM scratch\nCMD ["a"]\nCMD ["b"]\nHEALTHCHECK NONE\nHEALTHCHECK NONE\n'
    got = [(w.rule, w.line) for w in P(text).warnings]
    assert got == [("MultipleInstructionsDisallowed", 2), ("MultipleInstructionsDisallowed", 4)]
    # one per stage: a CMD in another stage does not count
    assert rules('FROM scratch\nCMD ["a"]\nFROM scratch\nCMD ["b"]\n') == []


def test_legacy_key_value_format() -> None:
    assert messages("FROM scratch\nENV A 1\nLABEL b 2\n", "LegacyKeyValueFormat") == [
        '"ENV key=value" should be used instead of legacy "ENV key value" format',
        '"LABEL key=value" should be used instead of legacy "LABEL key value" format',
    ]


def test_undefined_var_with_known_env() -> None:
    assert messages("FROM scratch\nENV A=1\nCOPY $B /x\n", "UndefinedVar") == ["Usage of undefined variable '$B'"]
    assert messages("FROM scratch\nENV APP=1\nWORKDIR /$APX\n", "UndefinedVar") == [
        "Usage of undefined variable '$APX' (did you mean $APP?)"]


def test_undefined_var_is_quiet_for_unknown_base_image_env() -> None:
    assert messages("FROM debian\nENV LD=$LD_LIBRARY_PATH:/x\n", "UndefinedVar") == []
    # ... but a global ARG used without redeclaring it is a mistake whatever the image holds
    assert messages("ARG VERSION=1\nFROM debian\nENV V=$VERSION\n", "UndefinedVar") == [
        "Usage of undefined variable '$VERSION'"]


def test_undefined_var_uses_resolved_base_env() -> None:
    images = Images(debian=ContainerConfig(env=("LD_LIBRARY_PATH=/lib",)))
    assert messages("FROM debian\nENV LD=$LD_LIBRARY_PATH:/x O=$OTHER\n", "UndefinedVar", resolver=images) == [
        "Usage of undefined variable '$OTHER'"]


def test_undefined_var_not_for_declared_arg_without_value() -> None:
    assert messages("FROM scratch\nARG OPT\nCOPY ${OPT}x /x\n", "UndefinedVar") == []


def test_undefined_arg_in_from() -> None:
    assert messages("ARG VERSION=1\nFROM alpine:3$VERSON\n", "UndefinedArgInFrom") == [
        "FROM argument 'VERSON' is not declared (did you mean VERSION?)"]
    assert messages("FROM alpine:$TARGETARCH\n", "UndefinedArgInFrom") == []


def test_workdir_relative_path() -> None:
    assert rules("FROM scratch\nWORKDIR app\nWORKDIR more\n") == [("WorkdirRelativePath", 2)]
    assert rules("FROM scratch\nWORKDIR /app\nWORKDIR more\n") == []


def test_reserved_stage_name() -> None:
    assert rules("FROM scratch AS context\n") == [("ReservedStageName", 1)]


def test_redundant_target_platform() -> None:
    assert rules("FROM --platform=$TARGETPLATFORM scratch\n") == [("RedundantTargetPlatform", 1)]
    assert rules("FROM --platform=$BUILDPLATFORM scratch\n") == []


def test_from_platform_flag_const() -> None:
    assert rules("FROM --platform=linux/arm64 scratch AS build\n") == [("FromPlatformFlagConstDisallowed", 1)]
    assert rules("FROM --platform=linux/arm64 scratch AS build-arm64\n") == []


def test_secrets_used_in_arg_or_env() -> None:
    assert messages("FROM scratch\nARG API_TOKEN\nENV PUBLIC_KEY=x\n", "SecretsUsedInArgOrEnv") == [
        'Do not use ARG or ENV instructions for sensitive data (ARG "API_TOKEN")']


def test_expose_checks() -> None:
    assert rules("FROM scratch\nEXPOSE 80/TCP 127.0.0.1:8080:80\n") == [
        ("ExposeInvalidFormat", 2), ("ExposeProtoCasing", 2)]


def test_invalid_default_arg_in_from() -> None:
    assert rules("ARG TAG\nFROM alpine:${TAG}\n", build_args={"TAG": "3"}) == [("InvalidDefaultArgInFrom", 2)]


def test_no_empty_continuation() -> None:
    text = "FROM scratch\nRUN a \\\n\n  b\n"
    lines = [w.line for w in parse(text).warnings]
    assert len(lines) == 1 and lines[0] in (3, 4)  # the parser decides which line it blames
    assert rules(text) == [("NoEmptyContinuation", lines[0])]


def test_check_directive_skip_and_error() -> None:
    assert rules("# check=skip=MaintainerDeprecated\nFROM scratch\nMAINTAINER me\n") == []
    assert rules("# check=skip=all\nFROM scratch\nMAINTAINER me\ncmd x\n") == []
    p = P("# check=error=true\nFROM scratch\nMAINTAINER me\n")
    err = p.lint_error()
    assert err is not None and err.message == "lint violation found for rules: MaintainerDeprecated"
    assert P("FROM scratch\nMAINTAINER me\n").lint_error() is None


def test_experimental_rule_only_when_enabled() -> None:
    text = "# check=experimental=InvalidDefinitionDescription\n# the base stage\nFROM scratch AS base\n"
    assert rules(text) == [("InvalidDefinitionDescription", 3)]
    assert rules("# the base stage\nFROM scratch AS base\n") == []


def test_check_config_parse() -> None:
    c = CheckConfig.parse("skip=A, B;error=true")
    assert c.skip == frozenset({"A", "B"}) and c.error
    assert CheckConfig.parse("").skip == frozenset()
    for bad in ("nonsense", "skip", "color=red", "error=maybe"):
        with pytest.raises(PybuildError, match="failed to parse check options"):
            CheckConfig.parse(bad)


def test_warning_urls_follow_buildkit() -> None:
    w = P("FROM scratch\nCMD x\n").warnings[0]
    assert w.url == "https://docs.docker.com/go/dockerfile/rule/json-args-recommended/"
