"""Persona dialogue data of the final project: validation, loading as a `datasets.Dataset`, and prompt formatting.

A dialogue file is JSON Lines, one dialogue per line. `data/README.md` beside this module documents the record
format, and `_record_problems` enforces it. The text format shared by training and evaluation is:

    Persona: I keep bees on my roof. I work night shifts.
    User: How was your week?
    Bot: Tiring, but the bees kept me calm.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import datasets

DATA_DIR = Path(__file__).resolve().parent / "data"
FORMAT_DOC = DATA_DIR / "README.md"
SPLITS = ("train", "heldout")

RECORD_FIELDS = ("id", "persona", "turns")
TURN_FIELDS = ("speaker", "text")
SPEAKERS = ("user", "bot")
MIN_PERSONA_FACTS, MAX_PERSONA_FACTS = 3, 5
MIN_TURNS, MAX_TURNS = 4, 8
MAX_REPORTED_PROBLEMS = 20

PERSONA_PREFIX = "Persona:"
SPEAKER_PREFIXES = {"user": "User:", "bot": "Bot:"}


@dataclass(frozen=True)
class FormatProblem:
    """One rule broken in a dialogue file, at a 1-based record and line number when it belongs to a record."""

    file: str
    record: int | None
    line: int | None
    field: str | None
    detail: str

    def __str__(self) -> str:
        where = self.file if self.record is None else f"{self.file} record {self.record} (line {self.line})"
        if self.field is None:
            return f"{where}: {self.detail}"
        return f"{where}: field {self.field} {self.detail}"


class DatasetFormatError(ValueError):
    """A dialogue file that breaks the record format, with every problem found listed in `problems` in file order."""

    def __init__(self, path: Path, problems: list[FormatProblem]):
        self.path = Path(path)
        self.problems = list(problems)
        super().__init__(self._message())

    def __reduce__(self):
        # The default reduction would call the class with the message alone, so the error could not cross a
        # process boundary (multiprocessing, a worker pool) without this.
        return type(self), (self.path, self.problems)

    def _message(self) -> str:
        count = len(self.problems)
        lines = [f"Invalid dialogue file {self.path}: {_count(count, 'problem', 'problems')}. "
                 f"Fix the records listed below. {FORMAT_DOC} describes the format."]
        lines += [f"  {problem}" for problem in self.problems[:MAX_REPORTED_PROBLEMS]]
        hidden = count - MAX_REPORTED_PROBLEMS
        if hidden > 0:
            lines.append(f"  ... and {_count(hidden, 'more problem', 'more problems')} not shown")
        return "\n".join(lines)


def validate_dialogue_file(path: Path) -> int:
    """Check every record of a JSON Lines dialogue file against the record format.

    Blank lines are skipped, so a record number can be lower than its line number.

    Returns:
        The number of records in the file.
    Raises:
        FileNotFoundError: `path` is not a file.
        DatasetFormatError: at least one record breaks the format, or the file has no record. The error lists
            every problem found, not only the first.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Dialogue file not found: {path}. "
                                f"Pass a JSON Lines file, or a folder that contains {' and '.join(_split_files())}.")

    problems: list[FormatProblem] = []
    first_record_with_id: dict[str, int] = {}
    record_number = 0
    for line_number, raw_line in enumerate(path.read_bytes().split(b"\n"), start=1):
        if not raw_line.strip():
            continue
        record_number += 1
        for field, detail in _line_problems(raw_line, record_number, first_record_with_id):
            problems.append(FormatProblem(path.name, record_number, line_number, field, detail))

    if record_number == 0:
        problems.append(FormatProblem(path.name, None, None, None,
                                      "contains no records; expected one JSON object per line"))
    if problems:
        raise DatasetFormatError(path, problems)
    return record_number


