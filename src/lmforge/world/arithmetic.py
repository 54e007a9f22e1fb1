"""Small arithmetic word problems with step-by-step working, in English and Chinese.

Every solution ends in a fixed sentence ("The answer is 41." / "答案是 41。") so that
evaluation code can extract the final number reliably.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

# (English plural, Chinese noun, Chinese measure word)
ITEMS = (("apples", "苹果", "个"), ("pencils", "铅笔", "支"), ("books", "书", "本"), ("stamps", "邮票", "张"),
         ("marbles", "弹珠", "颗"), ("cookies", "饼干", "块"), ("coins", "硬币", "枚"))

# (operations applied left to right, English story, Chinese story); {n} name, {x}/{y} item, {m} measure word.
SCENARIOS = (
    (("+",), "{n} has {a} {x} and buys {b} more. How many {x} does {n} have now?",
     "{n}有{a}{m}{y}，又买了{b}{m}。{n}现在有多少{m}{y}？"),
    (("+",), "A shop sold {a} {x} in the morning and {b} {x} in the afternoon. How many {x} did it sell in total?",
     "一家商店上午卖出{a}{m}{y}，下午卖出{b}{m}{y}。这一天一共卖出多少{m}{y}？"),
    (("-",), "{n} has {a} {x} and gives {b} to a friend. How many {x} does {n} have left?",
     "{n}有{a}{m}{y}，送给朋友{b}{m}。{n}还剩多少{m}{y}？"),
    (("-",), "There are {a} {x} in a box. {n} takes out {b}. How many {x} remain in the box?",
     "盒子里有{a}{m}{y}，{n}拿走了{b}{m}。盒子里还剩多少{m}{y}？"),
    (("*",), "{n} has {a} bags with {b} {x} in each bag. How many {x} does {n} have?",
     "{n}有{a}个袋子，每个袋子里有{b}{m}{y}。{n}一共有多少{m}{y}？"),
    (("*", "+"), "{n} buys {a} packs of {b} {x} and already had {c}. How many {x} does {n} have now?",
     "{n}买了{a}包{y}，每包{b}{m}，原来还有{c}{m}。{n}现在有多少{m}{y}？"),
    (("*", "-"), "{n} has {a} boxes with {b} {x} each and gives away {c}. How many {x} are left?",
     "{n}有{a}个盒子，每个盒子装{b}{m}{y}，送出了{c}{m}。还剩多少{m}{y}？"),
    (("+", "-"), "{n} has {a} {x}, gets {b} more, then loses {c}. How many {x} does {n} have now?",
     "{n}有{a}{m}{y}，又得到{b}{m}，后来丢了{c}{m}。{n}现在有多少{m}{y}？"),
    (("+", "+"), "{n} collects {a} {x} on Monday, {b} on Tuesday and {c} on Wednesday. How many {x} does {n} collect in total?",
     "{n}周一收集了{a}{m}{y}，周二收集了{b}{m}，周三收集了{c}{m}。{n}一共收集了多少{m}{y}？"),
    (("-", "-"), "{n} has {a} {x}, gives {b} to a friend and {c} to a neighbour. How many {x} are left?",
     "{n}有{a}{m}{y}，送给朋友{b}{m}，又送给邻居{c}{m}。还剩多少{m}{y}？"),
)

SHOWN_OP = {"+": "+", "-": "-", "*": "×"}
FINAL_SENTENCE = {"en": "The answer is {r}.", "zh": "答案是 {r}。"}
_APPLY = {"+": lambda x, y: x + y, "-": lambda x, y: x - y, "*": lambda x, y: x * y}


@dataclass(frozen=True)
class Problem:
    id: str
    lang: str
    question: str
    working: str
    answer: int
    expression: str  # Python-evaluable, e.g. "(3 * 8) - 5"


def make_problems(rng: random.Random, count: int, names: list[str], prefix: str,
                  avoid: frozenset[str] = frozenset()) -> list[Problem]:
    """`count` problems (~60% English) whose question texts are all new, also w.r.t. `avoid`."""
    problems: list[Problem] = []
    seen = set(avoid)
    while len(problems) < count:
        lang = "en" if rng.random() < 0.6 else "zh"
        problem = _problem(rng, lang, rng.choice(names), f"{prefix}-{len(problems) + 1:04d}")
        if problem.question not in seen:
            seen.add(problem.question)
            problems.append(problem)
    return problems


def _problem(rng: random.Random, lang: str, name: str, problem_id: str) -> Problem:
    ops, english, chinese = rng.choice(SCENARIOS)
    numbers = [_first_operand(rng, ops[0])]
    results = []
    for op in ops:
        left = results[-1] if results else numbers[0]
        numbers.append(_operand(rng, op, left))
        results.append(_APPLY[op](left, numbers[-1]))
    x, y, m = rng.choice(ITEMS)
    slots = dict(zip("abc", numbers), n=name, x=x, y=y, m=m)
    question = (english if lang == "en" else chinese).format(**slots)
    return Problem(problem_id, lang, question, _working(lang, ops, numbers, results), results[-1],
                   _expression(ops, numbers))


def _first_operand(rng: random.Random, op: str) -> int:
    """Large enough to subtract from, small enough to multiply in one's head."""
    if op == "-":
        return rng.randint(10, 80)
    if op == "*":
        return rng.randint(2, 9)
    return rng.randint(2, 60)


def _operand(rng: random.Random, op: str, left: int) -> int:
    """A small right-hand operand that keeps every intermediate result positive."""
    if op == "-":
        return rng.randint(1, max(1, left * 2 // 3))
    if op == "*":
        return rng.randint(2, 12)
    return rng.randint(1, 40)


def _working(lang: str, ops, numbers, results) -> str:
    steps, left = [], numbers[0]
    for op, right, result in zip(ops, numbers[1:], results):
        steps.append(f"{left} {SHOWN_OP[op]} {right} = {result}")
        left = result
    final = FINAL_SENTENCE[lang].format(r=results[-1])
    if len(steps) == 1:
        return f"{steps[0]}{'. ' if lang == 'en' else '。'}{final}"
    if lang == "en":
        return f"First, {steps[0]}. Then, {steps[1]}. {final}"
    return f"先算 {steps[0]}，再算 {steps[1]}。{final}"


def _expression(ops, numbers) -> str:
    text = str(numbers[0])
    for step, (op, right) in enumerate(zip(ops, numbers[1:])):
        text = f"({text}) {op} {right}" if step else f"{text} {op} {right}"
    return text
