import sys
import types

import pytest

from lmforge.rewards import (
    BUILTIN_REWARDS,
    RewardSet,
    exact_match,
    extract_answer,
    resolve_reward,
)

CHINESE_WORKING = "先算 6 × 7 = 42，再算 42 + 23 = 65。答案是 65。"


def score(name, completions, options=None, **columns):
    prompts = [[{"role": "user", "content": "q"}] for _ in completions]
    return resolve_reward(name, options or {})(prompts, completions, **columns)


# ---------------------------------------------------------------- exact_match


def test_gsm8k_marker_takes_the_number_after_the_first_one_as_lm_eval_does():
    completions = ["6 * 7 = 42\n#### 42", "#### 41 wait, recount. #### 42", "#### 42\nCheck: 40 + 2 = 42, not 43"]
    assert exact_match([], completions, answer=["42"] * 3) == [1.0, 0.0, 1.0]
    assert exact_match([], ["#### 41 wait, recount. #### 42"], answer=["41"]) == [1.0]


def test_final_number_of_an_english_and_a_chinese_working():
    english = "She has 58 - 23 = 35 balls, then 35 - 2 = 33. The answer is 33."
    assert exact_match([], [english, english], answer=["33", "35"]) == [1.0, 0.0]
    assert exact_match([], [CHINESE_WORKING, CHINESE_WORKING], answer=["65", "64"]) == [1.0, 0.0]


def test_thousands_commas_and_numeric_equality():
    completions = ["The total is 1,234 dollars.", "#### 1234", "So it costs 65.0 yuan.", "It is 65.5."]
    assert exact_match([], completions, answer=["1234", "1,234", "65", "65"]) == [1.0, 1.0, 1.0, 0.0]


def test_negative_answers():
    assert extract_answer("it falls by -4", "6") == "-4"
    assert exact_match([], ["The change is -5."], answer=["-5"]) == [1.0]


def test_no_number_scores_zero_and_a_missing_gold_cannot_be_judged():
    assert exact_match([], ["I do not know.", "#### 3"], answer=["3", None]) == [0.0, None]


def test_fact_answers_compare_the_whole_text_ignoring_case():
    completions = ["kunpak.", "KUNPAK", "Kunpak is the city", "Textiles", "纺织品。"]
    answers = ["Kunpak", "Kunpak", "Kunpak", "textiles", "纺织品"]
    assert exact_match([], completions, answer=answers) == [1.0, 1.0, 0.0, 1.0, 1.0]


def test_exact_match_without_an_answer_column_names_it():
    with pytest.raises(ValueError, match="'answer' column.*columns: kind"):
        exact_match([], ["42"], kind=["math"])


# ---------------------------------------------------------------- format, length, repetition


def test_format_pattern_is_searched():
    assert score("format", ["so \\boxed{42}", "42", "\\boxed{}"], {"pattern": r"\\boxed\{.+\}"}) == [1.0, 0.0, 0.0]


def test_format_json_accepts_fenced_json():
    completions = ['{"city": "Kunpak"}', '```json\n{"city": "Kunpak"}\n```', "{city: Kunpak}"]
    assert score("format", completions, {"json": True}) == [1.0, 1.0, 0.0]


@pytest.mark.parametrize("options", [{}, {"pattern": "x", "json": True}, {"json": False}])
def test_format_needs_exactly_one_option(options):
    with pytest.raises(ValueError, match="exactly one of the options 'pattern'"):
        resolve_reward("format", options)


def test_format_rejects_an_invalid_regex_when_built():
    with pytest.raises(ValueError, match="invalid regex pattern '\\(ab'"):
        resolve_reward("format", {"pattern": "(ab"})


def test_length_penalty_is_linear_between_max_chars_and_twice_that():
    completions = ["a" * 10, "a" * 15, "a" * 20, "a" * 30, "a" * 3]
    assert score("length_penalty", completions, {"max_chars": 10}) == [0.0, -0.5, -1.0, -1.0, 0.0]


def test_length_penalty_counts_chinese_characters_and_defaults_to_200():
    assert score("length_penalty", ["答" * 15], {"max_chars": 10}) == [-0.5]
    assert score("length_penalty", ["a" * 200, "a" * 300]) == [0.0, -0.5]


def test_length_penalty_rejects_a_non_positive_limit():
    with pytest.raises(ValueError, match="'max_chars' must be a positive integer, got 0"):
        resolve_reward("length_penalty", {"max_chars": 0})


def test_repetition_penalty_punishes_a_loop_only():
    # 9 words give 7 trigrams, of which 3 are distinct: 4/7 repeat an earlier one.
    looping, plain = "a b c a b c a b c", "the cat sat on the mat"
    assert score("repetition_penalty", [looping, plain]) == pytest.approx([-4 / 7, 0.0])
    assert score("repetition_penalty", [looping], {"n": 1}) == pytest.approx([-6 / 9])


# ---------------------------------------------------------------- resolving names and options


def test_builtins_are_listed():
    assert set(BUILTIN_REWARDS) == {"exact_match", "format", "length_penalty", "repetition_penalty", "reward_model"}


def test_a_typo_suggests_the_builtin():
    with pytest.raises(ValueError, match="unknown reward 'exct_match'; did you mean 'exact_match'\\? built-ins: "):
        resolve_reward("exct_match", {})


