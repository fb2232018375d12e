"""Build checks (BuildKit's linter): rule names, messages, the ``# check=`` directive, and the static rules.

The planner reports the rules that need expansion or stage state (UndefinedVar, UndefinedArgInFrom,
MultipleInstructionsDisallowed, JSONArgsRecommended, WorkdirRelativePath, ...) through a ``Linter``;
the rules that only need the typed instructions are in :func:`static_checks`. Warnings are data: nothing
here prints.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from pybuild.errors import Location, PybuildError
from pybuild.model import instructions as ins
from pybuild.model.ast import ParseWarning

_URL = "https://docs.docker.com/go/dockerfile/rule/"


@dataclass(frozen=True)
class Rule:
    """A build check: its name and description."""

    name: str
    description: str
    experimental: bool = False

    @property
    def url(self) -> str:
        return _URL + re.sub(r"(?<!^)(?=[A-Z])", "-", self.name).lower().replace("j-s-o-n", "json") + "/"


RULES = {
    r.name: r
    for r in (
        Rule("StageNameCasing", "Stage names should be lowercase"),
        Rule("FromAsCasing", "The 'as' keyword should match the case of the 'from' keyword"),
        Rule("NoEmptyContinuation", "Empty continuation lines will become errors in a future release"),
        Rule(
            "ConsistentInstructionCasing",
            "All commands within the Dockerfile should use the same casing (either upper or lower)",
        ),
        Rule("DuplicateStageName", "Stage names should be unique"),
        Rule("ReservedStageName", "Reserved words should not be used as stage names"),
        Rule(
            "JSONArgsRecommended",
            "JSON arguments recommended for ENTRYPOINT/CMD to prevent unintended behavior related to OS signals",
        ),
        Rule(
            "MaintainerDeprecated",
            "The MAINTAINER instruction is deprecated, use a label instead to define an image author",
        ),
        Rule("UndefinedArgInFrom", "FROM command must use declared ARGs"),
        Rule(
            "WorkdirRelativePath",
            "Relative workdir without an absolute workdir declared within the build can have unexpected results "
            "if the base image changes",
        ),
        Rule("UndefinedVar", "Variables should be defined before their use"),
        Rule(
            "MultipleInstructionsDisallowed",
            "Multiple instructions of the same type should not be used in the same stage",
        ),
        Rule("LegacyKeyValueFormat", "Legacy key/value format with whitespace separator should not be used"),
        Rule(
            "RedundantTargetPlatform",
            "Setting platform to predefined $TARGETPLATFORM in FROM is redundant as this is the default behavior",
        ),
        Rule("SecretsUsedInArgOrEnv", "Sensitive data should not be used in the ARG or ENV commands"),
        Rule(
            "InvalidDefaultArgInFrom",
            "Default value for global ARG results in an empty or invalid base image name",
        ),
        Rule("FromPlatformFlagConstDisallowed", "FROM --platform flag should not use a constant value"),
        Rule("ExposeProtoCasing", "Protocol in EXPOSE instruction should be lowercase"),
        Rule(
            "ExposeInvalidFormat",
            "IP address and host-port mapping should not be used in EXPOSE instruction. This will become an "
            "error in a future release",
        ),
        Rule("UnusedBuildArg", "Build arguments given on the command line should be consumed by an ARG"),
        Rule(
            "InvalidDefinitionDescription",
            "Comment for build stage or argument should follow the format: `# <arg/stage name> <description>`.",
            experimental=True,
        ),
    )
}


@dataclass(frozen=True)
class LintWarning:
    """One build-check warning at a place in the Dockerfile."""

    rule: str
    message: str
    file: str
    line: int
    column: int = 0
    url: str = ""

    def render(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: warning: {self.rule}: {self.message}"

    def to_dict(self) -> dict[str, object]:
        return {"rule": self.rule, "message": self.message, "file": self.file, "line": self.line,
                "column": self.column, "url": self.url}


@dataclass(frozen=True)
class CheckConfig:
    """The ``# check=skip=A,B;error=true;experimental=C`` directive."""

    skip_all: bool = False
    skip: frozenset[str] = frozenset()
    error: bool = False
    experimental_all: bool = False
    experimental: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, text: str | None) -> CheckConfig:
        text = (text or "").strip()
        if not text:
            return cls()
        skip_all = exp_all = error = False
        skip: set[str] = set()
        exp: set[str] = set()
        for part in text.split(";", 2):
            key, eq, value = part.partition("=")
            if not eq:
                raise PybuildError(f'failed to parse check options: invalid check option "{part}"')
            key, value = key.strip(), value.strip()
            if key == "skip":
                if value == "all":
                    skip_all = True
                else:
                    skip |= {r.strip() for r in value.split(",")}
            elif key == "experimental":
                if value == "all":
                    exp_all = True
                else:
                    exp |= {r.strip() for r in value.split(",")}
            elif key == "error":
                if value.lower() in ("1", "t", "true"):
                    error = True
                elif value.lower() in ("0", "f", "false"):
                    error = False
                else:
                    raise PybuildError(f'failed to parse check options: invalid boolean "{value}" in "{part}"')
            else:
                raise PybuildError(f'failed to parse check options: invalid check option "{key}"')
        return cls(skip_all, frozenset(skip), error, exp_all, frozenset(exp))


