"""chrF (character n-gram F-score, Popović 2015) as an `evaluate` metric module, computed by sacrebleu.

The metric modules published on the Hugging Face hub cannot be downloaded offline and the `evaluate` wheel ships
none, so the grader keeps this one in its own package and loads it with `evaluate.load(path)`.
"""

import datasets
import evaluate
from sacrebleu.metrics import CHRF

DESCRIPTION = "chrF: F-score over character n-grams (n = 1..6) of a prediction against references, from 0 to 100."

INPUTS = """
Args:
    predictions (list of str): the texts to score.
    references (list of list of str): one or more reference texts for each prediction.
    char_order (int): longest character n-gram, 6 by default.
    word_order (int): longest word n-gram; 0 is chrF, 2 is chrF++.
    beta (float): weight of recall against precision, 2 by default.
Returns:
    score (float): corpus-level chrF, 0 to 100.
    sentence_scores (list of float): chrF of each prediction against its references.
"""

CITATION = """@inproceedings{popovic-2015-chrf,
    title = "chr{F}: character n-gram {F}-score for automatic {MT} evaluation",
    author = "Popovi{\\'c}, Maja",
    booktitle = "Proceedings of the Tenth Workshop on Statistical Machine Translation",
    year = "2015",
    pages = "392--395",
}"""


class Chrf(evaluate.Metric):
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

    def _compute(self, predictions, references, char_order=6, word_order=0, beta=2):
        metric = CHRF(char_order=char_order, word_order=word_order, beta=beta)
        sentence_scores = [
            metric.sentence_score(prediction, list(candidates)).score
            for prediction, candidates in zip(predictions, references)
        ]
        reference_streams = [list(stream) for stream in zip(*references)]
        corpus = metric.corpus_score(list(predictions), reference_streams)
        return {"score": corpus.score, "sentence_scores": sentence_scores}