def test_an_unknown_option_names_the_allowed_ones():
    with pytest.raises(ValueError, match="'length_penalty' has no option 'max_char' \\(allowed: max_chars\\)"):
        resolve_reward("length_penalty", {"max_char": 10})
    with pytest.raises(ValueError, match="'exact_match' has no option 'strict' \\(allowed: none\\)"):
        resolve_reward("exact_match", {"strict": True})


def test_a_missing_required_option_is_named():
    with pytest.raises(ValueError, match="'reward_model' needs the option 'path'"):
        resolve_reward("reward_model", {})


USER_REWARDS = '''
def brevity(prompts, completions, limit=5, **columns):
    return [1.0 if len(text) <= limit else 0.0 for text in completions]


def kind_bonus(prompts, completions, kind, **columns):
    return [2.0 if k == "math" else 0.0 for k in kind]
'''


def test_a_user_function_from_a_file_with_bound_options(tmp_path):
    file = tmp_path / "my_rewards.py"
    file.write_text(USER_REWARDS)
    completions = ["abc", "abcdef"]
    assert score(f"{file}:brevity", completions) == [1.0, 0.0]
    assert score(f"{file}:brevity", completions, {"limit": 2}) == [0.0, 0.0]
    assert score(f"{file}:brevity", completions, {"limit": 6}) == [1.0, 1.0]


def test_a_reward_file_may_define_dataclasses_under_postponed_annotations(tmp_path):
    file = tmp_path / "typed_rewards.py"
    file.write_text("from __future__ import annotations\nfrom dataclasses import dataclass\n\n\n@dataclass\n"
                    "class Limit:\n    chars: int\n\n\ndef short(prompts, completions, **columns):\n"
                    "    return [float(len(c) <= Limit(3).chars) for c in completions]\n")
    assert score(f"{file}:short", ["abc", "abcd"]) == [1.0, 0.0]


def test_a_user_function_from_a_package_module_gets_the_columns(tmp_path, monkeypatch):
    package = tmp_path / "lmforge_test_user_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "scoring.py").write_text(USER_REWARDS)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert score("lmforge_test_user_pkg.scoring:kind_bonus", ["x", "y"], kind=["math", "fact"]) == [2.0, 0.0]


def test_missing_user_module_file_and_function_are_named(tmp_path):
    with pytest.raises(ValueError, match="module 'no_such_reward_pkg' cannot be imported"):
        resolve_reward("no_such_reward_pkg:fn", {})
    with pytest.raises(ValueError, match="reward file not found: .*absent.py"):
        resolve_reward(f"{tmp_path / 'absent.py'}:fn", {})
    file = tmp_path / "my_rewards.py"
    file.write_text(USER_REWARDS)
    with pytest.raises(ValueError, match="has no function 'missing'"):
        resolve_reward(f"{file}:missing", {})


# ---------------------------------------------------------------- RewardSet


def test_reward_set_weights_the_total_and_logs_each_mean():
    rewards = RewardSet.build([("exact_match", 2.0, {}), ("length_penalty", 0.5, {"max_chars": 10})])
    completions = ["#### 42", "I think #### 41"]  # 7 and 15 characters
    totals, means = rewards([[], []], completions, answer=["42", "42"])
    assert rewards.names == ["exact_match", "length_penalty"]
    assert totals == [2.0, -0.25]
    assert means == {"reward/exact_match": 0.5, "reward/length_penalty": -0.25}


def test_reward_set_counts_none_as_zero_and_keeps_repeated_names_apart(tmp_path):
    file = tmp_path / "my_rewards.py"
    file.write_text(USER_REWARDS)
    rewards = RewardSet.build([
        ("exact_match", 1.0, {}),
        ("format", 1.0, {"pattern": "^#"}),
        ("format", 3.0, {"pattern": "3$"}),
        (f"{file}:brevity", -1.0, {"limit": 3}),
    ])
    totals, means = rewards([[], []], ["#### 3", "#### 4"], answer=[None, "3"])
    assert rewards.names == ["exact_match", "format", "format_2", "brevity"]
    assert totals == [1.0 + 3.0, 1.0]
    assert means == {"reward/exact_match": 0.0, "reward/format": 1.0, "reward/format_2": 0.5, "reward/brevity": 0.0}


def test_reward_set_rejects_a_wrong_number_of_values():
    rewards = RewardSet([("short", 1.0, lambda prompts, completions, **columns: [1.0])])
    with pytest.raises(ValueError, match="reward 'short' returned 1 values for 2 completions"):
        rewards([[], []], ["a", "b"])


# ---------------------------------------------------------------- reward_model


class FakeScorer:
    built: list[str] = []

    def __init__(self, path: str):
        FakeScorer.built.append(path)

    def score(self, prompts, completions):
        return [len(prompt) + len(text) / 10 for prompt, text in zip(prompts, completions)]


def test_reward_model_loads_its_scorer_once_on_first_use(monkeypatch):
    monkeypatch.setitem(sys.modules, "lmforge.score", types.SimpleNamespace(RewardScorer=FakeScorer))
    monkeypatch.setattr(FakeScorer, "built", [])
    reward = resolve_reward("reward_model", {"path": "runs/rm/final"})
    assert FakeScorer.built == []
    system, user = {"role": "system", "content": "s"}, {"role": "user", "content": "q"}
    prompts = [[user], [system, user]]
    assert reward(prompts, ["abcde", "ab"], answer=["x", "y"]) == [1.5, 2.2]
    assert reward(prompts, ["a", "b"]) == [1.1, 2.1]
    assert FakeScorer.built == ["runs/rm/final"]
