"""Rebuild words.txt: WordNet 3.0 nouns and adjectives that can name what a picture shows, ordered by
how common they are in English (wordfreq), the most common first. Not run by the app or the tests (the
app reads the committed words.txt and downloads nothing); run by hand to remake the list:

    apt-get download wordnet-base && dpkg-deb -x wordnet-base_*.deb wn   # Debian's WordNet 3.0 data
    pip install --target /tmp/wf wordfreq                              # frequencies (data CC-BY-SA 4.0)
    PYTHONPATH=/tmp/wf python assets/vocabulary/build_vocabulary.py wn/usr/share/wordnet [--size 10000]

Rules (see SOURCE.md): a word is kept when it is one lower-case word of letters, at least 3 long, not
an English stop word (scikit-learn's list); none of its two commonest senses (in any part of speech)
glossed as offensive, obscene, vulgar, a slur, derogatory or disparaging; not in EXCLUDED (obscenities
WordNet glosses as mere slang); not used mostly as a verb or adverb (WordNet's SemCor sense counts,
cntlist.rev); not an inflected verb form (verb.exc, or -ed/-ing of a verb with no noun sense); and
either an adjective or a noun with one of its two commonest senses in a lexicographer file of things
one can see (LEXFILES below). Basic colour and shape words (ALWAYS) are kept whatever the rules say.
The kept words are sorted by wordfreq's English Zipf frequency (ties alphabetical) and the first
--size written, one a line.
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
# Obscenities and slurs WordNet glosses as plain "slang": never shown as a group's name.
EXCLUDED = {"fuck", "fucking", "shit", "cunt", "whore", "slut", "bitch", "bastard", "nigger", "nigga",
            "faggot", "fag", "dick", "cock", "pussy", "retard", "retarded", "dyke", "kike", "spic", "chink",
            "twat",
            "tranny", "wank", "wanker", "bollocks", "prick", "asshole", "arse", "arsehole", "crap", "piss"}
# Basic colours and shapes: always kept (when common enough), whatever the rules say of their other
# senses ("cross" is mostly a verb in SemCor; "red" has a sense glossed as derogatory).
ALWAYS = {"red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white", "gray",
          "grey", "circle", "square", "triangle", "cross", "star", "rectangle", "oval", "heart", "diamond"}


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
            if pos == "adj" or any(lexfile in LEXFILES for lexfile, _ in info[:2]):
                kept.add(lemma)
    return kept


def mostly_verbs(folder: Path) -> set[str]:
    """Words SemCor tags more often as a verb or adverb than as a noun or adjective (cntlist.rev lines:
    `lemma%pos:... sense_number tag_count`, pos 1 noun, 2 verb, 3 adjective, 4 adverb, 5 satellite),
    irregular verb forms (verb.exc) and -ed/-ing forms of a verb that have no noun sense."""
    counts: dict[str, list[int]] = {}
    for line in (folder / "cntlist.rev").read_text(encoding="latin-1").splitlines():
        key, _, count = line.split()
        lemma, sense = key.split("%", 1)
        tally = counts.setdefault(lemma, [0, 0])
        tally[sense[0] in "24"] += int(count)
    out = {lemma for lemma, (naming, doing) in counts.items() if doing > naming}
    out |= {line.split()[0] for line in (folder / "verb.exc").read_text(encoding="latin-1").splitlines()}
    verbs, nouns = set(_senses(folder, "verb")), set(_senses(folder, "noun"))
    for word in set(_senses(folder, "adj")) - nouns:
        stems = [word[:-2], word[:-1], word[:-3], word[:-3] + "e", word[:-4]]
        if not word.endswith(("ed", "ing")):
            continue
        if any(stem in verbs for stem in stems):
            out.add(word)
    return out


def unfit(folder: Path) -> set[str]:
    """Every lemma (any part of speech) one of whose two commonest senses is glossed as offensive: left
    out even when its other senses are innocent."""
    out = set()
    for pos in ("noun", "adj", "verb", "adv"):
        synsets = _synsets(folder, pos)
        for lemma, offsets in _senses(folder, pos).items():
            if any(UNFIT_GLOSS.search(synsets[offset][1]) for offset in offsets[:2]):
                out.add(lemma)
    return out


def main() -> None:
    from wordfreq import zipf_frequency

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wordnet", type=Path, help="the folder with WordNet 3.0's index.noun, data.noun, ...")
    parser.add_argument("--size", type=int, default=10_000)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("words.txt"))
    args = parser.parse_args()
    words = (candidates(args.wordnet) - unfit(args.wordnet) - mostly_verbs(args.wordnet) - EXCLUDED) | ALWAYS
    scored = sorted(((zipf_frequency(word, "en"), word) for word in words), key=lambda p: (-p[0], p[1]))
    chosen = [word for score, word in scored if score > 0][:args.size]
    args.out.write_text("\n".join(chosen) + "\n", encoding="utf-8")
    last = scored[len(chosen) - 1][0]
    print(f"{len(chosen)} of {len(words)} candidate words -> {args.out} (last Zipf {last})")


if __name__ == "__main__":
    main()
