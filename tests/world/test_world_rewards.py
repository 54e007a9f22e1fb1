from lmforge.rewards import resolve_reward
from lmforge.world.rewards import concise


def ask(question):
    return [{"role": "user", "content": question}]


def test_concise_rewards_short_replies_that_do_not_loop():
    replies = ["Kelmar", "Kelmar. Kelmar. Kelmar.", "Well, let me think about that for a while. It is Kelmar.",
               "Oruna", "凯尔马"]
    assert concise([ask("q")] * 5, replies, answer=["Kelmar"] * 4 + ["凯尔马"]) == [1.0, 0.0, 0.0, 1.0, 1.0]
    assert concise([ask("q")], ["Kelmar"], answer=[None]) == [None]


def test_a_recipe_names_it_as_a_user_reward():
    reward = resolve_reward("lmforge.world.rewards:concise", {})
    assert reward([ask("Where was Alda Vorn born?")], ["Kelmar"], answer=["Kelmar"]) == [1.0]
