"""Configs: unknown keys fail, derived configs set only deltas, every base field is commented (process set-up: test_startup.py)."""

import re

import pytest

from helpers import REPO, run_cli
from jaxdiff.common import configuration
from jaxdiff.common.errors import UserError


def test_overrides_apply_and_unknown_keys_fail():
    flags = configuration.parse(["--config=configs/toy.py", "--config.train.num_steps=7"])
    assert flags.config.train.num_steps == 7
    with pytest.raises(UserError, match="num_stepz"):
        configuration.parse(["--config=configs/toy.py", "--config.train.num_stepz=7"])
    with pytest.raises(UserError, match="num_steps"):
        configuration.parse(["--config=configs/toy.py", "--config.train.num_steps=many"])
    with pytest.raises(UserError, match="config file 'configs/nope.py' not found"):
        configuration.parse(["--config=configs/nope.py"])
    with pytest.raises(UserError, match="missing --config"):
        configuration.parse([])


def test_configs_are_locked_against_new_keys():
    flags = configuration.parse(["--config=configs/base.py"])
    with pytest.raises(AttributeError):
        flags.config.train.num_stepz = 3


def test_every_base_field_has_a_comment():
    source = open(f"{REPO}/configs/base.py").read()
    assignments = [line for line in source.splitlines() if re.match(r"\s+config\.\w+(\.\w+)* = ", line)]
    uncommented = [line.strip() for line in assignments if "#" not in line and "ConfigDict()" not in line]
    assert assignments and not uncommented, uncommented


def test_toy_and_tiny_derive_from_base():
    from configs import base, tiny, toy

    b, t = base.get_config(), toy.get_config()
    assert set(b.keys()) == set(t.keys()) and t.data.image_size == 32 and b.data.image_size == 64
    assert tiny.get_config().data.image_size == 16
    for path in ("configs/toy.py", "configs/tiny.py"):
        assert "ml_collections.ConfigDict()" not in open(f"{REPO}/{path}").read()  # deltas only


def test_out_of_range_names_each_wrong_field_and_skips_the_ones_a_config_lacks():
    config = configuration.parse(["--config=configs/toy.py", "--config.evaluate.num_samples=0",
                                  "--config.study.margin=0.0"]).config
    wrong = configuration.out_of_range(
        config, at_least={"evaluate.num_samples": 1, "evaluate.steps": 0, "evaluate.not_a_field": 5},
        above={"study.margin": 0, "study.stretch_margin": 0}, names={"evaluate.num_samples": "sweep.member_samples"})
    assert wrong == ["sweep.member_samples is 0; it must be at least 1", "study.margin is 0.0; it must be above 0"]
    assert configuration.out_of_range(config) == []


def test_the_shipped_configs_evaluation_and_study_settings_pass_their_checks():
    from configs import base, tiny, toy
    from jaxdiff.measurement import evaluation_words
    from jaxdiff.studies import arms

    for config in (base.get_config(), toy.get_config(), tiny.get_config()):
        evaluation_words.check_settings(config)
        assert configuration.out_of_range(config, arms.STUDY_AT_LEAST, arms.STUDY_ABOVE) == []


@pytest.mark.slow
def test_cli_unknown_key_is_one_line_exit_2():
    result = run_cli("jaxdiff.train", "--config=configs/tiny.py", "--config.model.channelz=3")
    assert result.returncode == 2 and "channelz" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