def load_dialogues(path: Path | str | None = None, split: str = "train") -> datasets.Dataset:
    """Validate a dialogue file and load it as a `datasets.Dataset` with the columns id, persona and turns.

    Args:
        path: a JSON Lines file, a folder that contains `train.jsonl` and `heldout.jsonl`, or None for the
            data shipped in `DATA_DIR`.
        split: "train" or "heldout"; selects the file when `path` is a folder or None, and is ignored when
            `path` is a file.
    Raises:
        ValueError: `split` is not one of `SPLITS`.
        FileNotFoundError: the file does not exist.
        DatasetFormatError: the file breaks the record format.
    """
    file = _split_path(path, split)
    validate_dialogue_file(file)

    import datasets

    features = datasets.Features({
        "id": datasets.Value("string"),
        "persona": [datasets.Value("string")],
        "turns": [{"speaker": datasets.Value("string"), "text": datasets.Value("string")}],
    })
    with _datasets_offline():
        return datasets.load_dataset("json", data_files=str(file), split="train", features=features)


def dialogue_to_text(record: Mapping[str, Any], eos: str = "") -> str:
    """Format a dialogue as training text: a persona line, then one line per turn, then `eos`.

    `eos` is appended once, after the last turn. Pass the tokenizer's `eos_token` so the model learns where a
    dialogue ends. Each prompt from `evaluation_examples` followed by " " and its reference is a prefix of this
    text.
    """
    lines = [_persona_line(record["persona"])]
    lines += [_turn_line(turn) for turn in record["turns"]]
    return "\n".join(lines) + eos


def evaluation_examples(dataset: Iterable[Mapping[str, Any]], max_examples: int | None = None) -> list[dict]:
    """Build one example per bot turn: the dialogue up to that turn as a prompt, and the bot's text as reference.

    Examples come in dataset order, then turn order, so the same data always gives the same list.

    Args:
        dataset: a `datasets.Dataset` from `load_dialogues`, or any iterable of records of the same shape.
        max_examples: keep only the first N examples; None keeps all.
    Returns:
        Dicts with "id" (the dialogue id), "turn" (0-based index of the bot turn in "turns"), "context" (the
        persona line and the previous turns, ending with a "Bot:" line) and "reference" (the bot's text).
    Raises:
        ValueError: `max_examples` is negative.
    """
    if max_examples is not None and max_examples < 0:
        raise ValueError(f"max_examples is {max_examples}; expected None or an integer >= 0")

    examples: list[dict] = []
    for record in dataset:
        lines = [_persona_line(record["persona"])]
        for index, turn in enumerate(record["turns"]):
            if max_examples is not None and len(examples) >= max_examples:
                return examples
            if turn["speaker"] == "bot":
                context = "\n".join([*lines, SPEAKER_PREFIXES["bot"]])
                examples.append({"id": record["id"], "turn": index, "context": context, "reference": turn["text"]})
            lines.append(_turn_line(turn))
    return examples


def reply_from_generation(generated: str) -> str:
    """Cut a model's continuation of an evaluation context down to the reply: its first line, stripped.

    A model fine-tuned on `dialogue_to_text` often goes on to write the next "User:" line, which is not part
    of the reply.
    """
    return generated.lstrip().split("\n", 1)[0].strip()


def general_text() -> str:
    """Read the general English prose in `DATA_DIR/general.txt`, used to measure forgetting by perplexity."""
    return (DATA_DIR / "general.txt").read_text(encoding="utf-8")


def _split_files() -> list[str]:
    return [f"{split}.jsonl" for split in SPLITS]


def _split_path(path: Path | str | None, split: str) -> Path:
    if split not in SPLITS:
        raise ValueError(f"split is {_show(split)}; allowed: {_choices(SPLITS)}")
    if path is None:
        return DATA_DIR / f"{split}.jsonl"
    path = Path(path)
    if path.is_dir():
        return path / f"{split}.jsonl"
    return path


