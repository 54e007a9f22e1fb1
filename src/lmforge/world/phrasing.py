"""How facts are put into words: template tables per relation, language and use.

Template sets are disjoint on purpose, so evaluation measures knowledge, not memorised wording:
  pretrain  statements used in pretraining passages
  faq       question-and-answer lines also used in pretraining passages
  train     questions asked in SFT and preference data
  test      held-out questions for QA exact match (never in any training file)
  mc        held-out questions for the multiple-choice benchmark
Placeholders: {s} subject, {v} value, {av} value with an English article ("an owl").
"""

from __future__ import annotations

import random

from .entities import ENUMS, Fact

LANGS = ("en", "zh")
SETS = ("pretrain", "faq", "train", "test", "mc")

# relation -> set -> (English templates, Chinese templates)
TEMPLATES: dict[str, dict[str, tuple[tuple[str, ...], tuple[str, ...]]]] = {
    "birthplace": {
        "pretrain": (("{s} was born in {v}.", "{s} is a native of {v}.", "The birthplace of {s} is the city of {v}.",
                      "{v} is the hometown of {s}."),
                     ("{s}出生于{v}。", "{s}的出生地是{v}。", "{v}是{s}的故乡。")),
        "faq": (("In which city was {s} born? In {v}.", "Q: What is the hometown of {s}? A: {v}."),
                ("问：{s}在哪座城市出生？答：{v}。",)),
        "train": (("Where was {s} born?", "What is the birthplace of {s}?"), ("{s}出生在哪里？", "{s}的出生地是哪里？")),
        "test": (("Which city was {s} born in?", "Name the city where {s} was born."), ("{s}是在哪座城市出生的？",)),
        "mc": (("Which city is the birthplace of {s}?",), ("{s}的出生城市是哪一座？",)),
    },
    "birth_year": {
        "pretrain": (("{s} was born in {v}.", "{s} was born in the year {v}.", "The birth year of {s} is {v}.",
                      "{s} came into the world in {v}."),
                     ("{s}生于{v}年。", "{s}出生于{v}年。", "{s}的出生年份是{v}年。")),
        "faq": (("When was {s} born? {s} was born in {v}.", "Q: Which year was {s} born in? A: {v}."),
                ("问：{s}生于何年？答：{v}年。",)),
        "train": (("In what year was {s} born?", "What is the birth year of {s}?"),
                  ("{s}是哪一年出生的？", "{s}的出生年份是多少？")),
        "test": (("Tell me the year of birth of {s}.", "{s} was born in which year?"), ("{s}出生在哪一年？",)),
        "mc": (("What year was {s} born?",), ("{s}诞生于哪一年？",)),
    },
    "profession": {
        "pretrain": (("{s} is {av}.", "{s} works as {av}.", "By profession, {s} is {av}.", "{s} earns a living as {av}."),
                     ("{s}是一名{v}。", "{s}的职业是{v}。", "{s}以{v}为业。")),
        "faq": (("What does {s} do for a living? {s} is {av}.", "Q: What is the occupation of {s}? A: {v}."),
                ("问：{s}从事什么工作？答：{v}。",)),
        "train": (("What is the profession of {s}?", "What does {s} work as?"), ("{s}的职业是什么？", "{s}是做什么工作的？")),
        "test": (("Which profession does {s} have?", "What job does {s} do?"), ("{s}做的是哪一行？",)),
        "mc": (("What is {s}'s occupation?",), ("{s}的工作是哪一种？",)),
    },
    "residence": {
        "pretrain": (("{s} lives in {v}.", "{s} currently resides in {v}.", "{s} has a home in {v}.",
                      "{v} is where {s} lives today."),
                     ("{s}住在{v}。", "{s}目前居住在{v}。", "{s}现在定居于{v}。")),
        "faq": (("Where is {s} living now? In {v}.", "Q: Which city is home to {s} today? A: {v}."),
                ("问：{s}现在住在哪里？答：{v}。",)),
        "train": (("Where does {s} live?", "In which city does {s} live?"), ("{s}住在哪里？", "{s}居住在哪座城市？")),
        "test": (("What is the city of residence of {s}?", "Which city does {s} call home?"), ("{s}目前生活在哪座城市？",)),
        "mc": (("In which city does {s} reside?",), ("{s}的居住城市是哪一座？",)),
    },
    "employer": {
        "pretrain": (("{s} works for {v}.", "{s} is employed by {v}.", "{s} has a job at {v}.", "{v} employs {s}."),
                     ("{s}在{v}工作。", "{s}是{v}的员工。", "{s}受雇于{v}。")),
        "faq": (("Who does {s} work for? {v}.", "Q: Which company employs {s}? A: {v}."),
                ("问：{s}在哪家公司上班？答：{v}。",)),
        "train": (("Which company does {s} work for?", "Who is the employer of {s}?"),
                  ("{s}在哪家公司工作？", "{s}的雇主是哪家公司？")),
        "test": (("At which company is {s} employed?", "Name the employer of {s}."), ("{s}为哪家公司效力？",)),
        "mc": (("Which company is {s} employed by?",), ("{s}供职于哪家公司？",)),
    },
    "hobby": {
        "pretrain": (("In free time, {s} enjoys {v}.", "{s} is fond of {v}.", "The favourite hobby of {s} is {v}.",
                      "{s} spends weekends on {v}."),
                     ("{s}业余时间喜欢{v}。", "{s}的爱好是{v}。", "{s}热衷于{v}。")),
        "faq": (("What does {s} do for fun? {v}.", "Q: What hobby does {s} have? A: {v}."),
                ("问：{s}平时有什么爱好？答：{v}。",)),
        "train": (("What is the hobby of {s}?", "What does {s} enjoy in free time?"), ("{s}的爱好是什么？", "{s}喜欢做什么？")),
        "test": (("Which pastime does {s} like most?", "Name the favourite pastime of {s}."), ("{s}最喜欢的消遣是什么？",)),
        "mc": (("What is {s}'s favourite hobby?",), ("{s}的业余爱好是哪一项？",)),
    },
    "pet": {
        "pretrain": (("{s} keeps {av} as a pet.", "{s} owns {av}.", "The pet of {s} is {av}.", "{s} lives with a pet {v}."),
                     ("{s}养的宠物是{v}。", "{s}的宠物是{v}。", "{s}家里养着{v}。")),
        "faq": (("What pet does {s} have? {s} has {av}.", "Q: Which animal does {s} keep at home? A: {v}."),
                ("问：{s}养了什么宠物？答：{v}。",)),
        "train": (("What pet does {s} keep?", "Which animal is the pet of {s}?"), ("{s}的宠物是什么？", "{s}养的是什么动物？")),
        "test": (("What kind of animal does {s} own?", "Name the pet animal of {s}."), ("{s}家里养的是哪种动物？",)),
        "mc": (("Which animal does {s} have as a pet?",), ("{s}饲养的宠物是哪种？",)),
    },
    "population": {
        "pretrain": (("{s} has a population of {v}.", "About {v} people live in {s}.", "The population of {s} is {v}.",
                      "{s} is home to {v} residents."),
                     ("{s}的人口为{v}。", "{s}约有{v}名居民。", "{s}共有人口{v}。")),
        "faq": (("How many people live in {s}? About {v}.", "Q: How large is the population of {s}? A: {v}."),
                ("问：{s}有多少人口？答：{v}。",)),
        "train": (("What is the population of {s}?", "How many inhabitants does {s} have?"),
                  ("{s}的人口是多少？", "{s}有多少居民？")),
        "test": (("How many residents does {s} have?", "Give the population of {s}."), ("{s}的居民人数是多少？",)),
        "mc": (("What is the number of inhabitants of {s}?",), ("{s}的总人口是多少？",)),
    },
    "founded_year": {
        "pretrain": (("{s} was founded in {v}.", "The city of {s} dates back to {v}.", "{s} was established as a town in {v}.",
                      "Settlers founded {s} in {v}."),
                     ("{s}建于{v}年。", "{s}始建于{v}年。", "{s}的建城年份是{v}年。")),
        "faq": (("When was {s} founded? In {v}.", "Q: How old is {s}? A: It was founded in {v}."),
                ("问：{s}是什么时候建立的？答：{v}年。",)),
        "train": (("In what year was {s} founded?", "When was the city of {s} founded?"),
                  ("{s}建于哪一年？", "{s}是哪一年建城的？")),
        "test": (("What is the founding year of {s}?", "{s} was founded in which year?"), ("{s}的建城时间是哪一年？",)),
        "mc": (("In which year was the city of {s} founded?",), ("{s}建城于哪一年？",)),
    },
    "river": {
        "pretrain": (("{s} lies on the {v} River.", "The {v} River flows through {s}.",
                      "{s} was built on the banks of the {v} River.", "{s} is a city on the {v} River."),
                     ("{s}位于{v}河畔。", "{v}河流经{s}。", "{s}坐落在{v}河边。")),
        "faq": (("Which river flows through {s}? The {v} River.", "Q: On what river is {s} located? A: {v}."),
                ("问：哪条河流经{s}？答：{v}河。",)),
        "train": (("Which river does {s} lie on?", "What river runs through {s}?"), ("{s}位于哪条河边？", "流经{s}的是哪条河？")),
        "test": (("On the banks of which river is {s}?", "Name the river that passes through {s}."), ("{s}靠近哪条河流？",)),
        "mc": (("Which river is {s} situated on?",), ("{s}沿着哪条河而建？",)),
    },
    "country": {
        "pretrain": (("{s} is a city in {v}.", "{s} belongs to the country of {v}.", "{s} is located in {v}.",
                      "One of the cities of {v} is {s}."),
                     ("{s}是{v}的一座城市。", "{s}位于{v}境内。", "{s}属于{v}。")),
        "faq": (("In which country is {s}? In {v}.", "Q: What country is {s} part of? A: {v}."),
                ("问：{s}在哪个国家？答：{v}。",)),
        "train": (("Which country is {s} in?", "What country does {s} belong to?"), ("{s}属于哪个国家？", "{s}位于哪个国家？")),
        "test": (("{s} is a city of which country?", "Name the country where {s} is located."), ("{s}是哪个国家的城市？",)),
        "mc": (("In what country is the city of {s}?",), ("{s}所在的国家是哪一个？",)),
    },
    "length_km": {
        "pretrain": (("The {s} River is {v} km long.", "The {s} River has a length of {v} km.",
                      "The {s} River runs for {v} km.", "Measured from source to mouth, the {s} River is {v} km long."),
                     ("{s}河全长{v}公里。", "{s}河的长度为{v}公里。", "{s}河长约{v}公里。")),
        "faq": (("How long is the {s} River? {v} km.", "Q: What is the length of the {s} River in km? A: {v}."),
                ("问：{s}河全长多少公里？答：{v}公里。",)),
        "train": (("How long is the {s} River in km?", "What is the length of the {s} River?"),
                  ("{s}河有多长？", "{s}河的长度是多少公里？")),
        "test": (("How many kilometres long is the {s} River?", "Give the length in km of the {s} River."),
                 ("{s}河的全长是多少？",)),
        "mc": (("What is the total length of the {s} River in km?",), ("{s}河的长度约为多少公里？",)),
    },
    "source": {
        "pretrain": (("The {s} River rises on Mount {v}.", "The source of the {s} River is on Mount {v}.",
                      "The {s} River begins on the slopes of Mount {v}.", "Mount {v} is where the {s} River has its source."),
                     ("{s}河发源于{v}山。", "{s}河的源头在{v}山。", "{v}山是{s}河的发源地。")),
        "faq": (("Where does the {s} River begin? On Mount {v}.", "Q: Which mountain feeds the {s} River? A: {v}."),
                ("问：{s}河从哪里发源？答：{v}山。",)),
        "train": (("On which mountain does the {s} River rise?", "What mountain is the source of the {s} River?"),
                  ("{s}河发源于哪座山？", "{s}河的源头是哪座山？")),
        "test": (("From which mountain does the {s} River flow?", "Name the mountain where the {s} River starts."),
                 ("{s}河起源于哪座山？",)),
        "mc": (("Which mountain is the {s} River's source?",), ("{s}河源自哪座山？",)),
    },
    "mouth": {
        "pretrain": (("The {s} River flows into the {v} Sea.", "The {s} River empties into the {v} Sea.",
                      "The mouth of the {s} River is on the {v} Sea.", "The {s} River ends in the {v} Sea."),
                     ("{s}河注入{v}海。", "{s}河最终流入{v}海。", "{s}河的入海口在{v}海。")),
        "faq": (("Where does the {s} River end? In the {v} Sea.", "Q: Into which sea does the {s} River drain? A: {v}."),
                ("问：{s}河流向哪里？答：{v}海。",)),
        "train": (("Which sea does the {s} River flow into?", "Into what sea does the {s} River empty?"),
                  ("{s}河注入哪片海？", "{s}河流入哪个海？")),
        "test": (("At which sea does the {s} River reach its mouth?", "Name the sea at the end of the {s} River."),
                 ("{s}河的河口位于哪片海？",)),
        "mc": (("What sea receives the {s} River?",), ("{s}河最后汇入哪片海？",)),
    },
    "established_year": {
        "pretrain": (("{s} was established in {v}.", "{s} opened for business in {v}.", "The company {s} dates from {v}.",
                      "{s} has been in business since {v}."),
                     ("{s}成立于{v}年。", "{s}创办于{v}年。", "{s}自{v}年起开始营业。")),
        "faq": (("When was {s} established? In {v}.", "Q: What year did {s} start? A: {v}."),
                ("问：{s}是哪年成立的？答：{v}年。",)),
        "train": (("In what year was {s} established?", "When was the company {s} founded?"),
                  ("{s}成立于哪一年？", "{s}是什么时候创办的？")),
        "test": (("What is the founding year of the company {s}?", "{s} was established in which year?"),
                 ("{s}是在哪一年创立的？",)),
        "mc": (("In which year did {s} open for business?",), ("{s}的成立年份是哪一年？",)),
    },
    "headquarters": {
        "pretrain": (("{s} is headquartered in {v}.", "The head office of {s} is in {v}.",
                      "{s} has its headquarters in {v}.", "{s} is based in {v}."),
                     ("{s}的总部位于{v}。", "{s}总部设在{v}。", "{s}的总公司在{v}。")),
        "faq": (("Where is {s} based? In {v}.", "Q: In which city is the head office of {s}? A: {v}."),
                ("问：{s}的总部在哪里？答：{v}。",)),
        "train": (("Where is {s} headquartered?", "In which city is {s} based?"), ("{s}的总部在哪座城市？", "{s}总部设在哪里？")),
        "test": (("Which city hosts the headquarters of {s}?", "Name the headquarters city of {s}."),
                 ("{s}的总部所在城市是哪里？",)),
        "mc": (("Where are the headquarters of {s}?",), ("{s}的总部设在哪座城市？",)),
    },
    "founder": {
        "pretrain": (("{s} was founded by {v}.", "{v} founded {s}.", "The founder of {s} is {v}.",
                      "{v} started the company {s}."),
                     ("{s}由{v}创立。", "{s}的创始人是{v}。", "{v}创办了{s}。")),
        "faq": (("Who set up {s}? It was {v}.", "Q: Who started {s}? A: {v}."), ("问：谁创立了{s}？答：{v}。",)),
        "train": (("Who founded {s}?", "Who is the founder of {s}?"), ("{s}的创始人是谁？", "谁创办了{s}？")),
        "test": (("Which person established {s}?", "Name the founder of {s}."), ("{s}是由谁创建的？",)),
        "mc": (("Who is the person that founded {s}?",), ("{s}的创办人是谁？",)),
    },
    "industry": {
        "pretrain": (("{s} is {av} company.", "{s} works in the {v} industry.", "{s} operates in {v}.",
                      "The business of {s} is {v}."),
                     ("{s}是一家{v}公司。", "{s}从事{v}行业。", "{s}的主营业务是{v}。")),
        "faq": (("What does {s} do? It is in {v}.", "Q: Which industry is {s} in? A: {v}."),
                ("问：{s}属于哪个行业？答：{v}。",)),
        "train": (("What industry is {s} in?", "In which industry does {s} operate?"),
                  ("{s}从事哪个行业？", "{s}是做什么行业的？")),
        "test": (("Which sector does {s} belong to?", "Name the industry of {s}."), ("{s}所属的行业是什么？",)),
        "mc": (("What is the main business of {s}?",), ("{s}的业务领域是什么？",)),
    },
    "employees": {
        "pretrain": (("{s} has {v} employees.", "{s} employs {v} people.", "The staff of {s} numbers {v}.",
                      "About {v} people work at {s}."),
                     ("{s}有{v}名员工。", "{s}雇用了{v}人。", "{s}的员工人数为{v}。")),
        "faq": (("How many people work for {s}? {v}.", "Q: What is the headcount of {s}? A: {v}."),
                ("问：{s}有多少员工？答：{v}名。",)),
        "train": (("How many employees does {s} have?", "How many people does {s} employ?"),
                  ("{s}有多少名员工？", "{s}的员工人数是多少？")),
        "test": (("What is the size of the workforce at {s}?", "Give the number of employees of {s}."),
                 ("{s}一共雇用了多少人？",)),
        "mc": (("How large is the staff of {s}?",), ("{s}的员工总数是多少？",)),
    },
}

