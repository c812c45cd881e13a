"""Final project data: the shipped splits, validation errors, prompt formats and the offline metric modules."""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import socket
from pathlib import Path

import datasets
import pytest

from harness.project.dataset import (
    DATA_DIR,
    DatasetFormatError,
    dialogue_to_text,
    evaluation_examples,
    general_text,
    load_dialogues,
    reply_from_generation,
    validate_dialogue_file,
)

METRICS_DIR = Path(__file__).resolve().parent.parent / "harness" / "metrics"

# Counts of dialogues, turns and bot turns in each shipped split, as data/README.md states them.
SHIPPED = {"train": (45, 336, 168), "heldout": (12, 90, 45)}

# Words that carry no persona content, left out when comparing personas by vocabulary.
FUNCTION_WORDS = set("i me my a an the of in on at to and is am are for with every m ve s t".split())


def valid_record(record_id: str = "dialogue-1", **fields) -> dict:
    record = {
        "id": record_id,
        "persona": ["I grow pumpkins.", "I work at a post office.", "I sing in the shower."],
        "turns": [
            {"speaker": "user", "text": "What do you do?"},
            {"speaker": "bot", "text": "I sort letters at the post office."},
            {"speaker": "user", "text": "Any hobbies?"},
            {"speaker": "bot", "text": "I grow enormous pumpkins for the village show."},
        ],
    }
    record.update(fields)
    return record


def turns(*pairs: tuple[str, str]) -> list[dict]:
    return [{"speaker": speaker, "text": text} for speaker, text in pairs]


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def format_error(path: Path) -> DatasetFormatError:
    with pytest.raises(DatasetFormatError) as caught:
        load_dialogues(path)
    return caught.value


def content_words(persona: list[str]) -> set[str]:
    return set(re.findall(r"[a-z]+", " ".join(persona).lower())) - FUNCTION_WORDS


@pytest.fixture(scope="module")
def shipped() -> dict[str, datasets.Dataset]:
    return {split: load_dialogues(split=split) for split in SHIPPED}


# Shipped data


@pytest.mark.parametrize("split", sorted(SHIPPED))
def test_shipped_split_loads_as_dataset(shipped, split):
    dataset = shipped[split]
    dialogues, turn_count, bot_turns = SHIPPED[split]
    assert isinstance(dataset, datasets.Dataset)
    assert dataset.column_names == ["id", "persona", "turns"]
    assert len(dataset) == dialogues
    assert sum(len(record["turns"]) for record in dataset) == turn_count
    assert sum(turn["speaker"] == "bot" for record in dataset for turn in record["turns"]) == bot_turns


@pytest.mark.parametrize("split", sorted(SHIPPED))
def test_shipped_split_follows_writing_guidelines(shipped, split):
    ids = shipped[split]["id"]
    assert ids == [f"{split}-{number:03d}" for number in range(1, len(ids) + 1)]
    for record in shipped[split]:
        assert 3 <= len(record["persona"]) <= 5, record["id"]
        for turn in record["turns"]:
            if turn["speaker"] == "bot":
                assert 5 <= len(turn["text"].split()) <= 25, (record["id"], turn["text"])


@pytest.mark.parametrize("split", sorted(SHIPPED))
def test_readme_states_shipped_counts(split):
    dialogues, turn_count, bot_turns = SHIPPED[split]
    readme = (DATA_DIR / "README.md").read_text(encoding="utf-8")

    assert f"| `{split}.jsonl` | {dialogues} dialogues, {turn_count} turns ({bot_turns} bot replies)" in readme


def test_heldout_personas_differ_from_train(shipped):
    train_personas = [record["persona"] for record in shipped["train"]]
    train_facts = {fact.lower() for persona in train_personas for fact in persona}
    for record in shipped["heldout"]:
        shared = {fact for fact in record["persona"] if fact.lower() in train_facts}
        assert not shared, (record["id"], shared)
        heldout_words = content_words(record["persona"])
        for persona in train_personas:
            train_words = content_words(persona)
            overlap = len(heldout_words & train_words) / len(heldout_words | train_words)
            assert overlap < 0.4, (record["id"], persona)