@contextlib.contextmanager
def _datasets_offline() -> Iterator[None]:
    """Run `datasets` in offline mode for the duration, then restore the caller's setting.

    `datasets` reads HF_DATASETS_OFFLINE once, when it is imported, into `datasets.config.HF_HUB_OFFLINE`, so
    setting the variable later has no effect. Without the flag, `load_dataset("json", ...)` sends a request
    to count the download (datasets 5.2, `increase_load_count`) even for local files.
    NOTE: this changes process-wide state, so two threads that load dialogues at once may restore the flag in
    the wrong order.
    """
    import datasets.config

    saved_flag = datasets.config.HF_HUB_OFFLINE
    saved_variable = os.environ.get("HF_DATASETS_OFFLINE")
    datasets.config.HF_HUB_OFFLINE = True
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE = saved_flag
        if saved_variable is None:
            os.environ.pop("HF_DATASETS_OFFLINE", None)
        else:
            os.environ["HF_DATASETS_OFFLINE"] = saved_variable


def _persona_line(persona: Iterable[str]) -> str:
    return f"{PERSONA_PREFIX} {' '.join(persona)}"


def _turn_line(turn: Mapping[str, Any]) -> str:
    speaker = turn["speaker"]
    if speaker not in SPEAKER_PREFIXES:
        raise ValueError(f"turn speaker is {_show(speaker)}; allowed: {_choices(SPEAKERS)}")
    return f"{SPEAKER_PREFIXES[speaker]} {turn['text']}"


def _line_problems(raw_line: bytes, record_number: int,
                   first_record_with_id: dict[str, int]) -> list[tuple[str | None, str]]:
    """Parse one non-blank line and check its record, adding a first-seen id to `first_record_with_id`."""
    try:
        record = json.loads(raw_line.decode("utf-8"))
    except UnicodeDecodeError as error:
        return [(None, f"is not valid UTF-8 (byte {error.start + 1} of the line); save the file as UTF-8")]
    except json.JSONDecodeError as error:
        return [(None, f"is not valid JSON: {error.msg} at column {error.colno}")]

    problems = _record_problems(record)
    record_id = record.get("id") if isinstance(record, dict) else None
    if isinstance(record_id, str) and record_id.strip():
        if record_id in first_record_with_id:
            problems.append((_field("id"), f"is {_show(record_id)}, which record {first_record_with_id[record_id]} "
                                           "already uses; ids must be unique within a file"))
        else:
            first_record_with_id[record_id] = record_number
    return problems


def _record_problems(record: Any) -> list[tuple[str | None, str]]:
    """List (field, detail) pairs for every rule that a parsed record breaks, or nothing for a valid record."""
    if not isinstance(record, dict):
        return [(None, f"is a JSON {_json_type(record)}; expected a JSON object with the fields "
                       f"{_choices(RECORD_FIELDS, 'and')}")]

    problems: list[tuple[str | None, str]] = []
    for name in RECORD_FIELDS:
        if name not in record:
            problems.append((_field(name), f"is missing; required fields: {_choices(RECORD_FIELDS, 'and')}"))
    for name in record:
        if name not in RECORD_FIELDS:
            problems.append((_field(name), f"is not allowed; allowed fields: {_choices(RECORD_FIELDS, 'and')}"))

    if "id" in record:
        problems += _text_problems(record["id"], ("id",))
    if "persona" in record:
        problems += _persona_problems(record["persona"])
    if "turns" in record:
        problems += _turns_problems(record["turns"])
    return problems


def _persona_problems(persona: Any) -> list[tuple[str | None, str]]:
    if not isinstance(persona, list):
        return [(_field("persona"), f"is a JSON {_json_type(persona)}; expected an array of "
                                    f"{MIN_PERSONA_FACTS} to {MAX_PERSONA_FACTS} strings")]

    problems: list[tuple[str | None, str]] = []
    if not MIN_PERSONA_FACTS <= len(persona) <= MAX_PERSONA_FACTS:
        problems.append((_field("persona"), f"has {_count(len(persona), 'entry', 'entries')}; allowed: "
                                            f"{MIN_PERSONA_FACTS} to {MAX_PERSONA_FACTS}"))
    for index, fact in enumerate(persona):
        problems += _text_problems(fact, ("persona", index))
    return problems


