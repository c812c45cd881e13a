"""tokenization.round_trip: decoding the encoded text must give back exactly the original text."""

from __future__ import annotations

from harness import config
from harness.checks.common import CheckContext, skipped_for
from harness.records import CheckResult

CHECK_ID = "tokenization.round_trip"
HIDDEN_CHECK_ID = "tokenization.hidden"

LONG_TEXT = " ".join(
    f"Sentence {number}: the quick brown fox jumps over {number % 7} lazy dogs, twice." for number in range(1, 40)
)[:2000]

# (label, text): each string breaks some tokenizer or decoding setting that real students use. Students see the
# public strings in their report; the hidden ones are graded by a separate check that shows them only its outcome.
PUBLIC_STRINGS: tuple[tuple[str, str], ...] = (
    ("plain sentence", "Hello, how are you?"),
    ("empty string", ""),
    ("single space", " "),
    ("leading space", " leading space"),
    ("repeated spaces", "two  spaces and   three"),
    ("newlines", "line one\nline two\n\nline four"),
    ("accents", "café naïve résumé Øresund"),
    ("Chinese", "我喜欢机器学习。"),
    ("emoji", "I love it 😀👍🏽"),
    ("upper case", "SHOUTING IN CAPITALS"),
)
HIDDEN_STRINGS: tuple[tuple[str, str], ...] = (
    ("trailing space", "trailing space "),
    ("tab", "column one\tcolumn two"),
    ("Windows newline", "carriage\r\nreturn"),
    ("space before punctuation", "Wait , what ? Really !"),
    ("contraction spacing", "I 'm sure it 's fine , is n't it ?"),
    ("punctuation run", "?!?!... --- ;;; ::"),
    ("quotes", "\"double\" and 'single' and `back`"),
    ("decomposed accent", "cafe\u0301 (e plus combining accent)"),
    ("German", "Straße, Größe, Übermut"),
    ("Japanese", "東京は晴れです、ありがとう！"),
    ("Korean", "안녕하세요 세계"),
    ("Arabic (right to left)", "مرحبا بالعالم"),
    ("Hebrew (right to left)", "שלום עולם"),
    ("mixed direction", "The word שלום means peace."),
    ("emoji sequence", "family: 👨‍👩‍👧‍👦 flag: 🇫🇷"),
    ("Python code", "def f(x):\n    return x ** 2  # square\n"),
    ("JSON", '{"key": [1, 2.5, null], "ok": true}'),
    ("URL and e-mail", "https://example.org/a?b=c&d=e mailto:someone@example.org"),
    ("numbers", "3.14159 1,000,000 -42 1e-9"),
    ("mathematics", "∑ x² ≤ ∞ and √2 ≈ 1.414"),
    ("zero-width and no-break spaces", "zero\u200bwidth no\u00a0break"),
    ("long text (2,000 characters)", LONG_TEXT),
)
HARD_STRINGS = PUBLIC_STRINGS + HIDDEN_STRINGS


def first_difference(expected: str, actual: str) -> int:
    for position, (left, right) in enumerate(zip(expected, actual)):
        if left != right:
            return position
    return min(len(expected), len(actual))


def grade(context: CheckContext) -> tuple[CheckResult, CheckResult]:
    """Grade the public strings and the hidden strings, as two checks."""
    public = _grade_strings(context, CHECK_ID, PUBLIC_STRINGS, 0)
    hidden = _grade_strings(context, HIDDEN_CHECK_ID, HIDDEN_STRINGS, len(PUBLIC_STRINGS))
    return public, hidden


def _grade_strings(context: CheckContext, check_id: str, strings: tuple[tuple[str, str], ...],
                   offset: int) -> CheckResult:
    points = context.config.rubric.points(check_id)
    skip = skipped_for(context, CHECK_ID, points, needs_tokenizer=True)
    if skip:
        skip.id = check_id
        return skip

    data = context.probe(CHECK_ID)
    if data.get("method") is None:
        return CheckResult(check_id, "failed", 0.0, points,
                           f"No tokenizer was found, and `{config.ENCODE_FN}`/`{config.DECODE_FN}` are not defined. "
                           f"Define both helpers in the tokenization part.")

    rows = []
    for (label, text), entry in zip(strings, data["results"][offset:offset + len(strings)]):
        decoded = entry.get("decoded")
        ok = decoded == text and "error" not in entry
        rows.append({
            "label": label,
            "text": text,
            "decoded": decoded,
            "error": entry.get("error"),
            "tokens": entry.get("tokens"),
            "passed": ok,
            "first_difference": None if ok or decoded is None else first_difference(text, decoded),
        })
    passed = sum(row["passed"] for row in rows)
    total = len(rows)
    how = (f"`{config.DECODE_FN}({config.ENCODE_FN}(s))`" if data["method"] == "helpers"
           else "the tokenizer's encode/decode (the helpers are not defined)")
    details = {"method": data["method"], "rows": rows, "passed": passed, "total": total}
    if passed == total:
        return CheckResult(check_id, "passed", points, points,
                           f"{how} gave back all {total} test strings exactly.", details)

    failures = [row for row in rows if not row["passed"]]
    example = failures[0]
    observed = f"raised {example['error']}" if example["error"] else f"gave {example['decoded']!r}"
    message = (
        f"{how} changed {len(failures)} of {total} test strings. For example {example['label']} "
        f"{example['text'][:80]!r} {observed[:200]}. Decode with skip_special_tokens=True and "
        "clean_up_tokenization_spaces=False, do not add special tokens when encoding, and do not strip, "
        "lower-case or join tokens with spaces."
    )
    score = round(points * passed / total, 2)
    return CheckResult(check_id, "failed", score, points, message, details)
