"""A small, strict Dockerfile checker (hadolint-style rules this project relies on).

Docker cannot run where the tests run, so the images are checked statically: every base
pinned (exact version tag or digest, never ``latest``), multi-stage, a non-root ``USER``
in the final stage, remote ``ADD`` only with a checksum, ``pip install`` only of exact
pins, ``apt-get install`` without recommends, and every ``COPY`` source present in the
build context.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path

_PINNED_TAG = re.compile(r":[^/@]*\d+\.\d+\.\d+[^/@]*$")
_DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")


@dataclass(frozen=True)
class Instruction:
    """One instruction: keyword, its flags (``--from=x``) and its arguments."""

    line: int
    keyword: str
    flags: dict[str, str]
    args: list[str]
    raw: str


@dataclass
class Stage:
    """A build stage: base image, optional name, its instructions."""

    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)


def parse(text: str) -> list[Stage]:
    """Stages of a Dockerfile (continuation lines joined, comments dropped)."""
    stages: list[Stage] = []
    logical: list[tuple[int, str]] = []
    buffer, start = "", 0
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not buffer and (not stripped or stripped.startswith("#")):
            continue
        if buffer and stripped.startswith("#"):
            continue
        if not buffer:
            start = number
        if stripped.endswith("\\"):
            buffer += stripped[:-1] + " "
            continue
        logical.append((start, buffer + stripped))
        buffer = ""
    if buffer:
        raise ValueError("Dockerfile ends inside a continuation line")
    for number, raw in logical:
        keyword, _, rest = raw.partition(" ")
        keyword = keyword.upper()
        flags: dict[str, str] = {}
        words = rest.strip()
        if keyword in ("COPY", "ADD", "FROM", "RUN"):
            while words.startswith("--"):
                flag, _, words = words.partition(" ")
                key, _, value = flag[2:].partition("=")
                flags[key] = value
                words = words.strip()
        if keyword in ("COPY", "ADD") and words.startswith("["):
            import json  # noqa: PLC0415

            args = list(json.loads(words))
        else:
            args = shlex.split(words) if keyword != "RUN" else [words]
        instruction = Instruction(number, keyword, flags, args, raw)
        if keyword == "FROM":
            name = args[2] if len(args) >= 3 and args[1].upper() == "AS" else None
            stages.append(Stage(args[0], name))
        elif not stages:
            if keyword != "ARG":
                raise ValueError(f"line {number}: {keyword} before the first FROM")
        else:
            stages[-1].instructions.append(instruction)
    return stages


def image_pinned(image: str) -> bool:
    """An exact version tag (x.y.z) or a sha256 digest; never ``latest``, never bare."""
    if "latest" in image.rsplit("/", maxsplit=1)[-1] or "$" in image:
        return False
    return bool(_DIGEST.search(image) or _PINNED_TAG.search(image))


def _ignored(path: str, patterns: list[str]) -> bool:
    # Last matching pattern wins, as in .dockerignore; fnmatch's * also crosses "/".
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        if fnmatch(path, pattern.removeprefix("!")):
            ignored = not negate
    return ignored


def check(dockerfile: Path, context: Path) -> list[str]:
    """Every rule violation in ``dockerfile`` built with ``context`` (empty: clean)."""
    problems: list[str] = []
    stages = parse(dockerfile.read_text())
    ignore_file = dockerfile.with_name(dockerfile.name + ".dockerignore")
    patterns = [
        ln.strip()
        for ln in (ignore_file.read_text().splitlines() if ignore_file.is_file() else [])
        if ln.strip() and not ln.startswith("#")
    ]
    names: list[str] = []
    if len(stages) < 2:
        problems.append("not multi-stage (build and runtime stages)")
    for stage in stages:
        if stage.base not in names and not image_pinned(stage.base):
            problems.append(f"FROM {stage.base}: base image not pinned to a version or digest")
        for ins in stage.instructions:
            where = f"line {ins.line}"
            source = ins.flags.get("from")
            if ins.keyword == "COPY" and source is not None:
                if source not in names and not image_pinned(source):
                    problems.append(f"{where}: COPY --from={source} is neither a stage nor pinned")
            elif ins.keyword in ("COPY", "ADD"):
                for src in ins.args[:-1]:
                    if src.startswith(("http://", "https://")):
                        if ins.keyword == "COPY" or not ins.flags.get("checksum", "").startswith(
                            "sha256:"
                        ):
                            problems.append(f"{where}: remote {src} without --checksum=sha256")
                        continue
                    if not (context / src).exists():
                        problems.append(f"{where}: {src} is not in the build context")
                    elif _ignored(f"{src}/x" if (context / src).is_dir() else src, patterns):
                        problems.append(f"{where}: {src} is excluded by {ignore_file.name}")
            elif ins.keyword == "RUN":
                problems.extend(f"{where}: {p}" for p in _run_problems(ins.args[0]))
        if stage.name:
            names.append(stage.name)
    if stages:
        users = [i for i in stages[-1].instructions if i.keyword == "USER"]
        if not users:
            problems.append("final stage has no USER (would run as root)")
        else:
            user = users[-1].args[0].split(":")[0]
            if user in ("root", "0") or (user.isdigit() and int(user) < 1000):
                problems.append(f"final stage runs as {users[-1].args[0]}")
    return problems


def _run_problems(command: str) -> list[str]:
    problems = []
    for part in re.split(r"&&|;|\|\|", command):
        words = shlex.split(part)
        if words[:3] in (["python", "-m", "pip"], ["python3", "-m", "pip"]):
            words = ["pip", *words[3:]]
        if words[:2] in (["pip", "install"], ["pip3", "install"]):
            specs = [w for w in words[2:] if not w.startswith("-")]
            if "-r" not in words and any("==" not in s for s in specs):
                problems.append(f"unpinned pip install: {part.strip()}")
        if words[:2] == ["apt-get", "install"] and "--no-install-recommends" not in words:
            problems.append("apt-get install without --no-install-recommends")
    return problems


def stage_bases(dockerfile: Path) -> list[str]:
    """The base image of each stage, in order."""
    return [s.base for s in parse(dockerfile.read_text())]


def final_user(dockerfile: Path) -> str:
    """The USER of the final stage (``uid:gid`` as written)."""
    users = [i for i in parse(dockerfile.read_text())[-1].instructions if i.keyword == "USER"]
    return users[-1].args[0]
