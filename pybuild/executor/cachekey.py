"""Cache keys for build steps, built from named inputs so that a miss can say what changed.

A step's key is sha256 over canonical JSON of its inputs: the parent's *result* (layer chain and config, not the
parent's key, so a re-run that yields the same layer keeps later steps cached), the expanded instruction, for a
RUN (and an ARG) the ARG and ENV values it can see, the platform, and what it reads (per-file digests of COPY/ADD
sources and bind-mount sources, results of --from stages, URL content digests). Secrets never enter: only their
ids, which the instruction text already holds.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from pybuild.model import instructions as ins
from pybuild.model.oci import ImageConfig

# Fields of an instruction that locate it in a file rather than say what it does.
_NOT_SEMANTIC = frozenset({"location", "end_line", "original", "keyword", "comments", "doc_comment",
                           "as_keyword", "stage_name_as_written", "from_onbuild", "flags_used", "mount_specs"})


@dataclass
class StepInputs:
    """Everything a step's outcome depends on, by name."""

    parent: str  # result digest of what the step starts from
    parent_desc: str  # how to name the parent in a miss message ("base image busybox:latest", "previous step")
    instruction: str  # canonical JSON of the expanded instruction
    instruction_text: str  # the instruction as written, for messages
    variables: dict[str, str]  # visible ENV and ARG values (RUN and ARG steps only: the others do not see them)
    args: list[str]  # which of the variables are build args (for "build arg X changed")
    platform: str
    files: dict[str, str] = field(default_factory=dict)  # source path -> digest of what a copy reads there
    mounts: dict[str, str] = field(default_factory=dict)  # --from / mount sources -> their result digests
    options: dict[str, str] = field(default_factory=dict)  # build-wide settings that change the result

    def key(self) -> str:
        material = {k: v for k, v in self.to_dict().items() if k not in ("parent_desc", "instruction_text")}
        return "sha256:" + hashlib.sha256(_canonical(material)).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        # Shallow: the fields are plain strs, lists and dicts already, and dataclasses.asdict's deep copy of a
        # 30,000-file context's entries costs more than hashing them.
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


def instruction_identity(inst: ins.Instruction) -> str:
    """Canonical JSON of what an expanded instruction does (not where it is written)."""
    def clean(obj: Any) -> Any:
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            d = {f.name: clean(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.name not in _NOT_SEMANTIC}
            d["$type"] = type(obj).__name__
            return d
        if isinstance(obj, tuple | list):
            return [clean(x) for x in obj]
        return obj

    return _canonical(clean(inst)).decode()


def result_digest(chain_id: str | None, config: ImageConfig) -> str:
    """What a step produced, as far as later steps can tell: its layer stack and its config without the history
    and creation times. No step's outcome depends on the history, so leaving it out lets a step stay cached when
    only an earlier line's text changed: Docker's rule that a changed ARG misses "upon its first usage, not its
    definition" (the ARG's own history line changes, the COPY after it does not care). A cache hit then takes
    the history from the current parent (Builder._restore)."""
    cfg = config.to_dict()
    cfg.pop("created", None)
    cfg.pop("history", None)
    return "sha256:" + hashlib.sha256(_canonical({"chain": chain_id, "config": cfg})).hexdigest()


def file_entries(records: Any) -> dict[str, str]:
    """Per-path digests from pybuild.context.source_entries records (several records of one path are joined)."""
    out: dict[str, hashlib._Hash] = {}
    for path, record in records:
        h = out.get(path)
        if h is None:
            h = out[path] = hashlib.sha256()
        h.update(record.encode("utf-8", "surrogateescape"))
    return {p: h.hexdigest()[:32] for p, h in out.items()}


def explain(old: dict[str, Any], new: StepInputs) -> list[str]:
    """Why `new` misses where `old` (the latest record for the same place) hit: one reason per input that differs."""
    reasons: list[str] = []
    if old.get("parent") != new.parent:
        reasons.append(f"{new.parent_desc} changed")
    text_changed = old.get("instruction_text") != new.instruction_text
    if text_changed:
        reasons.append(f"instruction changed (was: {old.get('instruction_text', '?')})")
    old_vars: dict[str, str] = old.get("variables", {})
    args = set(new.args) | set(old.get("args", []))
    for name in sorted(set(old_vars) | set(new.variables)):
        if old_vars.get(name) != new.variables.get(name):
            kind = "build arg" if name in args else "ENV"
            if name not in old_vars:
                reasons.append(f"{kind} {name} is new")
            elif name not in new.variables:
                reasons.append(f"{kind} {name} was removed")
            else:
                reasons.append(f"{kind} {name} changed")
    if old.get("platform") != new.platform:
        reasons.append(f"platform changed to {new.platform}")
    old_files: dict[str, str] = old.get("files", {})
    changed = sorted(p for p in set(old_files) | set(new.files) if old_files.get(p) != new.files.get(p))
    if changed:
        first = changed[0]
        what = "added" if first not in old_files else "removed" if first not in new.files else "changed"
        more = f" (and {len(changed) - 1} more file{'s' if len(changed) > 2 else ''})" if len(changed) > 1 else ""
        reasons.append(f"{first} {what}{more}")
    old_mounts: dict[str, str] = old.get("mounts", {})
    for name in sorted(set(old_mounts) | set(new.mounts)):
        if old_mounts.get(name) != new.mounts.get(name):
            reasons.append(f"{name} changed")
    old_opts: dict[str, str] = old.get("options", {})
    for name in sorted(set(old_opts) | set(new.options)):
        if old_opts.get(name) != new.options.get(name):
            # Lower-case options are flags (--compression), upper-case ones environment settings.
            flag = name if name.isupper() else f"--{name}"
            value = new.options.get(name)
            reasons.append(f"{flag} changed to {value}" if value is not None else f"{flag} was unset")
    if not reasons and old.get("instruction") != new.instruction:
        reasons.append("the instruction's expanded values changed")
    return reasons


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8",
                                                                                           "surrogateescape")
