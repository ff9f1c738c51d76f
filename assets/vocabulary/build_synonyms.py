"""Rebuild synonyms.tsv.gz: for each WordNet 3.0 noun, the other names of its commonest senses.

Not run by the app or the tests (the app reads the committed synonyms.tsv.gz and downloads nothing); run
by hand to remake it from Debian's WordNet 3.0 data:

    apt-get download wordnet-base && dpkg-deb -x wordnet-base_*.deb wn   # Debian's WordNet 3.0 data
    python assets/vocabulary/build_synonyms.py wn/usr/share/wordnet

Rules (see synonyms.SOURCE.md): every noun lemma of index.noun (a line per lemma; its synset offsets are
listed commonest sense first, by WordNet's SemCor tag counts) gets the other lemmas of its first SENSES
synsets in data.noun, in that order (sense by sense, each synset's words in WordNet's order), underscores as
spaces, WordNet's (a)/(p) markers removed, compared case-insensitively, the lemma itself and repeats left
out, at most PER_WORD. A synset whose gloss calls it offensive, obscene, vulgar, a slur, derogatory or
disparaging gives no synonym. Lemmas with no synonym left are not written. One line per lemma, sorted:
`lemma<TAB>synonym<TAB>synonym...`, gzip-compressed with a zero mtime and no file name in the header, so
the same data always gives the same bytes.
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import re
from pathlib import Path

from build_vocabulary import UNFIT_GLOSS, _senses  # beside this file: WordNet's index, the same unfit glosses

SENSES = 3      # a lemma's commonest senses that lend their synonyms
PER_WORD = 8    # synonyms kept per lemma


def _synsets(folder: Path) -> dict[int, list[str]]:
    """offset -> the synset's words (spaces for underscores), [] for a synset glossed as offensive."""
    out, offset = {}, 0
    for raw in (folder / "data.noun").read_bytes().splitlines(keepends=True):
        line = raw.decode("latin-1")
        if not line.startswith(" "):
            fields = line.split(" ")
            count = int(fields[3], 16)
            words = [re.sub(r"\([a-z]+\)$", "", w).replace("_", " ") for w in fields[4:4 + 2 * count:2]]
            gloss = line.split("|", 1)[1] if "|" in line else ""
            out[offset] = [] if UNFIT_GLOSS.search(gloss) else words
        offset += len(raw)
    return out


def synonyms(folder: Path) -> dict[str, list[str]]:
    synsets, table = _synsets(folder), {}
    for lemma, offsets in _senses(folder, "noun").items():
        name = lemma.replace("_", " ")
        seen, kept = {name.casefold()}, []
        for offset in offsets[:SENSES]:
            for word in synsets[offset]:
                if word.casefold() not in seen and len(kept) < PER_WORD:
                    seen.add(word.casefold())
                    kept.append(word)
        if kept:
            table[name] = kept
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wordnet", type=Path, help="the folder with WordNet 3.0's index.noun and data.noun")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("synonyms.tsv.gz"))
    args = parser.parse_args()
    table = synonyms(args.wordnet)
    text = "".join(f"{lemma}\t" + "\t".join(table[lemma]) + "\n" for lemma in sorted(table))
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=0, compresslevel=9) as out:
        out.write(text.encode("utf-8"))
    args.out.write_bytes(buffer.getvalue())
    digest = hashlib.sha256(buffer.getvalue()).hexdigest()
    print(f"{len(table)} lemmas -> {args.out} ({len(buffer.getvalue()):,} bytes, SHA-256 {digest})")


if __name__ == "__main__":
    main()
