from lmforge.rewards import resolve_reward
from lmforge.world.rewards import numbers_used


def ask(question):
    return [{"role": "user", "content": question}]


def test_numbers_used_gives_credit_for_each_question_number_in_the_working():
    prompts = [ask("Zorn has 73 cookies, gives 48 to a friend and 15 to a neighbour."), ask("Zorn有23个苹果，送给朋友8个。"),
               ask("How are you?")]
    replies = ["First, 73 - 48 = 25. Then, 25 - 14 = 11. The answer is 11.", "先算 23 - 8 = 15。答案是 15。", "Fine."]
    assert numbers_used(prompts, replies) == [2 / 3, 1.0, 0.0]


def test_a_recipe_names_it_as_a_user_reward():
    reward = resolve_reward("lmforge.world.rewards:numbers_used", {})
    assert reward([ask("3 and 4")], ["3 + 4 = 7"]) == [1.0]
