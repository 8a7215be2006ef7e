"""Perturbed copies of the training texts, for the teacher to label: more transfer data for free.

A student matches its teacher best on inputs the teacher has been asked about. With only the labelled
rows, it sees each intent phrased ~100 ways; perturbed copies show it the teacher's judgement near
each of those, where a hard label would be wrong or uninformative. This is the augmentation of Tang
et al. 2019 (*Distilling Task-Specific Knowledge from BERT into Simple Neural Networks*): each word is
dropped or swapped for a corpus word with a small probability, and some copies keep only a span of
the text. It works on words, not tokens, because the teacher and the student tokenise differently.
The copies carry no hard label (a perturbation can change the intent); the teacher's soft targets
are their only supervision.
"""

from __future__ import annotations

import random

MIN_WORDS = 3
"""Texts with fewer words get no copies: too little would be left after a perturbation."""


def augmented_texts(texts: list[str], copies: int, word_probability: float, seed: int) -> list[str]:
    """`copies` perturbed versions of each text (fewer where a text is too short or a copy repeats).

    Deterministic for a seed, so the teacher-logits cache (keyed by the texts) is reused across runs.
    """
    if copies <= 0:
        return []
    generator = random.Random(seed)
    vocabulary = [word for text in texts for word in text.split()]  # corpus frequencies, duplicates kept
    seen = set(texts)
    augmented = []
    for text in texts:
        words = text.split()
        if len(words) < MIN_WORDS:
            continue
        for _ in range(copies):
            candidate = " ".join(_perturb(words, vocabulary, word_probability, generator))
            if candidate and candidate not in seen:
                seen.add(candidate)
                augmented.append(candidate)
    return augmented


def _perturb(words: list[str], vocabulary: list[str], probability: float, generator: random.Random) -> list[str]:
    perturbed = []
    for word in words:
        draw = generator.random()
        if draw < probability:
            continue  # dropped
        perturbed.append(generator.choice(vocabulary) if draw < 2 * probability else word)
    # Tang et al.'s n-gram sampling, kept mild: intents are short, so a span of at least half the words.
    if len(perturbed) >= 2 * MIN_WORDS and generator.random() < 0.25:
        length = generator.randint((len(perturbed) + 1) // 2, len(perturbed) - 1)
        start = generator.randint(0, len(perturbed) - length)
        perturbed = perturbed[start:start + length]
    return perturbed
