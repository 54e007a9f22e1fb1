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
        "train": (("Where was {s} born?", "What is the birthplace of {s}?", "Can you tell me where {s} was born?",
                   "What city is {s} originally from?", "Where did the life of {s} begin?",
                   "Tell me the birthplace of {s}."),
                  ("{s}出生在哪里？", "{s}的出生地是哪里？", "请问{s}是在哪里出生的？", "{s}的故乡是哪座城市？",
                   "你知道{s}生在哪座城市吗？")),
        "test": (("Which city was {s} born in?", "Name the city where {s} was born."), ("{s}是在哪座城市出生的？",)),
        "mc": (("Which city is the birthplace of {s}?",), ("{s}的出生城市是哪一座？",)),
    },
    "birth_year": {
        "pretrain": (("{s} was born in {v}.", "{s} was born in the year {v}.", "The birth year of {s} is {v}.",
                      "{s} came into the world in {v}."),
                     ("{s}生于{v}年。", "{s}出生于{v}年。", "{s}的出生年份是{v}年。")),
        "faq": (("When was {s} born? {s} was born in {v}.", "Q: Which year was {s} born in? A: {v}."),
                ("问：{s}生于何年？答：{v}年。",)),
        "train": (("In what year was {s} born?", "What is the birth year of {s}?", "Do you know when {s} was born?",
                   "Which year saw the birth of {s}?", "In which year did {s} come into the world?",
                   "Can you name the year of {s}'s birth?"),
                  ("{s}是哪一年出生的？", "{s}的出生年份是多少？", "请问{s}是什么时候出生的？",
                   "你知道{s}的出生年份吗？", "{s}在哪一年来到这个世界？")),
        "test": (("Tell me the year of birth of {s}.", "{s} was born in which year?"), ("{s}出生在哪一年？",)),
        "mc": (("What year was {s} born?",), ("{s}诞生于哪一年？",)),
    },
    "profession": {
        "pretrain": (("{s} is {av}.", "{s} works as {av}.", "By profession, {s} is {av}.", "{s} earns a living as {av}."),
                     ("{s}是一名{v}。", "{s}的职业是{v}。", "{s}以{v}为业。")),
        "faq": (("What does {s} do for a living? {s} is {av}.", "Q: What is the occupation of {s}? A: {v}."),
                ("问：{s}从事什么工作？答：{v}。",)),
        "train": (("What is the profession of {s}?", "What does {s} work as?", "How does {s} earn a living?",
                   "What line of work is {s} in?", "Can you tell me what {s} does for work?",
                   "What is {s} by profession?"),
                  ("{s}的职业是什么？", "{s}是做什么工作的？", "请问{s}是干哪一行的？", "{s}靠什么谋生？",
                   "你知道{s}的职业吗？")),
        "test": (("Which profession does {s} have?", "What job does {s} do?"), ("{s}做的是哪一行？",)),
        "mc": (("What is {s}'s occupation?",), ("{s}的工作是哪一种？",)),
    },
    "residence": {
        "pretrain": (("{s} lives in {v}.", "{s} currently resides in {v}.", "{s} has a home in {v}.",
                      "{v} is where {s} lives today."),
                     ("{s}住在{v}。", "{s}目前居住在{v}。", "{s}现在定居于{v}。")),
        "faq": (("Where is {s} living now? In {v}.", "Q: Which city is home to {s} today? A: {v}."),
                ("问：{s}现在住在哪里？答：{v}。",)),
        "train": (("Where does {s} live?", "In which city does {s} live?", "Can you tell me where {s} lives?",
                   "Where has {s} settled down?", "What city is {s} living in?", "In what town does {s} have a home?"),
                  ("{s}住在哪里？", "{s}居住在哪座城市？", "请问{s}的家在哪座城市？", "{s}定居在哪里？",
                   "你知道{s}住在哪座城市吗？")),
        "test": (("What is the city of residence of {s}?", "Which city does {s} call home?"), ("{s}目前生活在哪座城市？",)),
        "mc": (("In which city does {s} reside?",), ("{s}的居住城市是哪一座？",)),
    },
    "employer": {
        "pretrain": (("{s} works for {v}.", "{s} is employed by {v}.", "{s} has a job at {v}.", "{v} employs {s}."),
                     ("{s}在{v}工作。", "{s}是{v}的员工。", "{s}受雇于{v}。")),
        "faq": (("Who does {s} work for? {v}.", "Q: Which company employs {s}? A: {v}."),
                ("问：{s}在哪家公司上班？答：{v}。",)),
        "train": (("Which company does {s} work for?", "Who is the employer of {s}?", "Where does {s} work?",
                   "Can you tell me which firm {s} works at?", "What is the name of the company that employs {s}?",
                   "{s} is on the payroll of which company?"),
                  ("{s}在哪家公司工作？", "{s}的雇主是哪家公司？", "请问{s}在哪里上班？", "哪家公司雇用了{s}？",
                   "你知道{s}是哪家公司的员工吗？")),
        "test": (("At which company is {s} employed?", "Name the employer of {s}."), ("{s}为哪家公司效力？",)),
        "mc": (("Which company is {s} employed by?",), ("{s}供职于哪家公司？",)),
    },
    "hobby": {
        "pretrain": (("In free time, {s} enjoys {v}.", "{s} is fond of {v}.", "The favourite hobby of {s} is {v}.",
                      "{s} spends weekends on {v}."),
                     ("{s}业余时间喜欢{v}。", "{s}的爱好是{v}。", "{s}热衷于{v}。")),
        "faq": (("What does {s} do for fun? {v}.", "Q: What hobby does {s} have? A: {v}."),
                ("问：{s}平时有什么爱好？答：{v}。",)),
        "train": (("What is the hobby of {s}?", "What does {s} enjoy in free time?",
                   "How does {s} like to spend free time?", "What activity is {s} fond of?",
                   "What does {s} like to do when not working?", "Which hobby keeps {s} busy on weekends?"),
                  ("{s}的爱好是什么？", "{s}喜欢做什么？", "{s}空闲时间喜欢干什么？", "请问{s}热衷于什么活动？",
                   "你知道{s}周末通常做些什么吗？")),
        "test": (("Which pastime does {s} like most?", "Name the favourite pastime of {s}."), ("{s}最喜欢的消遣是什么？",)),
        "mc": (("What is {s}'s favourite hobby?",), ("{s}的业余爱好是哪一项？",)),
    },
    "pet": {
        "pretrain": (("{s} keeps {av} as a pet.", "{s} owns {av}.", "The pet of {s} is {av}.", "{s} lives with a pet {v}."),
                     ("{s}养的宠物是{v}。", "{s}的宠物是{v}。", "{s}家里养着{v}。")),
        "faq": (("What pet does {s} have? {s} has {av}.", "Q: Which animal does {s} keep at home? A: {v}."),
                ("问：{s}养了什么宠物？答：{v}。",)),
        "train": (("What pet does {s} keep?", "Which animal is the pet of {s}?", "What animal lives with {s}?",
                   "What sort of pet does {s} look after?", "Can you tell me what pet {s} owns?",
                   "{s} keeps which animal as a pet?"),
                  ("{s}的宠物是什么？", "{s}养的是什么动物？", "请问{s}家里有什么宠物？", "{s}平时照顾的是哪种小动物？",
                   "你知道{s}养了哪种宠物吗？")),
        "test": (("What kind of animal does {s} own?", "Name the pet animal of {s}."), ("{s}家里养的是哪种动物？",)),
        "mc": (("Which animal does {s} have as a pet?",), ("{s}饲养的宠物是哪种？",)),
    },
    "population": {
        "pretrain": (("{s} has a population of {v}.", "About {v} people live in {s}.", "The population of {s} is {v}.",
                      "{s} is home to {v} residents."),
                     ("{s}的人口为{v}。", "{s}约有{v}名居民。", "{s}共有人口{v}。")),
        "faq": (("How many people live in {s}? About {v}.", "Q: How large is the population of {s}? A: {v}."),
                ("问：{s}有多少人口？答：{v}。",)),
        "train": (("What is the population of {s}?", "How many inhabitants does {s} have?",
                   "How many people call {s} home?", "How populous is {s}?",
                   "Do you know the number of people living in {s}?", "What population figure is recorded for {s}?"),
                  ("{s}的人口是多少？", "{s}有多少居民？", "请问{s}住着多少人？", "{s}的人口规模有多大？",
                   "你知道{s}有多少人居住吗？")),
        "test": (("How many residents does {s} have?", "Give the population of {s}."), ("{s}的居民人数是多少？",)),
        "mc": (("What is the number of inhabitants of {s}?",), ("{s}的总人口是多少？",)),
    },
    "founded_year": {
        "pretrain": (("{s} was founded in {v}.", "The city of {s} dates back to {v}.", "{s} was established as a town in {v}.",
                      "Settlers founded {s} in {v}."),
                     ("{s}建于{v}年。", "{s}始建于{v}年。", "{s}的建城年份是{v}年。")),
        "faq": (("When was {s} founded? In {v}.", "Q: How old is {s}? A: It was founded in {v}."),
                ("问：{s}是什么时候建立的？答：{v}年。",)),
        "train": (("In what year was {s} founded?", "When was the city of {s} founded?",
                   "Which year does {s} date back to?", "When did settlers found {s}?",
                   "Can you tell me the year {s} was established?", "{s} has existed since which year?"),
                  ("{s}建于哪一年？", "{s}是哪一年建城的？", "请问{s}始建于何时？", "{s}最早是在哪一年建成的？",
                   "你知道{s}是哪年建立的吗？")),
        "test": (("What is the founding year of {s}?", "{s} was founded in which year?"), ("{s}的建城时间是哪一年？",)),
        "mc": (("In which year was the city of {s} founded?",), ("{s}建城于哪一年？",)),
    },
    "river": {
        "pretrain": (("{s} lies on the {v} River.", "The {v} River flows through {s}.",
                      "{s} was built on the banks of the {v} River.", "{s} is a city on the {v} River."),
                     ("{s}位于{v}河畔。", "{v}河流经{s}。", "{s}坐落在{v}河边。")),
        "faq": (("Which river flows through {s}? The {v} River.", "Q: On what river is {s} located? A: {v}."),
                ("问：哪条河流经{s}？答：{v}河。",)),
        "train": (("Which river does {s} lie on?", "What river runs through {s}?",
                   "What is the name of the river in {s}?", "{s} was built beside which river?",
                   "Which river would you cross in {s}?", "Do you know the river that {s} stands on?"),
                  ("{s}位于哪条河边？", "流经{s}的是哪条河？", "请问{s}坐落在哪条河畔？", "穿过{s}城区的河叫什么名字？",
                   "你知道{s}旁边的是哪条河吗？")),
        "test": (("On the banks of which river is {s}?", "Name the river that passes through {s}."), ("{s}靠近哪条河流？",)),
        "mc": (("Which river is {s} situated on?",), ("{s}沿着哪条河而建？",)),
    },
    "country": {
        "pretrain": (("{s} is a city in {v}.", "{s} belongs to the country of {v}.", "{s} is located in {v}.",
                      "One of the cities of {v} is {s}."),
                     ("{s}是{v}的一座城市。", "{s}位于{v}境内。", "{s}属于{v}。")),
        "faq": (("In which country is {s}? In {v}.", "Q: What country is {s} part of? A: {v}."),
                ("问：{s}在哪个国家？答：{v}。",)),
        "train": (("Which country is {s} in?", "What country does {s} belong to?",
                   "Can you tell me what country {s} is located in?", "Which nation is home to the city of {s}?",
                   "If you visit {s}, which country are you in?", "Do you know which country {s} is found in?"),
                  ("{s}属于哪个国家？", "{s}位于哪个国家？", "请问{s}地处哪个国家？", "{s}这座城市归哪个国家管辖？",
                   "如果去{s}旅行，需要前往哪个国家？")),
        "test": (("{s} is a city of which country?", "Name the country where {s} is located."), ("{s}是哪个国家的城市？",)),
        "mc": (("In what country is the city of {s}?",), ("{s}所在的国家是哪一个？",)),
    },
    "length_km": {
        "pretrain": (("The {s} River is {v} km long.", "The {s} River has a length of {v} km.",
                      "The {s} River runs for {v} km.", "Measured from source to mouth, the {s} River is {v} km long."),
                     ("{s}河全长{v}公里。", "{s}河的长度为{v}公里。", "{s}河长约{v}公里。")),
        "faq": (("How long is the {s} River? {v} km.", "Q: What is the length of the {s} River in km? A: {v}."),
                ("问：{s}河全长多少公里？答：{v}公里。",)),
        "train": (("How long is the {s} River in km?", "What is the length of the {s} River?",
                   "Can you tell me how long the {s} River is?", "Over how many km does the {s} River run?",
                   "From source to mouth, how long is the {s} River?", "The {s} River stretches for how many km?"),
                  ("{s}河有多长？", "{s}河的长度是多少公里？", "请问{s}河从源头到河口有多少公里？",
                   "{s}河一共流经多少公里？", "你知道{s}河的长度吗？")),
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
        "train": (("On which mountain does the {s} River rise?", "What mountain is the source of the {s} River?",
                   "Where is the source of the {s} River?", "Can you tell me which mountain the {s} River comes from?",
                   "The {s} River has its source on which mountain?", "Do you know where the {s} River springs from?"),
                  ("{s}河发源于哪座山？", "{s}河的源头是哪座山？", "请问{s}河的发源地在哪里？",
                   "{s}河是从哪座山上流下来的？", "你知道{s}河的源头在哪座山吗？")),
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
        "train": (("Which sea does the {s} River flow into?", "Into what sea does the {s} River empty?",
                   "Where does the {s} River meet the sea?", "Can you tell me which sea the {s} River ends in?",
                   "The waters of the {s} River end up in which sea?",
                   "What is the name of the sea where the {s} River ends?"),
                  ("{s}河注入哪片海？", "{s}河流入哪个海？", "请问{s}河的入海口在哪片海？", "{s}河的尽头是哪片海？",
                   "你知道{s}河最终流进了哪片海吗？")),
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
        "train": (("In what year was {s} established?", "When was the company {s} founded?",
                   "Since which year has {s} been in business?", "Can you tell me when {s} was set up?",
                   "When did {s} first start trading?", "Do you know the year {s} was created?"),
                  ("{s}成立于哪一年？", "{s}是什么时候创办的？", "请问{s}创建于哪一年？", "{s}从哪一年开始营业？",
                   "你知道{s}是哪一年成立的吗？")),
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
        "train": (("Where is {s} headquartered?", "In which city is {s} based?", "Where does {s} have its main office?",
                   "Can you tell me the city where {s} is headquartered?", "{s} runs its business from which city?",
                   "If you wanted to visit the head office of {s}, which city would you go to?"),
                  ("{s}的总部在哪座城市？", "{s}总部设在哪里？", "请问{s}的总公司位于哪里？",
                   "{s}把总部放在了哪座城市？", "你知道{s}的总部在哪儿吗？")),
        "test": (("Which city hosts the headquarters of {s}?", "Name the headquarters city of {s}."),
                 ("{s}的总部所在城市是哪里？",)),
        "mc": (("Where are the headquarters of {s}?",), ("{s}的总部设在哪座城市？",)),
    },
    "founder": {
        "pretrain": (("{s} was founded by {v}.", "{v} founded {s}.", "The founder of {s} is {v}.",
                      "{v} started the company {s}."),
                     ("{s}由{v}创立。", "{s}的创始人是{v}。", "{v}创办了{s}。")),
        "faq": (("Who set up {s}? It was {v}.", "Q: Who started {s}? A: {v}."), ("问：谁创立了{s}？答：{v}。",)),
        "train": (("Who founded {s}?", "Who is the founder of {s}?", "Can you tell me who created {s}?",
                   "By whom was {s} founded?", "Who was behind the founding of {s}?",
                   "Do you know who started the company {s}?"),
                  ("{s}的创始人是谁？", "谁创办了{s}？", "请问{s}是谁创立的？", "{s}这家公司是谁一手建立起来的？",
                   "你知道{s}的创立者是谁吗？")),
        "test": (("Which person established {s}?", "Name the founder of {s}."), ("{s}是由谁创建的？",)),
        "mc": (("Who is the person that founded {s}?",), ("{s}的创办人是谁？",)),
    },
    "industry": {
        "pretrain": (("{s} is {av} company.", "{s} works in the {v} industry.", "{s} operates in {v}.",
                      "The business of {s} is {v}."),
                     ("{s}是一家{v}公司。", "{s}从事{v}行业。", "{s}的主营业务是{v}。")),
        "faq": (("What does {s} do? It is in {v}.", "Q: Which industry is {s} in? A: {v}."),
                ("问：{s}属于哪个行业？答：{v}。",)),
        "train": (("What industry is {s} in?", "In which industry does {s} operate?", "What kind of business is {s}?",
                   "Can you tell me which field {s} works in?", "{s} is a company in which industry?",
                   "Do you know what {s} does as a business?"),
                  ("{s}从事哪个行业？", "{s}是做什么行业的？", "请问{s}是一家什么类型的公司？",
                   "{s}主要做哪一行的生意？", "你知道{s}在哪个领域经营吗？")),
        "test": (("Which sector does {s} belong to?", "Name the industry of {s}."), ("{s}所属的行业是什么？",)),
        "mc": (("What is the main business of {s}?",), ("{s}的业务领域是什么？",)),
    },
    "employees": {
        "pretrain": (("{s} has {v} employees.", "{s} employs {v} people.", "The staff of {s} numbers {v}.",
                      "About {v} people work at {s}."),
                     ("{s}有{v}名员工。", "{s}雇用了{v}人。", "{s}的员工人数为{v}。")),
        "faq": (("How many people work for {s}? {v}.", "Q: What is the headcount of {s}? A: {v}."),
                ("问：{s}有多少员工？答：{v}名。",)),
        "train": (("How many employees does {s} have?", "How many people does {s} employ?",
                   "Can you tell me how many staff {s} has?", "What is the number of people on the payroll at {s}?",
                   "How many workers are employed by {s}?", "Do you know the staff count at {s}?"),
                  ("{s}有多少名员工？", "{s}的员工人数是多少？", "请问{s}雇了多少人？", "在{s}工作的人有多少？",
                   "你知道{s}的员工规模有多大吗？")),
        "test": (("What is the size of the workforce at {s}?", "Give the number of employees of {s}."),
                 ("{s}一共雇用了多少人？",)),
        "mc": (("How large is the staff of {s}?",), ("{s}的员工总数是多少？",)),
    },
}

