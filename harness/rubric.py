"""Read a rubric TOML file (`grade --rubric FILE`) over the defaults in `harness/rubric.toml`, validating every key."""

from __future__ import annotations

import hashlib
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from harness.config import DEFAULTS, VISIBILITIES, CheckPolicy, Limits, ProjectRubric, Rubric


class RubricError(ValueError):
    """A rubric file that cannot be used; the message names the file, the key, the value and what is allowed."""


@dataclass(frozen=True)
class Rule:
    """What one key accepts: a check on the value and the sentence that describes what is allowed."""

    accepts: Callable[[Any], bool]
    allowed: str


def number(low: float, high: float, *, low_open: bool = False) -> Rule:
    def accepts(value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return False
        return (value > low if low_open else value >= low) and value <= high

    bound = f"more than {low:g}" if low_open else f"at least {low:g}"
    return Rule(accepts, f"a number, {bound} and at most {high:g}")


def whole(low: int, high: int) -> Rule:
    return Rule(lambda value: isinstance(value, int) and not isinstance(value, bool) and low <= value <= high,
                f"a whole number from {low} to {high}")


TEXT = Rule(lambda value: isinstance(value, str) and bool(value.strip()), "a non-empty string")
PROMPTS = Rule(lambda value: isinstance(value, list) and len(value) <= 20
               and all(isinstance(item, str) and item.strip() for item in value),
               "a list of at most 20 non-empty strings")
POINTS = number(0, 1000)
VISIBILITY = Rule(lambda value: value in VISIBILITIES, " or ".join(f'"{name}"' for name in VISIBILITIES))

SCHEMA: dict[str, dict[str, Rule]] = {
    "pair": {"prompt": TEXT, "response": TEXT},
    "finetune": {"min_loss_drop": number(0, 1, low_open=True)},
    "chatbot": {"other_prompts": PROMPTS, "min_chrf_gain": number(0, 100), "max_new_tokens": whole(1, 1024)},
    "exercises": {"min_answer_words": whole(0, 1000)},
    "limits": {"cell_seconds": number(0, 86400, low_open=True), "check_seconds": number(0, 86400, low_open=True),
               "submission_seconds": number(0, 7 * 86400, low_open=True), "memory_gib": number(0, 4096, low_open=True)},
}
CHECK_SCHEMA = {"points": POINTS, "visibility": VISIBILITY}
PROJECT_SCHEMA = {"min_perplexity_drop": number(0, 1, low_open=True), "max_forgetting": number(0, 100),
                  "examples": whole(1, 200), "max_new_tokens": whole(1, 256), "discussion_min_words": whole(0, 5000)}
PROJECT_POINTS = ("chat", "improvement", "forgetting", "discussion")


def _merge(path: Path, data: dict) -> dict:
    """Overlay `data` on the defaults, rejecting unknown tables and keys and values a rule does not accept."""
    merged = {table: dict(values) for table, values in DEFAULTS.items() if table != "checks"}
    merged["checks"] = {check_id: dict(entry) for check_id, entry in DEFAULTS["checks"].items()}
    merged["project"] = {key: value for key, value in DEFAULTS["project"].items() if key != "points"}
    merged["project"]["points"] = dict(DEFAULTS["project"]["points"])
    for table, values in data.items():
        if table == "checks":
            _merge_checks(path, values, merged["checks"])
            continue
        if table == "project":
            _merge_project(path, values, merged["project"])
            continue
        if table not in SCHEMA:
            raise RubricError(f"{path}: unknown table [{table}]; allowed: "
                              f"{', '.join(f'[{name}]' for name in [*SCHEMA, 'checks', 'project'])}")
        if not isinstance(values, dict):
            raise RubricError(f"{path}: {table} = {values!r} must be a table ([{table}])")
        for key, value in values.items():
            rule = SCHEMA[table].get(key)
            if rule is None:
                raise RubricError(f"{path}: unknown key {key!r} in [{table}]; allowed: {', '.join(SCHEMA[table])}")
            if not rule.accepts(value):
                raise RubricError(f"{path}: [{table}] {key} = {value!r} is not allowed; it must be {rule.allowed}")
            merged[table][key] = value
    return merged


def _merge_checks(path: Path, values: Any, checks: dict) -> None:
    if not isinstance(values, dict):
        raise RubricError(f"{path}: checks = {values!r} must be a table of [checks.\"ID\"] tables")
    for check_id, entry in values.items():
        if check_id not in checks:
            raise RubricError(f"{path}: unknown check [checks.{check_id!r}]; allowed: {', '.join(checks)}")
        if not isinstance(entry, dict):
            raise RubricError(f"{path}: checks.{check_id} = {entry!r} must be a table with points and visibility")
        for key, value in entry.items():
            rule = CHECK_SCHEMA.get(key)
            if rule is None:
                raise RubricError(f"{path}: unknown key {key!r} in [checks.\"{check_id}\"]; allowed: "
                                  f"{', '.join(CHECK_SCHEMA)}")
            if not rule.accepts(value):
                raise RubricError(f"{path}: [checks.\"{check_id}\"] {key} = {value!r} is not allowed; "
                                  f"it must be {rule.allowed}")
            checks[check_id][key] = value


def _merge_project(path: Path, values: Any, project: dict) -> None:
    if not isinstance(values, dict):
        raise RubricError(f"{path}: project = {values!r} must be a table ([project])")
    for key, value in values.items():
        if key == "points":
            if not isinstance(value, dict):
                raise RubricError(f"{path}: project.points = {value!r} must be a table ([project.points])")
            for name, points in value.items():
                if name not in PROJECT_POINTS:
                    raise RubricError(f"{path}: unknown key {name!r} in [project.points]; allowed: "
                                      f"{', '.join(PROJECT_POINTS)}")
                if not POINTS.accepts(points):
                    raise RubricError(f"{path}: [project.points] {name} = {points!r} is not allowed; it must be "
                                      f"{POINTS.allowed}")
                project["points"][name] = points
            continue
        rule = PROJECT_SCHEMA.get(key)
        if rule is None:
            raise RubricError(f"{path}: unknown key {key!r} in [project]; allowed: {', '.join([*PROJECT_SCHEMA, 'points'])}")
        if not rule.accepts(value):
            raise RubricError(f"{path}: [project] {key} = {value!r} is not allowed; it must be {rule.allowed}")
        project[key] = value


def load_rubric(path: Path) -> tuple[Rubric, Limits]:
    """Return the rubric and limits of the TOML file at `path`, each key it leaves out keeping its default."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise RubricError(f"cannot read the rubric file {path}: {error.strerror or error}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise RubricError(f"{path} is not valid TOML: {error}") from None
    merged = _merge(path, data)
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    rubric = Rubric(
        checks={check_id: CheckPolicy(float(entry["points"]), entry["visibility"])
                for check_id, entry in merged["checks"].items()},
        prompt=merged["pair"]["prompt"],
        response=merged["pair"]["response"],
        other_prompts=tuple(merged["chatbot"]["other_prompts"]),
        min_loss_drop=float(merged["finetune"]["min_loss_drop"]),
        min_chrf_gain=float(merged["chatbot"]["min_chrf_gain"]),
        max_new_tokens=int(merged["chatbot"]["max_new_tokens"]),
        min_answer_words=int(merged["exercises"]["min_answer_words"]),
        project=ProjectRubric(
            min_perplexity_drop=float(merged["project"]["min_perplexity_drop"]),
            max_forgetting=float(merged["project"]["max_forgetting"]),
            examples=int(merged["project"]["examples"]),
            max_new_tokens=int(merged["project"]["max_new_tokens"]),
            discussion_min_words=int(merged["project"]["discussion_min_words"]),
            points={f"project.{name}": float(value) for name, value in merged["project"]["points"].items()},
        ),
        source=f"{path.name} (sha256 {digest})",
    )
    if sum(policy.points for policy in rubric.checks.values()) <= 0:
        raise RubricError(f"{path}: every check has 0 points; give at least one check some points")
    limits = Limits(cell=float(merged["limits"]["cell_seconds"]), check=float(merged["limits"]["check_seconds"]),
                    submission=float(merged["limits"]["submission_seconds"]),
                    memory_gib=float(merged["limits"]["memory_gib"]))
    return rubric, limits
