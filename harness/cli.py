"""Command line: `grade PATH` grades a folder of submissions (or one file) and writes the reports.

`grade merge OUT...` combines the outputs of `--shard` runs.

Exit codes: 0 when every submission was graded, whatever the students scored; 1 when the grader itself
failed; 2 for bad usage, with a one-line message.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import re
import sys
import textwrap
import time
from pathlib import Path

from harness import __version__
from harness.config import DEFAULT_MODEL, DEFAULT_OUT, DEFAULT_SEED, GradeConfig, Limits, Rubric
from harness.device import DEVICES, DeviceError, resolve_device
from harness.discover import DiscoveryError, find_submissions
from harness.execute.sandbox import MODES, SandboxError
from harness.models import UnknownModelError, offline_choices
from harness.records import SubmissionResult
from harness.report.writer import MANUAL_FILE
from harness.rubric import RubricError, load_rubric

logger = logging.getLogger("harness")

EXIT_OK, EXIT_HARNESS_FAILED, EXIT_USAGE = 0, 1, 2
SELF_CHECK_OUT = Path("self-check")


def positive_seconds(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return value


def positive_gib(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of GiB, got {text}")
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def parse_shard(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d+)/(\d+)", text)
    if not match or not 1 <= int(match.group(1)) <= int(match.group(2)):
        raise argparse.ArgumentTypeError(f"must be I/N with 1 <= I <= N (for example 2/4), got {text}")
    return int(match.group(1)), int(match.group(2))


def select_shard(submissions: list, shard: tuple[int, int] | None) -> list:
    """Return the I-th of N slices: every N-th submission in id order, starting at the I-th."""
    if shard is None:
        return submissions
    index, count = shard
    return sorted(submissions, key=lambda submission: submission.id)[index - 1::count]


def build_parser(prog: str = "grade", description: str | None = None, out: Path = DEFAULT_OUT,
                 path_help: str = "a folder of submissions (files, or one subfolder each) or one file",
                 several_models: bool = False) -> argparse.ArgumentParser:
    limits = Limits()
    parser = argparse.ArgumentParser(
        prog=prog,
        description=description or "Grade lab submissions (.ipynb or .py) offline and write HTML reports and exports.",
    )
    parser.add_argument("path", type=Path, help=path_help)
    if several_models:
        parser.add_argument("--model", dest="models", action="append", default=None, metavar="MODEL",
                            help=f"a model to evaluate with, repeatable: {offline_choices()}, or a hub id in the "
                                 f"local cache; the first one gives the score (default: {DEFAULT_MODEL})")
    else:
        parser.add_argument("--model", default=DEFAULT_MODEL,
                            help=f"model every submission is graded with: {offline_choices()}, or a hub id "
                                 f"available in the local cache (default: {DEFAULT_MODEL})")
    parser.add_argument("--out", type=Path, default=out, help=f"output folder (default: {out}/)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"random seed (default: {DEFAULT_SEED})")
    parser.add_argument("--rubric", type=Path, default=None, metavar="FILE",
                        help="rubric TOML file: points, hidden checks, thresholds, prompts and limits; keys it "
                             "leaves out keep the defaults documented in harness/rubric.toml")
    parser.add_argument("--cell-timeout", type=positive_seconds, default=None, metavar="SECONDS",
                        help=f"wall-clock limit per notebook cell (default: the rubric's, {limits.cell:g})")
    parser.add_argument("--check-timeout", type=positive_seconds, default=None, metavar="SECONDS",
                        help=f"wall-clock limit per check (default: the rubric's, {limits.check:g})")
    parser.add_argument("--timeout", type=positive_seconds, default=None, metavar="SECONDS",
                        help=f"wall-clock limit per submission (default: the rubric's, {limits.submission:g})")
    parser.add_argument("--memory", type=positive_gib, default=None, metavar="GIB",
                        help=f"memory cap per submission, in GiB (default: the rubric's, {limits.memory_gib:g})")
    parser.add_argument("--sandbox", choices=MODES, default="auto",
                        help="isolation of each submission: auto (the strongest available, default), bwrap "
                             "(bubblewrap, fail if missing), process (rlimits only) or none (trusted code only)")
    parser.add_argument("--force", action="store_true",
                        help="grade again submissions whose results are already in the output folder")
    parser.add_argument("--device", choices=DEVICES, default="auto",
                        help="where the grader and the submissions compute: auto (CUDA when torch sees a GPU, "
                             "default), cpu or cuda; on a GPU, --jobs is lowered to what its free memory holds")
    parser.add_argument("--recompute-baseline", action="store_true",
                        help="compute the untuned model's loss and replies again instead of reading them from the "
                             "cache (they are recomputed anyway when the model, rubric or decoding changes)")
    parser.add_argument("--jobs", type=positive_int, default=1,
                        help="submissions graded at once, sharing the cores (default: 1)")
    parser.add_argument("--shard", type=parse_shard, default=None, metavar="I/N",
                        help="grade only the I-th of N deterministic slices of the submissions (1 <= I <= N); "
                             "combine the outputs with `grade merge`")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads per submission (default: the cores divided among the jobs)")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more (-v info, -vv debug)")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def configure_logging(verbosity: int) -> None:
    levels = {0: logging.WARNING, 1: logging.INFO}
    logging.basicConfig(level=levels.get(verbosity, logging.DEBUG), format="%(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    if verbosity < 2:
        # The grader's own model loads (loss measurement, metric) would otherwise print progress bars and
        # library warnings between the grade lines.
        import transformers

        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()


def result_line(result: SubmissionResult) -> str:
    statuses = " ".join(f"{check.id}={check.status}" for check in result.checks)
    return f"{result.submission_id}: {result.score:g}/{result.max_score:g} ({result.seconds:.0f} s) {statuses}"


def clock(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{seconds:02d}" if minutes >= 60 else f"{minutes}:{seconds:02d}"


class Progress:
    """Progress of a batch: a bar on a terminal (count, current submission, elapsed, estimate), else log lines.

    One line per graded submission goes to stdout either way, so the output can be piped and parsed.
    """

    def __init__(self, total: int, stream=None):
        self.total = total
        self.done = 0
        self.started = time.monotonic()
        self.stream = stream or sys.stderr
        self.bar = None
        if total and self.stream.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="submission", desc="grading", file=self.stream, dynamic_ncols=True)

    def start(self, submission) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(submission.id, refresh=True)

    def finish(self, result: SubmissionResult) -> None:
        self.done += 1
        line = result_line(result)
        if self.bar is not None:
            self.bar.write(line, file=sys.stdout)
            self.bar.update(1)
            return
        print(line, flush=True)
        elapsed = time.monotonic() - self.started
        left = elapsed / self.done * (self.total - self.done)
        estimate = f", about {clock(left)} left" if self.done < self.total else ""
        print(f"[{self.done}/{self.total}] {result.submission_id} done, {clock(elapsed)} elapsed{estimate}",
              file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def build_merge_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="grade merge",
        description="Combine the output folders of several `grade --shard` runs into one set of reports.",
    )
    parser.add_argument("folders", type=Path, nargs="+", help="output folders of the shard runs")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"combined output folder (default: {DEFAULT_OUT}/)")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more (-v info, -vv debug)")
    return parser


def merge_main(argv: list[str]) -> int:
    parser = build_merge_parser()
    args = parser.parse_args(argv)
    configure_logging(args.verbose)

    from harness.merge import MergeError, merge_outputs

    try:
        count = merge_outputs(args.folders, args.out)
    except MergeError as error:
        parser.exit(EXIT_USAGE, f"grade merge: error: {error}\n")
    print(f"Merged {count} submissions: {(args.out / 'index.html').resolve()}")
    return EXIT_OK


def merge_manual_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="grade merge-manual",
        description=f"Apply the hand-entered exercise scores in OUT/{MANUAL_FILE} to the graded results in OUT and "
                    "rewrite every report and export, without grading again.",
    )
    parser.add_argument("out", type=Path, nargs="?", default=DEFAULT_OUT,
                        help=f"output folder of a `grade` run (default: {DEFAULT_OUT}/)")
    args = parser.parse_args(argv)

    from harness.manual import ManualScoresError, merge_manual

    try:
        changed = merge_manual(args.out)
    except ManualScoresError as error:
        parser.exit(EXIT_USAGE, f"grade merge-manual: error: {error}\n")
    print(f"Manual scores applied to {changed} submissions: {(args.out / 'index.html').resolve()}")
    return EXIT_OK


def config_from_args(parser: argparse.ArgumentParser, args: argparse.Namespace, **changes) -> GradeConfig:
    """Build the grading settings from the options over the rubric file's; exit with a usage error if invalid."""
    rubric, limits = Rubric(), Limits()
    if args.rubric is not None:
        try:
            rubric, limits = load_rubric(args.rubric)
        except RubricError as error:
            parser.exit(EXIT_USAGE, f"{parser.prog}: error: {error}\n")
    overrides = {"cell": args.cell_timeout, "check": args.check_timeout, "submission": args.timeout,
                 "memory_gib": args.memory}
    limits = dataclasses.replace(limits, **{key: value for key, value in overrides.items() if value is not None})
    try:
        device = resolve_device(args.device)
    except DeviceError as error:
        parser.exit(EXIT_USAGE, f"{parser.prog}: error: {error}\n")
    return GradeConfig(
        device=device,
        model=getattr(args, "model", DEFAULT_MODEL),
        out=args.out,
        seed=args.seed,
        rubric=rubric,
        limits=limits,
        threads=args.threads,
        jobs=args.jobs,
        sandbox=args.sandbox,
        force=args.force,
        refresh_baseline=args.recompute_baseline,
    ).replace(**changes)


