"""ROUGE-L (Lin 2004) as an `evaluate` metric module, computed by Google's `rouge-score` package.

The metric modules published on the Hugging Face hub cannot be downloaded offline and the `evaluate` wheel ships
none, so the grader keeps this one in its own package and loads it with `evaluate.load(path)`.
"""

import datasets
import evaluate
from rouge_score import rouge_scorer

DESCRIPTION = ("ROUGE-L: F-measure of the longest common subsequence of words between a prediction and a "
               "reference, from 0 to 100.")

INPUTS = """
Args:
    predictions (list of str): the texts to score.
    references (list of list of str): one or more reference texts for each prediction. Each prediction keeps
        the reference that gives it the highest F-measure. An empty list raises a ValueError.
    use_stemmer (bool): strip English suffixes with the Porter stemmer before matching, False by default.
Returns:
    score (float): mean of the sentence scores, 0 to 100; 0 for no predictions.
    sentence_scores (list of float): ROUGE-L F-measure of each prediction, 0 to 100.
Notes:
    rouge-score's tokenizer lowercases the text and keeps only the ASCII letters a-z and digits, so a text
    written in another script has no tokens and scores 0.
"""

CITATION = """@inproceedings{lin-2004-rouge,
    title = "{ROUGE}: A Package for Automatic Evaluation of Summaries",
    author = "Lin, Chin-Yew",
    booktitle = "Text Summarization Branches Out",
    year = "2004",
    pages = "74--81",
}"""


class Rouge(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=DESCRIPTION,
            citation=CITATION,
            inputs_description=INPUTS,
            features=datasets.Features(
                {
                    "predictions": datasets.Value("string"),
                    "references": datasets.Sequence(datasets.Value("string")),
                }
            ),
        )

    def _compute(self, predictions, references, use_stemmer=False):
        missing = [index for index, candidates in enumerate(references) if not candidates]
        if missing:
            raise ValueError(f"predictions at positions {missing[:10]} have no reference; "
                             "give each prediction at least one reference")

        scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=use_stemmer)
        sentence_scores = []
        for prediction, candidates in zip(predictions, references):
            best = scorer.score_multi(list(candidates), prediction)["rougeL"]
            sentence_scores.append(100 * best.fmeasure)
        score = sum(sentence_scores) / len(sentence_scores) if sentence_scores else 0.0
        return {"score": score, "sentence_scores": sentence_scores}
