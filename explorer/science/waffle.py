"""WaffleCLIP's random descriptors: each class prompted with random words and random characters.

Roth et al., "Waffling around for Performance: Visual Classification with Random Words and Broad
Concepts" (ICCV 2023), https://github.com/ExplainableML/WaffleCLIP, waffle_tools.py,
`load_gpt_descriptions(..., mode='waffle')`. Built as that function builds them:

  - from the class names: `avg_num_words` (mean words per name, rounded, at least 1) and
    `avg_word_length` (mean word length, rounded); each word of the list cut to that length;
  - a character template `sample_key`: `num_spaces` (mean spaces per name, rounded, + 1) groups of
    'a's, `num_chars` (mean longest word per name, rounded up, then raised past a multiple of
    num_spaces) in all, each group becoming random characters and each gap ", ";
  - per class, `count` pairs: `avg_num_words` random words, then one random character string, each
    as "A photo of a {class}, which is/has/... {descriptor}." (their `structured_descriptor_builder`
    with the default `label_before_text`, `descriptor_separator` and `make_descriptor_sentence`);
  - then ONE class's set (`match_key`, drawn last) is shared by all classes, its class name replaced
    by each class's own (`str.replace`, as theirs: everywhere in the text).
Every draw is `np.random.choice(x, 1, replace=False)` on the legacy generator seeded with `seed`
(theirs: `seed_everything(rep)` before each repetition), so the same seed gives their descriptors for
the same word list, character set and class names. Their key runs (replicate_key_runs.sh) use
`--waffle_count=15 --reps=7` and report the mean (and std) accuracy over the 7 repetitions (seeds
0..6, base_main.py); `waffle_accuracy` does the same here.

Where this differs from theirs (also in `WAFFLE["differs"]`):
  - the word list: the project's shipped vocabulary (assets/vocabulary/words.txt, 10,000 WordNet
    words, via explorer.science.vocabulary), not their word_list.pkl (4,330 tokens taken from GPT
    descriptions, numbers included);
  - the character set: theirs is every character of the dataset's GPT descriptions (`character_list`);
    here it is fixed to the 66 characters that code derives from their descriptors_imagenet.json;
  - pooling: base_main.py scores a class by the mean of the image's cosines with its descriptor
    prompts (the un-normalised mean embedding); the lab's slot is that mean renormalised (as every
    pooled slot here), which ranks classes the same only when the means have equal norms.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from explorer.inputs.gate import DEFAULT_TEXT_LIMITS, TextLimits

SOURCE = ("Roth et al., Waffling around for Performance: Visual Classification with Random Words and Broad "
          "Concepts, ICCV 2023, https://github.com/ExplainableML/WaffleCLIP waffle_tools.py "
          "(load_gpt_descriptions, mode 'waffle'), base_main.py (repetitions)")
COUNT = 15          # their --waffle_count in every WaffleCLIP run of replicate_key_runs.sh
REPS = 7            # their --reps there: accuracy is the mean over seeds 0..6
LABEL_BEFORE = "A photo of a "    # base_main.py --label_before_text default
LABEL_AFTER = "."                 # --label_after_text
SEPARATOR = ", "                  # --descriptor_separator
# The characters waffle_tools.py derives (np.unique) from the words of descriptors/descriptors_imagenet.json.
CHARACTERS = "\"'()-/0123456789:ABCDEFGIJKLMNOPQRSTUVWZabcdefghijklmnopqrstuvwxyz"
DIFFERS = ("word list: the project's assets/vocabulary/words.txt (10,000 WordNet words), not their "
           "word_list.pkl; characters: the 66 their code derives from descriptors_imagenet.json, not "
           "the dataset's own GPT descriptions; the lab pools a class's descriptor prompts as the "
           "renormalised mean embedding (theirs: the mean of the cosines, i.e. not renormalised)")
WAFFLE = {"method": "WaffleCLIP", "params": {"count": COUNT, "reps": REPS, "seed": 0},
          "source": SOURCE, "differs": DIFFERS}


def waffle_method(count: int = COUNT, reps: int = 1, seed: int = 0) -> dict:
    """WAFFLE with the params of one use (reps: how many seeds were averaged; theirs is 7)."""
    return {**WAFFLE, "params": {"count": count, "reps": reps, "seed": seed, "their_reps": REPS,
                                 "their_count": COUNT}}


def wordify(name: str) -> str:
    """waffle_tools.wordify: underscores read as spaces."""
    return name.replace("_", " ")


def descriptor_sentence(descriptor: str) -> str:
    """waffle_tools.make_descriptor_sentence, as written (a descriptor starting with 'a' reads 'which is')."""
    if descriptor.startswith("a") or descriptor.startswith("an"):
        return f"which is {descriptor}"
    if descriptor.startswith(("has", "often", "typically", "may", "can")):
        return f"which {descriptor}"
    if descriptor.startswith("used"):
        return f"which is {descriptor}"
    return f"which has {descriptor}"


def build_prompt(descriptor: str, name: str) -> str:
    """Their structured_descriptor_builder with base_main.py's defaults."""
    return f"{LABEL_BEFORE}{wordify(name)}{SEPARATOR}{descriptor_sentence(descriptor)}{LABEL_AFTER}"


@dataclass(frozen=True)
class Shape:
    """What the class names fix: words per descriptor, word length, and the character template."""
    words: int
    word_length: int
    sample_key: str