def discover(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list:
    """Return the submissions under `args.path`, in the `--shard` slice; exit with a usage error if there are none."""
    try:
        submissions, warnings = find_submissions(args.path)
    except DiscoveryError as error:
        parser.exit(EXIT_USAGE, f"{parser.prog}: error: {error}\n")
    for warning in warnings:
        logger.warning(warning)
    return select_shard(submissions, args.shard)


def check_main(argv: list[str]) -> int:
    """`grade check FILE`: the student's self-check, with the instructor's engine and isolation."""
    parser = build_parser(
        prog="grade check",
        description="Check your own lab before you hand it in: runs the public checks on one notebook or script "
                    "with the grader's engine and isolation, prints what to fix, and writes your report. Exits 0 "
                    "when every public check passes, 1 when one does not, 2 on a usage or grader error.",
        out=SELF_CHECK_OUT, path_help="your notebook (.ipynb) or script (.py)")
    args = parser.parse_args(argv)
    configure_logging(args.verbose)
    if not args.path.is_file():
        parser.exit(EXIT_USAGE, f"grade check: error: {args.path} is not a file; pass your notebook (.ipynb) or "
                                "script (.py), for example: grade check lab.ipynb\n")
    config = config_from_args(parser, args, force=True, public_only=True, jobs=1)
    submissions = discover(parser, args)

    from harness.grading import grade_batch
    from harness.report.writer import student_copy

    print(f"Checking {args.path} with {config.model} (this takes a minute or two)...", flush=True)
    try:
        batch = grade_batch(submissions, config=config)
    except (UnknownModelError, SandboxError) as error:
        parser.exit(EXIT_USAGE, f"grade check: error: {error}\n")
    result = student_copy(batch.results[0])
    public = [check for check in result.checks if check.visibility == "public"]
    width = max(len(check.id) for check in public)
    for check in public:
        mark = "ok  " if check.status == "passed" else "FIX "
        print(f"{mark} {check.id:<{width}}  {check.status:<8} {check.score:g}/{check.max_score:g}")
        if check.status != "passed":
            print(textwrap.fill(check.message, width=100, initial_indent="       next: ", subsequent_indent="       "))
    if result.problem:
        print(f"Problem: {result.problem}")
    passed = sum(check.status == "passed" for check in public)
    print(f"{passed} of {len(public)} public checks passed in {result.seconds:.0f} s. Your report: "
          f"{(config.out / result.submission_id / 'student.html').resolve()}")
    if batch.internal_errors:
        print("The grader itself failed on a check (not your fault); tell your instructor.", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK if passed == len(public) else 1


def project_main(argv: list[str]) -> int:
    """`grade project PATH`: grade final projects, with one or more models."""
    parser = build_parser(
        prog="grade project",
        description="Grade final projects: each submission's fine_tune_chatbot and chat_reply run in the sandbox "
                    "with each --model; the grader measures held-out and general-text perplexity and reply "
                    "overlap before and after. The first --model gives the score; the others are compared.",
        out=Path("project-reports"), several_models=True)
    args = parser.parse_args(argv)
    configure_logging(args.verbose)
    models = args.models or [DEFAULT_MODEL]
    if len(set(models)) != len(models):
        parser.exit(EXIT_USAGE, f"grade project: error: a model is given twice in --model {' '.join(models)}\n")
    config = config_from_args(parser, args, model=models[0])
    submissions = discover(parser, args)

    from harness.project.grading import grade_projects

    try:
        batch = grade_projects(submissions, config=config, models=models,
                               on_result=lambda result: print(result_line(result), flush=True))
    except (UnknownModelError, SandboxError) as error:
        parser.exit(EXIT_USAGE, f"grade project: error: {error}\n")
    print(f"Reports: {(config.out / 'index.html').resolve()}")
    return EXIT_HARNESS_FAILED if batch.internal_errors else EXIT_OK


def assign_main(argv: list[str]) -> int:
    from harness.assign import DEFAULT_ASSIGNMENT, DEFAULT_REFERENCE, assign_command

    parser = argparse.ArgumentParser(
        prog="grade assign",
        description="Write the student notebook from the reference solution: solutions become stubs that raise "
                    "NotImplementedError with a hint, answers become placeholders. With --check, exit 1 when the "
                    "committed notebook differs from a fresh build.",
    )
    parser.add_argument("--reference", type=Path, default=DEFAULT_REFERENCE,
                        help=f"reference solution with solution markers (default: {DEFAULT_REFERENCE})")
    parser.add_argument("--out", type=Path, default=DEFAULT_ASSIGNMENT,
                        help=f"student notebook to write (default: {DEFAULT_ASSIGNMENT})")
    parser.add_argument("--check", action="store_true", help="compare with the file on disk instead of writing it")
    args = parser.parse_args(argv)
    return assign_command(args.reference, args.out, args.check)


def gradescope_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="grade gradescope-bundle",
        description="Write the Gradescope autograder zip: setup.sh, run_autograder, the rubric and this grader's "
                    "source. Upload it as a programming assignment's autograder.",
    )
    parser.add_argument("--out", default="autograder.zip",
                        help="zip file to write, or a folder (an existing one, or a name ending in /) to write "
                             "autograder.zip into (default: autograder.zip)")
    parser.add_argument("--rubric", type=Path, default=None, metavar="FILE", help="rubric TOML file to grade with")
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"model to grade with (default: {DEFAULT_MODEL})")
    parser.add_argument("grade_args", nargs=argparse.REMAINDER,
                        help="further grade options after --, for example: -- --cell-timeout 300")
    args = parser.parse_args(argv)

    from harness.gradescope import BundleError, build_bundle

    extra = args.grade_args[1:] if args.grade_args[:1] == ["--"] else args.grade_args
    target = Path(args.out)
    if args.out.endswith(("/", os.sep)):
        target.mkdir(parents=True, exist_ok=True)
    try:
        path = build_bundle(target, args.rubric, args.model, grade_args=extra)
    except BundleError as error:
        parser.exit(EXIT_USAGE, f"grade gradescope-bundle: error: {error}\n")
    print(f"Autograder bundle: {path.resolve()}")
    return EXIT_OK


# Subcommands, dispatched on the first argument; anything else is a path to grade.
SUBCOMMANDS = {"check": check_main, "merge": merge_main, "merge-manual": merge_manual_main,
               "gradescope-bundle": gradescope_main, "project": project_main, "assign": assign_main}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in SUBCOMMANDS:
        return SUBCOMMANDS[argv[0]](argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.verbose)
    config = config_from_args(parser, args)
    submissions = discover(parser, args)

    from harness.grading import grade_batch

    progress = Progress(len(submissions))
    try:
        batch = grade_batch(submissions, config=config, on_result=progress.finish, on_start=progress.start)
    except (UnknownModelError, SandboxError) as error:
        parser.exit(EXIT_USAGE, f"grade: error: {error}\n")
    finally:
        progress.close()

    print(f"Reports: {(config.out / 'index.html').resolve()}")
    if batch.internal_errors:
        for problem in batch.internal_errors:
            logger.error("grader failure: %s", problem)
        return EXIT_HARNESS_FAILED
    return EXIT_OK


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
