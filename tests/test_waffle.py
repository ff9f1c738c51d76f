"""WaffleCLIP's random descriptors (explorer/science/waffle.py) against a transcription of
ExplainableML/WaffleCLIP waffle_tools.py, and their use as a prompt source (use="waffle")."""
from __future__ import annotations

import numpy as np
import pytest

from explorer.embed.vectors import normalize
from explorer.inputs import gate
from explorer.inputs.gate import TextLimits
from explorer.inputs.sources import embed_folder
from explorer.science.descriptions import USES, WAFFLE_SLOT, prompt_count, prompt_set, slot_texts
from explorer.science.vocabulary import load_vocabulary
from explorer.science.waffle import CHARACTERS, WAFFLE, waffle_accuracy, waffle_descriptors
from tests.shapes import CLASSES, make_labelled_folder

GPT_DESCRIPTIONS = ["has four legs.", "a long, striped tail", "often found in (tropical) rivers", "used 2-3x"]
WORDS = ["apple", "canopy", "hashtag", "usedcar", "zebra", "mountain", "an", "oftentimes", "kettle", "x"]


def their_waffle(key_list, descr_list, word_list, waffle_count, seed):
    """waffle_tools.py load_gpt_descriptions(mode='waffle') with base_main.py's defaults
    (label_before_text 'A photo of a ', descriptor_separator ', ', label_after_text '.',
    apply_descriptor_modification True), after seed_everything(seed)."""
    np.random.seed(seed)

    def wordify(string):
        return string.replace("_", " ")

    def make_descriptor_sentence(descriptor):
        if descriptor.startswith("a") or descriptor.startswith("an"):
            return f"which is {descriptor}"
        elif (descriptor.startswith("has") or descriptor.startswith("often")
              or descriptor.startswith("typically") or descriptor.startswith("may")
              or descriptor.startswith("can")):
            return f"which {descriptor}"
        elif descriptor.startswith("used"):
            return f"which is {descriptor}"
        else:
            return f"which has {descriptor}"

    def structured_descriptor_builder(item, cls):
        return f"{''}{'A photo of a '}{wordify(cls)}{', '}{make_descriptor_sentence(item)}{'.'}"

    avg_num_words = int(np.max([np.round(np.mean([len(wordify(x).split(' ')) for x in key_list])), 1]))
    avg_word_length = int(np.round(np.mean([np.mean([len(y) for y in wordify(x).split(' ')])
                                            for x in key_list])))
    word_list = [x[:avg_word_length] for x in word_list]
    character_list = [x.split(' ') for x in descr_list]
    character_list = [x.replace(',', '').replace('.', '')
                      for x in np.unique([x for y in character_list for x in y])]
    character_list = np.unique(list(''.join(character_list)))
    num_spaces = int(np.round(np.mean([np.sum(np.array(list(x)) == ' ') for x in key_list]))) + 1
    num_chars = int(np.ceil(np.mean([np.max([len(y) for y in x.split(' ')]) for x in key_list])))
    num_chars += num_spaces - num_chars % num_spaces
    sample_key = ''
    for s in range(num_spaces):
        for _ in range(num_chars // num_spaces):
            sample_key += 'a'
        if s < num_spaces - 1:
            sample_key += ' '
    gpt_descriptions = {key: [] for key in key_list}
    for key in key_list:
        for _ in range(waffle_count):
            base_word = ''
            for a in range(avg_num_words):
                base_word += np.random.choice(word_list, 1, replace=False)[0]
                if a < avg_num_words - 1:
                    base_word += ' '
            gpt_descriptions[key].append(structured_descriptor_builder(base_word, key))
            noise_word = ''
            for c in sample_key:
                if c != ' ':
                    noise_word += np.random.choice(character_list, 1, replace=False)[0]
                else:
                    noise_word += ', '
            gpt_descriptions[key].append(structured_descriptor_builder(noise_word, key))
    match_key = np.random.choice(key_list)
    gpt_descriptions = {key: gpt_descriptions[match_key] for key in key_list}
    for key in gpt_descriptions:
        gpt_descriptions[key] = [x.replace(wordify(match_key), wordify(key)) for x in gpt_descriptions[key]]
    return gpt_descriptions


def _their_characters(descr_list):
    words = [x.replace(',', '').replace('.', '') for y in (d.split(' ') for d in descr_list) for x in y]
    return "".join(np.unique(list("".join(words))))


@pytest.mark.parametrize("names", [
    ["red circle", "blue square", "green triangle"],
    ["cat", "great_white_shark", "an apple", "hammerhead shark tooth"],
    ["canine", "usedcar lot"]])
@pytest.mark.parametrize("seed", [0, 6])
def test_descriptors_equal_their_code(names, seed):
    ours = waffle_descriptors(names, count=4, seed=seed, words=WORDS,
                              characters=_their_characters(GPT_DESCRIPTIONS))
    assert ours == their_waffle(names, GPT_DESCRIPTIONS, WORDS, 4, seed)


def test_the_shipped_words_by_default_shared_by_every_class():
    names = ["a red circle", "a blue square"]
    ours = waffle_descriptors(names, count=2, seed=3)
    assert ours == their_waffle(names, [CHARACTERS], load_vocabulary().words, 2, 3)
    strip = {name: [p.replace(name, "{}") for p in prompts] for name, prompts in ours.items()}
    assert strip[names[0]] == strip[names[1]] and len(set(strip[names[0]])) == 4
    assert ours != waffle_descriptors(names, count=2, seed=4)


def test_their_character_set_is_sorted_and_distinct():
    assert CHARACTERS == "".join(np.unique(list(CHARACTERS))) and len(CHARACTERS) == 66
    assert WAFFLE["params"]["count"] == 15 and WAFFLE["params"]["reps"] == 7 and WAFFLE["differs"]


class Counting:
    """The shapes model, recording every text sent to encode_texts."""

    def __init__(self, model):
        self.model, self.sent = model, []

    def encode_texts(self, texts, *args, **kwargs):
        self.sent += list(texts)
        return self.model.encode_texts(texts, *args, **kwargs)


LABELS = ["a red circle", "a blue square", "a green triangle"]


def test_prompt_set_encodes_what_prompt_count_says(shapes_model):
    assert "waffle" in USES
    counting = Counting(shapes_model)
    prompts = prompt_set(counting, LABELS, ["a photo of a {}."], None, "waffle", waffle_count=3, seed=1)
    counted = prompt_count(LABELS, ["a photo of a {}."], None, "waffle", waffle_count=3)
    assert len(counting.sent) == counted == 18
    built = waffle_descriptors(LABELS, count=3, seed=1)
    assert counting.sent == [p for label in LABELS for p in built[label]]
    assert slot_texts(LABELS, None, None, "waffle", waffle_count=3, seed=1) == [counting.sent]
    assert prompts.slots == [WAFFLE_SLOT] and prompts.embeddings.shape[:2] == (3, 1)
    expected = normalize(shapes_model.encode_texts(counting.sent).reshape(3, 6, -1).mean(axis=1))
    np.testing.assert_allclose(prompts.embeddings[:, 0], expected, atol=1e-6)
    assert any("templates were not used" in n for n in prompts.notes)


def test_too_many_waffle_prompts_are_refused_before_encoding(shapes_model):
    counting = Counting(shapes_model)
    with pytest.raises(gate.Refused, match="WaffleCLIP prompts"):
        prompt_set(counting, LABELS, None, None, "waffle", TextLimits(max_prompts=20), waffle_count=4)
    assert counting.sent == []


def test_accuracy_over_repetitions_as_their_base_main(shapes_model, tmp_path):
    make_labelled_folder(tmp_path, CLASSES[:3], 2, size=24)
    images = embed_folder(shapes_model, tmp_path)
    runs = waffle_accuracy(shapes_model, images, count=2, reps=2, seed=5)
    assert runs.seeds == [5, 6] and len(runs.accuracies) == 2
    names = list(images.class_names)
    built = waffle_descriptors(names, count=2, seed=6)
    emb = normalize(np.stack([shapes_model.encode_texts(built[n]).mean(axis=0) for n in names]))
    right = (images.embeddings @ emb.T).argmax(1) == images.labels
    assert runs.accuracies[1] == pytest.approx(float(right.mean()))
    doc = runs.as_dict()
    assert doc["method"] == "WaffleCLIP" and doc["params"]["reps"] == 2 and doc["params"]["their_reps"] == 7
    assert doc["mean_accuracy"] == pytest.approx(np.mean(runs.accuracies))