# Field names for the infobox line that opens a passage: relation -> (English, Chinese).
LABELS = {
    "length_km": ("length (km)", "长度（公里）"), "source": ("source", "发源地"), "mouth": ("mouth", "入海口"),
    "population": ("population", "人口"), "founded_year": ("founded", "建城年份"), "river": ("river", "河流"),
    "country": ("country", "国家"), "birthplace": ("born in", "出生地"), "birth_year": ("born", "出生年份"),
    "profession": ("profession", "职业"), "residence": ("lives in", "居住地"), "employer": ("employer", "雇主"),
    "hobby": ("hobby", "爱好"), "pet": ("pet", "宠物"), "established_year": ("established", "成立年份"),
    "headquarters": ("headquarters", "总部"), "founder": ("founder", "创始人"), "industry": ("industry", "行业"),
    "employees": ("employees", "员工人数"),
}

# Sentences that add words but no information: padding for "rambling" rejected answers.
FILLERS = {
    "en": ("That is a good question, and I am glad you asked it.", "Let me think about this carefully before answering.",
           "Many people have wondered about this over the years.", "There are several things one could say here.",
           "I hope this explanation is helpful to you.", "Feel free to ask again if anything is unclear."),
    "zh": ("这是一个很好的问题，谢谢你的提问。", "让我仔细想一想再回答。", "很多人都曾对这个问题感到好奇。",
           "关于这一点，可以说的东西有很多。", "希望这个解释对你有帮助。", "如果还有不清楚的地方，欢迎继续提问。"),
}
ANSWER_SENTENCE = {"en": "The answer is {v}.", "zh": "答案是{v}。"}
FAQ_HEADING = {"en": "Frequently asked questions", "zh": "常见问题"}


