"""Settings come from flags, then EXPLORER_* variables, then defaults."""
from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from explorer.inputs.settings import DEFAULT_MODEL, DEFAULT_PRETRAINED, add_settings_arguments, load_settings


def _parse(argv):
    parser = argparse.ArgumentParser()
    add_settings_arguments(parser)
    return parser.parse_args(argv)


def test_defaults():
    s = load_settings(_parse([]), env={})
    assert (s.model, s.pretrained, s.device, s.precision) == (DEFAULT_MODEL, DEFAULT_PRETRAINED, "auto",
                                                              "auto")
    assert s.port is None and s.host is None and not s.hosted and s.allowed_roots == (Path.home().resolve(),)


def test_flags_beat_environment_and_types_are_parsed(tmp_path):
    env = {"EXPLORER_MODEL": "ViT-L-14", "EXPLORER_PORT": "9000", "EXPLORER_MAX_UPLOAD_MB": "2.5",
           "EXPLORER_ALLOWED_ROOTS": f"{tmp_path}:{tmp_path / 'b'}", "EXPLORER_HOSTED": "true"}
    s = load_settings(_parse(["--port", "9100"]), env=env)
    assert s.model == "ViT-L-14" and s.pretrained is None  # another model does not inherit the default tag
    assert s.port == 9100 and s.max_upload_bytes == int(2.5 * 1024 * 1024) and s.hosted
    assert s.allowed_roots == (tmp_path.resolve(), (tmp_path / "b").resolve())


def test_spaces_turn_on_hosted_mode_and_empty_pretrained_means_none():
    s = load_settings(_parse(["--pretrained", ""]), env={"SPACE_ID": "someone/clip-explorer"})
    assert s.hosted and s.pretrained is None


def test_bad_number_is_a_clear_error():
    with pytest.raises(ValueError, match="port"):
        load_settings(_parse([]), env={"EXPLORER_PORT": "eighty"})


def test_hosted_model_list_is_parsed_and_the_startup_model_comes_first():
    settings = load_settings(
        env={"EXPLORER_MODELS": "ViT-B-16@openai, hf-hub:org/repo ,ViT-B-32@laion2b_s34b_b79k"})
    assert settings.model_choices() == [("ViT-B-32", "laion2b_s34b_b79k"), ("ViT-B-16", "openai"),
                                        ("hf-hub:org/repo", None)]
    with pytest.raises(ValueError, match="bad value for models"):
        load_settings(env={"EXPLORER_MODELS": "ViT-B-16@openai,@openai"})


def test_the_decode_ceiling_reaches_the_image_limits():
    assert load_settings(env={"EXPLORER_MAX_DECODE_MB": "8"}).limits.max_decode_bytes == 8 * 2**20


def test_max_compare_models_is_4_locally_3_hosted_and_set_by_its_variable():
    assert load_settings(env={}).max_compare_models == 4
    assert load_settings(env={"EXPLORER_HOSTED": "1"}).max_compare_models == 3
    hosted_two = {"EXPLORER_HOSTED": "1", "EXPLORER_MAX_COMPARE_MODELS": "2"}
    assert load_settings(env=hosted_two).max_compare_models == 2
    assert load_settings(_parse(["--max-compare-models", "5"]), env={}).max_compare_models == 5
    with pytest.raises(ValueError, match="max_compare_models.*at least 2"):
        load_settings(env={"EXPLORER_MAX_COMPARE_MODELS": "1"})
