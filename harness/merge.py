"""Combine the output folders of `grade --shard I/N` runs into the outputs a single run would have written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from harness.records import SubmissionResult
from harness.report import writer



class MergeError(ValueError):
    """Shard outputs that cannot be combined: missing, duplicated or graded with different settings."""


def merge_outputs(folders: list[Path], out: Path) -> int:
    """Copy every shard's per-submission folders into `out` and write the class outputs; return the count.

    Raises:
        MergeError: a folder has no summary.json, a submission appears in two shards, or the shards were
            graded with different models, rubrics or library versions.
    """
    results: dict[str, tuple[SubmissionResult, Path]] = {}
    environment = None
    for folder in folders:
        summary_path = folder / "summary.json"
        if not summary_path.is_file():
            raise MergeError(f"{folder} has no summary.json; pass the --out folder of a finished `grade` run")
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
        if environment is None:
            environment = summary["environment"]
        elif _grading_settings(summary["environment"]) != _grading_settings(environment):
            raise MergeError(f"{folder} was graded with other settings (model, rubric, seed or versions) than "
                             f"{folders[0]}; grade every shard with the same options")
        for submission_id in summary["submissions"]:
            if submission_id in results:
                raise MergeError(f"submission {submission_id!r} is in both {results[submission_id][1]} and {folder}; "
                                 "give each shard run its own --shard I/N")
            data = json.loads((folder / submission_id / "result.json").read_text(encoding="utf-8"))
            results[submission_id] = (SubmissionResult.from_dict(data), folder)

    out.mkdir(parents=True, exist_ok=True)
    for submission_id, (_, folder) in results.items():
        target = out / submission_id
        if (folder / submission_id).resolve() != target.resolve():
            target.mkdir(exist_ok=True)
            for name in writer.SUBMISSION_FILES:
                shutil.copy2(folder / submission_id / name, target / name)
    ordered = [result for _, (result, _) in sorted(results.items())]
    writer.write_class(ordered, environment, out)
    return len(ordered)


def _grading_settings(environment: dict) -> dict:
    return {key: value for key, value in environment.items() if key not in ("platform",)}