def test_load_from_folder_and_single_file(tmp_path):
    for split in SHIPPED:
        shutil.copy(DATA_DIR / f"{split}.jsonl", tmp_path / f"{split}.jsonl")
    single = write_lines(tmp_path / "mine.jsonl", [json.dumps(valid_record())])

    from_folder = load_dialogues(tmp_path, split="heldout")
    from_file = load_dialogues(single, split="heldout")

    assert len(from_folder) == SHIPPED["heldout"][0]
    assert from_file["id"] == ["dialogue-1"]
    assert from_file[0]["turns"][1] == {"speaker": "bot", "text": "I sort letters at the post office."}


def test_load_opens_no_network_connection(tmp_path, monkeypatch):
    connections = []

    def block_connect(sock, address):
        connections.append(address)
        raise OSError(f"test blocks network access to {address}")

    def block_lookup(host, *args, **kwargs):
        connections.append(host)
        raise socket.gaierror(f"test blocks the name lookup of {host}")

    monkeypatch.setattr(socket.socket, "connect", block_connect)
    monkeypatch.setattr(socket, "getaddrinfo", block_lookup)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    offline_before = datasets.config.HF_HUB_OFFLINE
    path = write_lines(tmp_path / "own.jsonl", [json.dumps(valid_record())])

    dataset = load_dialogues(path)

    assert len(dataset) == 1
    assert connections == []
    assert datasets.config.HF_HUB_OFFLINE == offline_before
    assert "HF_DATASETS_OFFLINE" not in os.environ


def test_missing_file_and_unknown_split(tmp_path):
    with pytest.raises(FileNotFoundError, match="train.jsonl and heldout.jsonl"):
        load_dialogues(tmp_path / "absent.jsonl")
    with pytest.raises(FileNotFoundError, match="Dialogue file not found"):
        load_dialogues(tmp_path, split="train")
    with pytest.raises(ValueError, match='split is "test"; allowed: "train" or "heldout"'):
        load_dialogues(split="test")


# Validation errors

SPEAKER_PAIRS = [("user", "Hi."), ("bot", "Hello, nice to meet you today."), ("user", "How are you?")]