class Linter:
    """Collects warnings for one Dockerfile, honouring the check directive."""

    def __init__(self, file: str, config: CheckConfig | None = None) -> None:
        self.file = file
        self.config = config or CheckConfig()
        self.warnings: list[LintWarning] = []
        self._seen: set[tuple[str, str, int]] = set()

    def enabled(self, rule: str) -> bool:
        r = RULES[rule]
        if r.experimental:
            return self.config.experimental_all or rule in self.config.experimental
        return not (self.config.skip_all or rule in self.config.skip)

    def report(self, rule: str, message: str, location: Location | None, *, column: int | None = None) -> None:
        if not self.enabled(rule):
            return
        line = location.line if location else 0
        key = (rule, message, line)
        if key in self._seen:  # the same stage can be visited twice (e.g. a base stage of two targets)
            return
        self._seen.add(key)
        col = column if column is not None else (location.column if location else 0)
        self.warnings.append(LintWarning(rule, message, self.file, line, col, RULES[rule].url))

    def sorted(self) -> tuple[LintWarning, ...]:
        return tuple(sorted(self.warnings, key=lambda w: (w.line, w.column)))

    def error(self) -> PybuildError | None:
        """With ``check=error=true``, any warning fails the build (BuildKit's lint violation error)."""
        if not self.config.error or not self.warnings:
            return None
        rules = ", ".join(sorted({w.rule for w in self.warnings}))
        return PybuildError(f"lint violation found for rules: {rules}")


_SECRET = re.compile(r"(?i)(?:_|^)(?:apikey|auth|credential|credentials|key|password|pword|passwd|secret|token)(?:_|$)")
_SECRET_ALLOW = re.compile(r"(?i)(?:_|^)(?:public|file|version)(?:_|$)")


def check_secret_key(lint: Linter, instruction: str, key: str, location: Location) -> None:
    if _SECRET.search(key) and not _SECRET_ALLOW.search(key):
        lint.report(
            "SecretsUsedInArgOrEnv",
            f'Do not use ARG or ENV instructions for sensitive data ({instruction} "{key}")',
            location,
        )


def _self_consistent(s: str) -> bool:
    return s == s.lower() or s == s.upper()


def static_checks(
    lint: Linter, parsed: ins.ParsedDockerfile, parse_warnings: Iterable[ParseWarning] = ()
) -> None:
    """The rules that need only the typed instructions (BuildKit runs them while parsing)."""
    for w in parse_warnings:
        if w.rule == "NoEmptyContinuation" or "continuation" in w.message.lower():
            lint.report("NoEmptyContinuation", "Empty continuation line", Location(lint.file, w.line, w.column))
    everything: list[ins.Instruction] = list(parsed.meta_args)
    for st in parsed.stages:
        everything.append(st.from_)
        everything.extend(st.commands)
    seen_names: set[str] = set()
    for st in parsed.stages:
        f = st.from_
        if f.stage_name:
            if f.stage_name_as_written != f.stage_name:
                lint.report("StageNameCasing", f"Stage name '{f.stage_name_as_written}' should be lowercase",
                            f.location)
            kw = f.keyword
            if _self_consistent(kw) and f.as_keyword:
                want = f.as_keyword.lower() if kw == kw.lower() else f.as_keyword.upper()
                if f.as_keyword != want:
                    lint.report("FromAsCasing", f"'{f.as_keyword}' and '{kw}' keywords' casing do not match",
                                f.location)
            if f.stage_name in ("context", "scratch"):
                lint.report("ReservedStageName",
                            f'Stage name should not use the same name as reserved stage "{f.stage_name}"', f.location)
            seen_names.add(f.stage_name)
        _definition_description(lint, "FROM", [f.stage_name] if f.stage_name else [], f)
    for inst in everything:
        if isinstance(inst, ins.Maintainer):
            lint.report("MaintainerDeprecated", "Maintainer instruction is deprecated in favor of using label",
                        inst.location)
        elif isinstance(inst, ins.Arg):
            _definition_description(lint, "ARG", [a.key for a in inst.args], inst)
    # ConsistentInstructionCasing: compare against the majority (meta ARGs are not counted, as in BuildKit)
    counted = [i for i in everything if not (isinstance(i, ins.Arg) and i in parsed.meta_args)]
    lower = sum(1 for i in counted if _self_consistent(i.keyword) and i.keyword == i.keyword.lower())
    upper = sum(1 for i in counted if _self_consistent(i.keyword) and i.keyword != i.keyword.lower())
    majority_lower = lower > upper
    for i in counted:
        if majority_lower and i.keyword.lower() != i.keyword:
            casing = "lowercase"
        elif not majority_lower and i.keyword.upper() != i.keyword:
            casing = "uppercase"
        else:
            continue
        lint.report("ConsistentInstructionCasing",
                    f"Command '{i.keyword}' should match the case of the command majority ({casing})", i.location)


def _definition_description(lint: Linter, instruction: str, keys: list[str], inst: ins.Instruction) -> None:
    if not inst.comments or not keys:
        return
    first_word = inst.comments[-1].split(" ")[0]
    if first_word in keys:
        return
    example = keys[0] if len(keys) == 1 else "<arg_key>"
    lint.report("InvalidDefinitionDescription",
                f"Comment for {instruction} should follow the format: `# {example} <description>`", inst.location)