def descriptor_shape(class_names: list[str]) -> Shape:
    """avg_num_words, avg_word_length and sample_key exactly as waffle_tools.py computes them."""
    words = int(np.max([np.round(np.mean([len(wordify(x).split(" ")) for x in class_names])), 1]))
    length = int(np.round(np.mean([np.mean([len(y) for y in wordify(x).split(" ")]) for x in class_names])))
    spaces = int(np.round(np.mean([np.sum(np.array(list(x)) == " ") for x in class_names]))) + 1
    chars = int(np.ceil(np.mean([np.max([len(y) for y in x.split(" ")]) for x in class_names])))
    chars += spaces - chars % spaces
    groups = ["a" * (chars // spaces)] * spaces
    return Shape(words, length, " ".join(groups))


def _draw(rng: np.random.RandomState, pool: np.ndarray) -> str:
    # np.random.choice(pool, 1, replace=False)[0] is pool[permutation(len(pool))[0]]: the same draws.
    return str(pool[rng.permutation(len(pool))[0]])


def waffle_descriptors(class_names: list[str], *, count: int = COUNT, seed: int = 0,
                       words: list[str] | None = None,
                       characters: str = CHARACTERS) -> dict[str, list[str]]:
    """{class: its 2 x `count` prompts} (a random-words prompt then a random-characters prompt, per
    pair), one set shared by all classes, built as waffle_tools.py's 'waffle' mode (module docstring).
    `words`: the word list (None: the shipped vocabulary); `seed`: their repetition's seed.
    Callers gate the class names and the prompt count (2 x count x classes) before calling."""
    if not class_names:
        return {}
    if count < 1:
        raise ValueError("WaffleCLIP needs at least one descriptor pair per class (count >= 1)")
    if words is None:  # the shipped list: the same call again (the lab's token count) is not redrawn
        built = _shipped(tuple(class_names), count, seed, characters)
        return {name: list(prompts) for name, prompts in built.items()}
    return _build(class_names, count, seed, words, characters)


@functools.lru_cache(maxsize=8)
def _shipped(class_names: tuple[str, ...], count: int, seed: int, characters: str) -> dict[str, tuple]:
    from .vocabulary import load_vocabulary
    built = _build(list(class_names), count, seed, load_vocabulary().words, characters)
    return {name: tuple(prompts) for name, prompts in built.items()}


def _build(class_names: list[str], count: int, seed: int, words: list[str],
           characters: str) -> dict[str, list[str]]:
    """waffle_tools.py's loop (module docstring); ~0.1 ms a word drawn (a permutation of the list each,
    as np.random.choice(..., replace=False) draws): 256 classes x 15 pairs take about 1.4 s."""
    shape = descriptor_shape(class_names)
    pool = np.array([w[:shape.word_length] for w in words])
    chars = np.unique(list(characters))
    rng = np.random.RandomState(seed)
    built: dict[str, list[str]] = {}
    for name in class_names:
        prompts = []
        for _ in range(count):
            base = " ".join(_draw(rng, pool) for _ in range(shape.words))
            noise = "".join(_draw(rng, chars) if c != " " else ", " for c in shape.sample_key)
            prompts += [build_prompt(base, name), build_prompt(noise, name)]
        built[name] = prompts
    match = class_names[rng.choice(len(class_names))]
    return {name: [p.replace(wordify(match), wordify(name)) for p in built[match]] for name in class_names}


def waffle_count_of(class_names: list[str], count: int = COUNT) -> int:
    """How many prompts waffle_descriptors makes (before the text cache): 2 x count per class."""
    return 2 * count * len(class_names)


@dataclass
class WaffleRuns:
    """Accuracy of WaffleCLIP's classifier over `reps` seeds, as base_main.py reports it."""
    seeds: list[int]
    accuracies: list[float]
    count: int

    @property
    def mean(self) -> float:
        return float(np.mean(self.accuracies))

    @property
    def std(self) -> float:
        return float(np.std(self.accuracies))

    def as_dict(self) -> dict:
        return {**waffle_method(self.count, len(self.seeds), self.seeds[0] if self.seeds else 0),
                "seeds": self.seeds, "accuracies": self.accuracies, "mean_accuracy": self.mean,
                "std_accuracy": self.std}


def waffle_accuracy(model, images, *, count: int = COUNT, reps: int = REPS, seed: int = 0,
                    limits: TextLimits = DEFAULT_TEXT_LIMITS) -> WaffleRuns:
    """Top-1 accuracy of the WaffleCLIP classifier on labelled embedded images (sources.Embedded),
    once per seed seed..seed+reps-1, as base_main.py repeats it (mean and np.std over the seeds).
    All repetitions' prompts are gated together (max_prompts) before any is encoded."""
    from explorer.inputs import gate
    from explorer.inputs.sources import require_classes

    from .descriptions import prompt_set
    require_classes(images)
    names = list(images.class_names)
    gate.prompts(reps * waffle_count_of(names, count), f"WaffleCLIP prompts ({reps} repetitions)", limits)
    accuracies = []
    for rep in range(reps):
        prompts = prompt_set(model, names, None, None, "waffle", limits, waffle_count=count, seed=seed + rep)
        top = (images.embeddings @ prompts.embeddings[:, 0].T).argmax(axis=1)  # their argmax of similarity
        accuracies.append(float((top == images.labels).mean()))
    return WaffleRuns(list(range(seed, seed + reps)), accuracies, count)