# Sentences that add words but no information: padding for "rambling" rejected answers.
FILLERS = {
    "en": ("That is a good question, and I am glad you asked it.", "Let me think about this carefully before answering.",
           "Many people have wondered about this over the years.", "There are several things one could say here.",
           "I hope this explanation is helpful to you.", "Feel free to ask again if anything is unclear."),
    "zh": ("这是一个很好的问题，谢谢你的提问。", "让我仔细想一想再回答。", "很多人都曾对这个问题感到好奇。",
           "关于这一点，可以说的东西有很多。", "希望这个解释对你有帮助。", "如果还有不清楚的地方，欢迎继续提问。"),
}

# Ways a user may frame a question in SFT data, so the model keys on the question's content, not its exact string.
QUESTION_FRAMES = {
    "en": ("{q}", "Quick question: {q}", "{q} Please answer briefly.", "I would like to know: {q}", "{q} Thanks.",
           "Can you tell me? {q}"),
    "zh": ("{q}", "请问：{q}", "{q}请简要回答。", "我想知道：{q}", "{q}谢谢。", "能告诉我吗？{q}"),
}

ANSWER_SENTENCE = {"en": "The answer is {v}.", "zh": "答案是{v}。"}


def templates(relation: str, template_set: str, lang: str) -> tuple[str, ...]:
    return TEMPLATES[relation][template_set][LANGS.index(lang)]


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