def _turns_problems(turns: Any) -> list[tuple[str | None, str]]:
    if not isinstance(turns, list):
        return [(_field("turns"), f"is a JSON {_json_type(turns)}; expected an array of {MIN_TURNS} to "
                                  f"{MAX_TURNS} objects")]

    problems: list[tuple[str | None, str]] = []
    if not MIN_TURNS <= len(turns) <= MAX_TURNS:
        problems.append((_field("turns"),
                         f"has {_count(len(turns), 'turn', 'turns')}; allowed: {MIN_TURNS} to {MAX_TURNS}"))

    # Speakers in turn order, None where a turn has no valid speaker, for the order checks below.
    speakers: list[str | None] = []
    for index, turn in enumerate(turns):
        if not isinstance(turn, dict):
            problems.append((_field("turns", index), f"is a JSON {_json_type(turn)}; expected an object with "
                                                     f"the fields {_choices(TURN_FIELDS, 'and')}"))
            speakers.append(None)
            continue
        for name in TURN_FIELDS:
            if name not in turn:
                problems.append((_field("turns", index, name), "is missing"))
        for name in turn:
            if name not in TURN_FIELDS:
                problems.append((_field("turns", index, name),
                                 f"is not allowed; allowed fields: {_choices(TURN_FIELDS, 'and')}"))
        speaker = turn.get("speaker")
        if "speaker" in turn and speaker not in SPEAKERS:
            problems.append((_field("turns", index, "speaker"),
                             f"is {_show(speaker)}; allowed: {_choices(SPEAKERS)}"))
        speakers.append(speaker if speaker in SPEAKERS else None)
        if "text" in turn:
            problems += _text_problems(turn["text"], ("turns", index, "text"))

    problems += _speaker_order_problems(speakers)
    return problems


def _speaker_order_problems(speakers: list[str | None]) -> list[tuple[str | None, str]]:
    """Check that valid speakers start with "user", alternate, and end with "bot", skipping None entries."""
    problems: list[tuple[str | None, str]] = []
    if speakers and speakers[0] == "bot":
        problems.append((_field("turns", 0, "speaker"),
                         'is "bot" in the first turn; a dialogue must start with a "user" turn'))
    for index in range(1, len(speakers)):
        if speakers[index] is not None and speakers[index] == speakers[index - 1]:
            problems.append((_field("turns", index, "speaker"),
                             f'is {_show(speakers[index])} after a {_show(speakers[index - 1])} turn; speakers '
                             'must alternate between "user" and "bot"'))
    if len(speakers) > 1 and speakers[-1] == "user":
        problems.append((_field("turns", len(speakers) - 1, "speaker"),
                         'is "user" in the last turn; a dialogue must end with a "bot" turn'))
    return problems


def _text_problems(value: Any, path: tuple[str | int, ...]) -> list[tuple[str | None, str]]:
    """Check that `value` is non-blank one-line text, because the prompt format puts each text on one line."""
    field = _field(*path)
    if not isinstance(value, str):
        return [(field, f"is a JSON {_json_type(value)} ({_show(value)}); expected a string")]
    if not value.strip():
        return [(field, f"is {_show(value)}; expected non-empty text")]
    if "\n" in value or "\r" in value:
        return [(field, "contains a line break; expected text on one line")]
    return []


def _field(*path: str | int) -> str:
    """Write a field path the way the error messages show it: "turns"[3]["speaker"], with 0-based indices."""
    head, *rest = path
    return f'"{head}"' + "".join(f"[{part}]" if isinstance(part, int) else f'["{part}"]' for part in rest)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _show(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _count(number: int, singular: str, plural: str) -> str:
    return f"{number} {singular if number == 1 else plural}"


def _choices(values: Iterable[str], conjunction: str = "or") -> str:
    quoted = [f'"{value}"' for value in values]
    if len(quoted) == 1:
        return quoted[0]
    return f"{', '.join(quoted[:-1])} {conjunction} {quoted[-1]}"
