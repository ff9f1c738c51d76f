"""Label parsing, template sets and template validation."""
from __future__ import annotations

import pytest

from explorer.science.prompts import (
    PromptError,
    build_prompts,
    check_templates,
    fill,
    load_template_set,
    parse_labels,
    parse_templates,
    parse_texts,
    read_template_file,
    write_template_files,
)


def test_labels_one_per_line_keep_commas_inside_a_line():
    parsed = parse_labels("a cat, sleeping\na dog\n")
    assert parsed.labels == ["a cat, sleeping", "a dog"]


def test_labels_comma_separated_with_blanks_and_duplicates_reported():
    parsed = parse_labels(" cat, dog,, Cat ,bird,  dog ,")
    assert parsed.labels == ["cat", "dog", "bird"]
    assert any("blank" in note for note in parsed.notes)
    assert any("duplicate" in note and "Cat" in note for note in parsed.notes)


def test_labels_whitespace_is_collapsed_and_empty_input_gives_nothing():
    assert parse_labels("red   circle\n\n blue square ").labels == ["red circle", "blue square"]
    assert parse_labels("").labels == [] and parse_labels(" , ,\n").labels == []


def test_builtin_template_sets():
    assert load_template_set("single") == ["a photo of a {}."]
    openai = load_template_set("openai")
    simple = load_template_set("simple")
    assert len(openai) == 80 and len(simple) == 7
    assert set(simple) <= set(openai)
    assert all("{}" in t for t in openai)


def test_custom_templates_need_placeholders(tmp_path):
    assert parse_templates("# comment\na photo of a {}.\n\n{} in the wild") == [
        "a photo of a {}.", "{} in the wild"
    ]
    with pytest.raises(PromptError, match="line 2"):
        parse_templates("a photo of a {}.\na photo of nothing")
    with pytest.raises(PromptError, match="empty"):
        parse_templates("\n# only a comment\n")
    path = tmp_path / "t.txt"
    path.write_text("art of the {}.\n")
    assert load_template_set(str(path)) == ["art of the {}."]
    with pytest.raises(PromptError, match="not single, openai, simple"):
        load_template_set(str(tmp_path / "missing.txt"))
    for named_slot in ("a photo of a {cat}.", "a photo of a { }.", "a photo of a {0}."):
        with pytest.raises(PromptError, match="need"):
            parse_templates(named_slot)
        with pytest.raises(PromptError, match="row 1"):
            check_templates([named_slot])


def test_template_files_the_app_writes_are_read_back_by_every_command(tmp_path):
    rows = ["a photo of a {}.", "a {} in the wild, \"quoted\"", "un dessin d'un {}."]
    txt, js = write_template_files(rows, tmp_path)
    assert read_template_file(txt) == rows and load_template_set(str(js)) == rows
    (tmp_path / "list.json").write_text('["a {}", "  the   {} "]')
    assert read_template_file(tmp_path / "list.json") == ["a {}", "the {}"]
    (tmp_path / "bad.json").write_text('{"templates": "a {}"}')
    with pytest.raises(PromptError, match="expected a JSON list"):
        read_template_file(tmp_path / "bad.json")
    (tmp_path / "cat.json").write_text('["a {cat}"]')
    with pytest.raises(PromptError, match="row 1"):
        read_template_file(tmp_path / "cat.json")


def test_free_texts_keep_commas_and_say_what_was_dropped():
    parsed = parse_texts("a cat, sitting\n\na dog\na cat, sitting\nthree\nfour", limit=3)
    assert parsed.labels == ["a cat, sitting", "a dog", "three"]
    assert parsed.notes == ["dropped the repeated text “a cat, sitting”", "kept the first 3 of 4 texts"]


def test_fill_ignores_other_braces_and_prompts_are_class_major():
    assert fill("a {} in {curly} braces", "cat") == "a cat in {curly} braces"
    assert build_prompts(["cat", "dog"], ["a {}", "the {}"]) == ["a cat", "the cat", "a dog", "the dog"]


def test_a_label_with_its_own_article_replaces_the_templates_article():
    from explorer.science.prompts import build_prompts, fill
    assert fill("a photo of a {}.", "a red bicycle") == "a photo of a red bicycle."
    assert fill("a photo of a {}.", "an apple") == "a photo of an apple."
    assert fill("a photo of the {}.", "A cat") == "a photo of A cat."
    assert fill("a photo of a {}.", "bicycle") == "a photo of a bicycle."          # no article: unchanged
    assert fill("a photo of {}.", "a bicycle") == "a photo of a bicycle."
    assert fill("a photo of a{}.", "a bicycle") == "a photo of aa bicycle."  # only a whole word is an article
    assert build_prompts(["a red bicycle", "anteater"], ["a {}.", "itap of an {}."]) == [
        "a red bicycle.", "itap of a red bicycle.", "a anteater.", "itap of an anteater."]
