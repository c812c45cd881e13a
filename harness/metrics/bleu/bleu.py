"""BLEU (Papineni et al. 2002) as an `evaluate` metric module, computed by sacrebleu.

The metric modules published on the Hugging Face hub cannot be downloaded offline and the `evaluate` wheel ships
none, so the grader keeps this one in its own package and loads it with `evaluate.load(path)`.
"""

import datasets
import evaluate
from sacrebleu.metrics import BLEU

DESCRIPTION = ("BLEU: geometric mean of word n-gram precisions (n = 1..4) of predictions against references, times "
               "a brevity penalty, from 0 to 100.")

INPUTS = """
Args:
    predictions (list of str): the texts to score.
    references (list of list of str): one or more reference texts for each prediction. The number may vary,
        but an empty list raises a ValueError.
    tokenize (str): sacrebleu tokenizer, "13a" by default; "intl", "char" and "zh" are among the others.
    lowercase (bool): compare lowercased text, False by default.
Returns:
    score (float): corpus-level BLEU, 0 to 100, from n-gram counts summed over all predictions; 0 for no
        predictions.
    sentence_scores (list of float): BLEU of each prediction against its references, 0 to 100. It uses
        sacrebleu's exponential smoothing and effective order, so a prediction shorter than 4 words that equals
        a reference still scores 100.
    precisions (list of float): corpus-level 1- to 4-gram precisions, 0 to 100.
    brevity_penalty (float): corpus-level brevity penalty, 0 to 1.
"""

CITATION = """@inproceedings{papineni-etal-2002-bleu,
    title = "{B}leu: a Method for Automatic Evaluation of Machine Translation",
    author = "Papineni, Kishore and Roukos, Salim and Ward, Todd and Zhu, Wei-Jing",
    booktitle = "Proceedings of the 40th Annual Meeting of the Association for Computational Linguistics",
    year = "2002",
    pages = "311--318",
}"""


class Bleu(evaluate.Metric):
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

    def _compute(self, predictions, references, tokenize="13a", lowercase=False):
        missing = [index for index, candidates in enumerate(references) if not candidates]
        if missing:
            raise ValueError(f"predictions at positions {missing[:10]} have no reference; "
                             "give each prediction at least one reference")

        corpus_metric = BLEU(tokenize=tokenize, lowercase=lowercase)
        sentence_metric = BLEU(tokenize=tokenize, lowercase=lowercase, effective_order=True)
        sentence_scores = [
            sentence_metric.sentence_score(prediction, list(candidates)).score
            for prediction, candidates in zip(predictions, references)
        ]

        # sacrebleu raises an IndexError on an empty corpus.
        if not predictions:
            return {"score": 0.0, "sentence_scores": [], "precisions": [0.0] * 4, "brevity_penalty": 0.0}

        # sacrebleu takes one stream per reference position, and None pads predictions that have fewer references.
        reference_count = max(len(candidates) for candidates in references)
        reference_streams = [
            [candidates[position] if position < len(candidates) else None for candidates in references]
            for position in range(reference_count)
        ]
        corpus = corpus_metric.corpus_score(list(predictions), reference_streams)
        return {
            "score": corpus.score,
            "sentence_scores": sentence_scores,
            "precisions": list(corpus.precisions),
            "brevity_penalty": corpus.bp,
        }
