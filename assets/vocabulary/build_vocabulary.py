"""Rebuild words.txt: WordNet 3.0 nouns and adjectives that can name what a picture shows, ordered by
how common they are in English (wordfreq), the most common first. Not run by the app or the tests (the
app reads the committed words.txt and downloads nothing); run by hand to remake the list:

    apt-get download wordnet-base && dpkg-deb -x wordnet-base_*.deb wn   # Debian's WordNet 3.0 data
    pip install --target /tmp/wf wordfreq                              # frequencies (data CC-BY-SA 4.0)
    PYTHONPATH=/tmp/wf python assets/vocabulary/build_vocabulary.py wn/usr/share/wordnet [--size 10000]

Rules (see SOURCE.md): a word is kept when it is one lower-case word of letters, at least 3 long, not an
English stop word (scikit-learn's list), not glossed in any sense as offensive, obscene, vulgar, a slur,
derogatory or disparaging, and is either an adjective or a noun with a sense in a lexicographer file
of things one can see (LEXFILES below). The kept words are sorted by wordfreq's English Zipf frequency
(ties alphabetical) and the first --size written, one a line.
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path

# WordNet lexicographer files (lexnames) whose nouns can be seen in a picture.
LEXFILES = {
    4: "noun.act", 5: "noun.animal", 6: "noun.artifact", 7: "noun.attribute", 8: "noun.body",
    11: "noun.event", 13: "noun.food", 14: "noun.group", 15: "noun.location", 17: "noun.object",
    18: "noun.person", 19: "noun.phenomenon", 20: "noun.plant", 25: "noun.shape", 27: "noun.substance",
}
UNFIT_GLOSS = re.compile(r"offensive|obscene|vulgar|\bslur\b|derogatory|disparaging", re.IGNORECASE)
WORD = re.compile(r"[a-z]{3,}")


def _senses(folder: Path, pos: str) -> dict[str, list[int]]:
    """lemma -> its synset offsets in data.<pos> (WordNet's index.<pos>: the offsets end each line)."""
    senses = {}
    for line in (folder / f"index.{pos}").read_text(encoding="latin-1").splitlines():
        if line.startswith(" "):
            continue  # the licence header
        fields = line.split()
        count = int(fields[2])
        senses[fields[0]] = [int(offset) for offset in fields[-count:]]
    return senses


def _synsets(folder: Path, pos: str) -> dict[int, tuple[int, str]]:
    """offset -> (lexicographer file number, gloss) for every synset in data.<pos>."""
    out = {}
    offset = 0
    for raw in (folder / f"data.{pos}").read_bytes().splitlines(keepends=True):
        line = raw.decode("latin-1")
        if not line.startswith(" "):
            fields = line.split(" ", 3)
            out[offset] = (int(fields[1]), line.split("|", 1)[1] if "|" in line else "")
        offset += len(raw)
    return out


def candidates(folder: Path) -> set[str]:
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    kept = set()
    for pos in ("noun", "adj"):
        synsets = _synsets(folder, pos)
        for lemma, offsets in _senses(folder, pos).items():
            if not WORD.fullmatch(lemma) or lemma in ENGLISH_STOP_WORDS:
                continue
            info = [synsets[offset] for offset in offsets]
            if any(UNFIT_GLOSS.search(gloss) for _, gloss in info):
                continue
            if pos == "adj" or any(lexfile in LEXFILES for lexfile, _ in info):
                kept.add(lemma)
    return kept


def unfit(folder: Path) -> set[str]:
    """Every lemma (any part of speech) with a sense glossed as offensive: left out even when its noun
    or adjective senses are innocent."""
    out = set()
    for pos in ("noun", "adj", "verb", "adv"):
        synsets = _synsets(folder, pos)
        for lemma, offsets in _senses(folder, pos).items():
            if any(UNFIT_GLOSS.search(synsets[offset][1]) for offset in offsets):
                out.add(lemma)
    return out


def main() -> None:
    from wordfreq import zipf_frequency

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wordnet", type=Path, help="the folder with WordNet 3.0's index.noun, data.noun, ...")
    parser.add_argument("--size", type=int, default=10_000)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("words.txt"))
    args = parser.parse_args()
    words = candidates(args.wordnet) - unfit(args.wordnet)
    scored = sorted(((zipf_frequency(word, "en"), word) for word in words), key=lambda p: (-p[0], p[1]))
    chosen = [word for score, word in scored if score > 0][:args.size]
    args.out.write_text("\n".join(chosen) + "\n", encoding="utf-8")
    last = scored[len(chosen) - 1][0]
    print(f"{len(chosen)} of {len(words)} candidate words -> {args.out} (last Zipf {last})")


if __name__ == "__main__":
    main()
