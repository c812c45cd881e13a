"""The untuned model's baseline is computed once, cached on disk, invalidated by any change that matters."""

from __future__ import annotations

import dataclasses
import json
import shutil

from harness import baseline
from harness.checks.finetune import LossMeter
from harness.config import Rubric
from harness.models import resolve_model
from tests.conftest import EXAMPLES, grade_folder


def test_cache_hit_and_invalidation(tmp_path):
    model = resolve_model("tiny-gpt2")
    rubric = Rubric()
    meter = LossMeter(model.path, rubric.prompt, rubric.response)

    first = baseline.load_or_compute(model, rubric, meter.loss, folder=tmp_path)
    again = baseline.load_or_compute(model, rubric, meter.loss, folder=tmp_path)
    assert not first.cached
    assert again.cached
    assert again == first
    assert set(first.replies) == set(rubric.chat_prompts)
    assert [path.name for path in tmp_path.iterdir()] == [f"{first.key}.json"]

    for changed in (dataclasses.replace(rubric, response="Fine, thanks."),
                    dataclasses.replace(rubric, other_prompts=("Who are you?",)),
                    dataclasses.replace(rubric, max_new_tokens=12)):
        other = baseline.load_or_compute(model, changed, meter.loss, folder=tmp_path)
        assert not other.cached
        assert other.key != first.key
    assert len(list(tmp_path.iterdir())) == 4


def test_other_model_gets_other_key():
    rubric = Rubric()
    decoding = baseline.Decoding.for_rubric(rubric)
    keys = {baseline.baseline_key(resolve_model(name), rubric, decoding) for name in ("tiny-gpt2", "tiny-llama")}
    assert len(keys) == 2


def test_corrupt_cache_entry_is_recomputed(tmp_path):
    model = resolve_model("tiny-gpt2")
    rubric = Rubric()
    meter = LossMeter(model.path, rubric.prompt, rubric.response)
    first = baseline.load_or_compute(model, rubric, meter.loss, folder=tmp_path)
    (tmp_path / f"{first.key}.json").write_text("{not json")
    again = baseline.load_or_compute(model, rubric, meter.loss, folder=tmp_path)
    assert not again.cached
    assert json.loads((tmp_path / f"{first.key}.json").read_text())["loss"] == first.loss


def test_cached_baseline_gives_the_same_grades(examples_graded, submissions, tmp_path):
    shutil.copy(EXAMPLES / "alice_correct.ipynb", submissions)
    code, fresh = grade_folder(submissions, tmp_path / "fresh", "--recompute-baseline", "--cell-timeout", "20")
    assert code == 0
    _, cached, _ = examples_graded
    assert cached["submissions"]["alice_correct"] == fresh["submissions"]["alice_correct"]
    assert cached["environment"]["baseline"] == fresh["environment"]["baseline"]
    assert fresh["submissions"]["alice_correct"]["checks"]["chatbot.before_after"]["status"] == "passed"
