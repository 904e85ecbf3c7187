"""The comparison key of a sequence in the leakage and homology checks: two sequences are the
same molecule when their keys are equal (case ignored, U read as T), as seqkit's dedupe of the
normalised corpus sees them."""
from __future__ import annotations


def normalized(sequence: str) -> str:
    """The comparison key of leakage checks: upper case, U read as T."""
    return sequence.upper().replace("U", "T")