MALFORMED = {
    "bad JSON": ('{"id": "dialogue-2", "persona": [', "is not valid JSON: Expecting value at column 34", 1),
    "not an object": ('["a", "b"]', "is a JSON array; expected a JSON object", 1),
    "missing field": (json.dumps({"id": "dialogue-2", "turns": valid_record()["turns"]}),
                      'field "persona" is missing; required fields: "id", "persona" and "turns"', 1),
    "unknown field": (json.dumps(valid_record("dialogue-2", mood="cheerful")),
                      'field "mood" is not allowed; allowed fields: "id", "persona" and "turns"', 1),
    "duplicate id": (json.dumps(valid_record("dialogue-1")),
                     'field "id" is "dialogue-1", which record 1 already uses', 1),
    "wrong speaker": (json.dumps(valid_record("dialogue-2", turns=turns(*SPEAKER_PAIRS, ("assistant", "Fine.")))),
                      'field "turns"[3]["speaker"] is "assistant"; allowed: "user" or "bot"', 1),
    "turns not alternating": (json.dumps(valid_record("dialogue-2", turns=turns(
        ("user", "Hi."), ("user", "Anyone there?"), ("bot", "Yes, sorry, I was busy."), ("bot", "Hello!")))),
        'field "turns"[1]["speaker"] is "user" after a "user" turn; speakers must alternate', 2),
    "starts with bot": (json.dumps(valid_record("dialogue-2", turns=turns(
        ("bot", "Hello, how can I help?"), ("user", "Hi."), ("bot", "Lovely weather today."), ("user", "Yes.")))),
        'field "turns"[0]["speaker"] is "bot" in the first turn', 2),
    "ends with user": (json.dumps(valid_record("dialogue-2", turns=turns(
        *SPEAKER_PAIRS, ("bot", "Very well, thank you."), ("user", "Good.")))),
        'field "turns"[4]["speaker"] is "user" in the last turn', 1),
    "empty text": (json.dumps(valid_record("dialogue-2", turns=turns(
        ("user", "Hi."), ("bot", ""), ("user", "Hello?"), ("bot", "Sorry, I was thinking.")))),
        'field "turns"[1]["text"] is ""; expected non-empty text', 1),
    "blank text": (json.dumps(valid_record("dialogue-2", turns=turns(
        ("user", "Hi."), ("bot", "   "), ("user", "Hello?"), ("bot", "Sorry, I was thinking.")))),
        'field "turns"[1]["text"] is "   "; expected non-empty text', 1),
    "line break in text": (json.dumps(valid_record("dialogue-2", persona=["I grow\npumpkins.", "I sing.", "I run."])),
                           'field "persona"[0] contains a line break', 1),
    "persona not an array": (json.dumps(valid_record("dialogue-2", persona="I grow pumpkins.")),
                             'field "persona" is a JSON string; expected an array of 3 to 5 strings', 1),
    "too few turns": (json.dumps(valid_record("dialogue-2", turns=turns(("user", "Hi."), ("bot", "Hello, friend.")))),
                      'field "turns" has 2 turns; allowed: 4 to 8', 1),
    "text not a string": (json.dumps(valid_record("dialogue-2", id=7)),
                          'field "id" is a JSON number (7); expected a string', 1),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_record_names_record_and_field(tmp_path, case):
    bad_line, expected, problem_count = MALFORMED[case]
    path = write_lines(tmp_path / "bad.jsonl", [json.dumps(valid_record()), bad_line])

    error = format_error(path)

    assert f"bad.jsonl record 2 (line 2): {expected}" in str(error)
    assert len(error.problems) == problem_count
    assert {problem.record for problem in error.problems} == {2}
    assert isinstance(error, ValueError)


def test_blank_lines_keep_physical_line_numbers(tmp_path):
    bad = json.dumps(valid_record("dialogue-2", turns="none"))
    path = write_lines(tmp_path / "gaps.jsonl", ["", json.dumps(valid_record()), "   ", bad])

    error = format_error(path)

    assert 'gaps.jsonl record 2 (line 4): field "turns" is a JSON string' in str(error)
    assert validate_dialogue_file(write_lines(tmp_path / "ok.jsonl", ["", json.dumps(valid_record()), ""])) == 1


def test_every_problem_is_collected(tmp_path):
    lines = [json.dumps(valid_record(f"dialogue-{number}", persona=[])) for number in range(1, 26)]
    path = write_lines(tmp_path / "many.jsonl", lines)

    error = format_error(path)
    message = str(error)

    assert len(error.problems) == 25
    assert message.startswith(f"Invalid dialogue file {path}: 25 problems.")
    assert "many.jsonl record 20 (line 20): field \"persona\" has 0 entries" in message
    assert "record 21 (line 21)" not in message
    assert "... and 5 more problems not shown" in message


def test_empty_file_is_rejected(tmp_path):
    path = write_lines(tmp_path / "empty.jsonl", [""])

    error = format_error(path)

    assert "empty.jsonl: contains no records" in str(error)


def test_format_error_survives_pickling(tmp_path):
    path = write_lines(tmp_path / "bad.jsonl", ["{"])
    error = format_error(path)

    copy = pickle.loads(pickle.dumps(error))

    assert str(copy) == str(error)
    assert copy.problems == error.problems


# Prompt formats


def test_dialogue_to_text_format():
    record = valid_record()

    text = dialogue_to_text(record, eos="<|end|>")

    assert text == ("Persona: I grow pumpkins. I work at a post office. I sing in the shower.\n"
                    "User: What do you do?\n"
                    "Bot: I sort letters at the post office.\n"
                    "User: Any hobbies?\n"
                    "Bot: I grow enormous pumpkins for the village show.<|end|>")
    assert dialogue_to_text(record) == text.removesuffix("<|end|>")


def test_evaluation_examples_cover_every_bot_turn(shipped):
    dataset = shipped["heldout"]

    examples = evaluation_examples(dataset)

    bot_texts = [turn["text"] for record in dataset for turn in record["turns"] if turn["speaker"] == "bot"]
    texts = {record["id"]: dialogue_to_text(record) for record in dataset}
    assert len(examples) == SHIPPED["heldout"][2]
    assert [example["reference"] for example in examples] == bot_texts
    for example in examples:
        assert example["context"].endswith("\nBot:")
        assert example["context"].startswith("Persona: ")
        assert texts[example["id"]].startswith(example["context"] + " " + example["reference"])
    assert evaluation_examples(dataset) == examples


def test_evaluation_examples_context_holds_previous_turns():
    examples = evaluation_examples([valid_record()])

    assert [example["turn"] for example in examples] == [1, 3]
    assert examples[0]["context"] == ("Persona: I grow pumpkins. I work at a post office. I sing in the shower.\n"
                                      "User: What do you do?\nBot:")
    assert "Bot: I sort letters at the post office.\nUser: Any hobbies?\nBot:" in examples[1]["context"]


def test_evaluation_examples_max_examples(shipped):
    dataset = shipped["train"]
    every = evaluation_examples(dataset)

    assert evaluation_examples(dataset, max_examples=5) == every[:5]
    assert evaluation_examples(dataset, max_examples=0) == []
    assert evaluation_examples(dataset, max_examples=10_000) == every
    with pytest.raises(ValueError, match="max_examples is -1"):
        evaluation_examples(dataset, max_examples=-1)


def test_reply_from_generation_keeps_first_line():
    assert reply_from_generation(" I keep bees.\nUser: Really?\nBot: Yes.") == "I keep bees."
    assert reply_from_generation("\n  Only this line.  ") == "Only this line."
    assert reply_from_generation("") == ""


def test_general_text_size():
    text = general_text()
    words = len(text.split())
    paragraphs = [block for block in text.split("\n\n") if block.strip()]

    assert 2000 <= words <= 3000
    assert len(paragraphs) >= 20


# Metric modules


@pytest.fixture(scope="module")
def metrics():
    import evaluate

    return {name: evaluate.load(str(METRICS_DIR / name)) for name in ("bleu", "rouge", "chrf")}


IDENTICAL = ["I keep bees on the roof of my building.", "Fish and chips by the harbour, please."]
UNRELATED = ["Quartz crystals vibrate at a precise frequency.", "Zebra grazing fixed everything quickly."]


@pytest.mark.parametrize("name", ["bleu", "rouge", "chrf"])
def test_metric_identical_strings_score_100(metrics, name):
    result = metrics[name].compute(predictions=IDENTICAL, references=[[text] for text in IDENTICAL])

    assert result["score"] == pytest.approx(100)
    assert result["sentence_scores"] == [pytest.approx(100), pytest.approx(100)]


@pytest.mark.parametrize(("name", "ceiling"), [("bleu", 5), ("rouge", 5), ("chrf", 20)])
def test_metric_unrelated_strings_score_low(metrics, name, ceiling):
    result = metrics[name].compute(predictions=UNRELATED, references=[[text] for text in IDENTICAL])

    assert result["score"] < ceiling
    assert len(result["sentence_scores"]) == 2
    assert max(result["sentence_scores"]) < ceiling


@pytest.mark.parametrize("name", ["bleu", "rouge", "chrf"])
def test_metric_partial_match_scores_between(metrics, name):
    result = metrics[name].compute(predictions=["I keep bees on the roof of my house."],
                                   references=[[IDENTICAL[0]]])

    assert 30 < result["score"] < 100


@pytest.mark.parametrize("name", ["bleu", "rouge"])
def test_metric_best_of_several_references(metrics, name):
    result = metrics[name].compute(predictions=IDENTICAL,
                                   references=[[UNRELATED[0], IDENTICAL[0]], [IDENTICAL[1]]])

    assert result["sentence_scores"] == [pytest.approx(100), pytest.approx(100)]
    with pytest.raises(ValueError, match=r"predictions at positions \[1\] have no reference"):
        metrics[name].compute(predictions=IDENTICAL, references=[[IDENTICAL[0]], []])