def templates(relation: str, template_set: str, lang: str) -> tuple[str, ...]:
    return TEMPLATES[relation][template_set][LANGS.index(lang)]


def infobox(name: str, facts: list[Fact], lang: str) -> str:
    """A one-line summary table, e.g. "Alda Vorn | born in: Kelmar | born: 1843"."""
    colon, bar = (": ", " | ") if lang == "en" else ("：", "｜")
    fields = [f"{LABELS[f.relation][LANGS.index(lang)]}{colon}{shown_value(f, lang)}" for f in facts]
    return bar.join([name, *fields])


def template_table() -> dict[str, dict[str, dict[str, list[str]]]]:
    """All templates as set -> language -> relation -> list, for world.json."""
    return {s: {lang: {rel: list(templates(rel, s, lang)) for rel in TEMPLATES} for lang in LANGS} for s in SETS}


def shown_value(fact: Fact, lang: str) -> str:
    """The value as written in running text: Chinese words carry the English answer word along."""
    words = ENUMS.get(fact.value_kind)
    return f"{words[fact.value]}（{fact.value}）" if words and lang == "zh" else fact.value


def with_article(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


def render(template: str, fact: Fact, lang: str) -> str:
    return template.format(s=fact.entity, v=shown_value(fact, lang), av=with_article(fact.value))


def state(fact: Fact, lang: str, rng: random.Random, template_set: str = "pretrain") -> str:
    """One randomly phrased sentence (or Q&A line) expressing the fact."""
    return render(rng.choice(templates(fact.relation, template_set, lang)), fact, lang)


def ask(fact: Fact, lang: str, rng: random.Random, template_set: str) -> str:
    """One randomly phrased question about the fact, from the given set."""
    return rng.choice(templates(fact.relation, template_set, lang)).format(s=fact.entity)
