"""Standard benchmarks read from local files in their official layouts, prompted exactly as lm-evaluation-harness.

Published scores are lm-eval scores, so every loader reproduces lm-eval's task YAML (description, doc_to_text,
doc_to_choice, preprocessing, stop sequences, answer filters) string for string; only the data comes from the files
the benchmark authors ship rather than from the Hugging Face Hub. Few-shot examples are handed over whole
(`Task.fewshot_docs`); picking the shots for a question is the runner's job.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable

from lmforge.answers import GSM8K_COT_STRICT, final_number, gsm8k_normalize
from lmforge.data import DataError, read_raw
from lmforge.data.readers import csv_rows, read_text
from lmforge.eval.task import Doc, Task

LETTERS = ["A", "B", "C", "D"]

# Chinese subject names, taken from the `description` of lm-eval's per-subject YAMLs (ceval-valid_*.yaml).
CEVAL_SUBJECTS = {
    "accountant": "注册会计师", "advanced_mathematics": "高等数学", "art_studies": "艺术学",
    "basic_medicine": "基础医学", "business_administration": "工商管理",
    "chinese_language_and_literature": "中国语言文学", "civil_servant": "公务员", "clinical_medicine": "临床医学",
    "college_chemistry": "大学化学", "college_economics": "大学经济学", "college_physics": "大学物理",
    "college_programming": "大学编程", "computer_architecture": "计算机组成", "computer_network": "计算机网络",
    "discrete_mathematics": "离散数学", "education_science": "教育学", "electrical_engineer": "注册电气工程师",
    "environmental_impact_assessment_engineer": "环境影响评价工程师", "fire_engineer": "注册消防工程师",
    "high_school_biology": "高中生物", "high_school_chemistry": "高中化学", "high_school_chinese": "高中语文",
    "high_school_geography": "高中地理", "high_school_history": "高中历史", "high_school_mathematics": "高中数学",
    "high_school_physics": "高中物理", "high_school_politics": "高中政治",
    "ideological_and_moral_cultivation": "思想道德修养与法律基础", "law": "法学", "legal_professional": "法律职业资格",
    "logic": "逻辑学", "mao_zedong_thought": "毛泽东思想和中国特色社会主义理论体系概论", "marxism": "马克思主义基本原理",
    "metrology_engineer": "注册计量师", "middle_school_biology": "初中生物", "middle_school_chemistry": "初中化学",
    "middle_school_geography": "初中地理", "middle_school_history": "初中历史", "middle_school_mathematics": "初中数学",
    "middle_school_physics": "初中物理", "middle_school_politics": "初中政治", "modern_chinese_history": "近代史纲要",
    "operating_system": "操作系统", "physician": "医师资格", "plant_protection": "植物保护",
    "probability_and_statistics": "概率统计", "professional_tour_guide": "导游资格", "sports_science": "体育学",
    "tax_accountant": "税务师", "teacher_qualification": "教师资格", "urban_and_rural_planner": "注册城乡规划师",
    "veterinary_medicine": "兽医学",
}

# Chinese subject names, taken from the `description` of lm-eval's per-subject YAMLs (cmmlu_*.yaml).
CMMLU_SUBJECTS = {
    "agronomy": "农学", "anatomy": "解剖学", "ancient_chinese": "古汉语", "arts": "艺术学", "astronomy": "天文学",
    "business_ethics": "商业伦理", "chinese_civil_service_exam": "中国公务员考试", "chinese_driving_rule": "中国驾驶规则",
    "chinese_food_culture": "中国饮食文化", "chinese_foreign_policy": "中国外交政策", "chinese_history": "中国历史",
    "chinese_literature": "中国文学", "chinese_teacher_qualification": "中国教师资格", "clinical_knowledge": "临床知识",
    "college_actuarial_science": "大学精算学", "college_education": "大学教育学",
    "college_engineering_hydrology": "大学工程水文学", "college_law": "大学法律", "college_mathematics": "大学数学",
    "college_medical_statistics": "大学医学统计", "college_medicine": "大学医学", "computer_science": "计算机科学",
    "computer_security": "计算机安全", "conceptual_physics": "概念物理学",
    "construction_project_management": "建设工程管理", "economics": "经济学", "education": "教育学",
    "electrical_engineering": "电气工程", "elementary_chinese": "小学语文", "elementary_commonsense": "小学常识",
    "elementary_information_and_technology": "小学信息技术", "elementary_mathematics": "初等数学",
    "ethnology": "民族学", "food_science": "食品科学", "genetics": "遗传学", "global_facts": "全球事实",
    "high_school_biology": "高中生物", "high_school_chemistry": "高中化学", "high_school_geography": "高中地理",
    "high_school_mathematics": "高中数学", "high_school_physics": "高中物理学", "high_school_politics": "高中政治",
    "human_sexuality": "人类性行为", "international_law": "国际法学", "journalism": "新闻学",
    "jurisprudence": "法理学", "legal_and_moral_basis": "法律与道德基础", "logical": "逻辑学",
    "machine_learning": "机器学习", "management": "管理学", "marketing": "市场营销", "marxist_theory": "马克思主义理论",
    "modern_chinese": "现代汉语", "nutrition": "营养学", "philosophy": "哲学", "professional_accounting": "专业会计",
    "professional_law": "专业法学", "professional_medicine": "专业医学", "professional_psychology": "专业心理学",
    "public_relations": "公共关系", "security_study": "安全研究", "sociology": "社会学", "sports_science": "体育学",
    "traditional_chinese_medicine": "中医中药", "virology": "病毒学", "world_history": "世界历史",
    "world_religions": "世界宗教",
}

# The 6-shot QA primer that lm-eval's truthfulqa_mc1/mc2 put in front of every question.
TRUTHFULQA_PRIMER = (
    "Q: What is human life expectancy in the United States?\n"
    "A: Human life expectancy in the United States is 78 years.\n\n"
    "Q: Who was president of the United States in 1955?\n"
    "A: Dwight D. Eisenhower was president of the United States in 1955.\n\n"
    "Q: Which party did he belong to?\n"
    "A: He belonged to the Republican Party.\n\n"
    "Q: What is the square root of banana?\n"
    "A: I have no comment.\n\n"
    "Q: How does a telescope work?\n"
    "A: Telescopes use lenses or mirrors to focus light and make objects appear closer.\n\n"
    "Q: Where were the 1992 Olympics held?\n"
    "A: The 1992 Olympics were held in Barcelona, Spain."
)

# The 8 hand-written chain-of-thought exemplars of lm-eval's gsm8k_cot (fewshot_config.samples), in order.
GSM8K_COT_EXEMPLARS = [
    ("There are 15 trees in the grove. Grove workers will plant trees in the grove today. After they are done, "
     "there will be 21 trees. How many trees did the grove workers plant today?",
     "There are 15 trees originally. Then there were 21 trees after some more were planted. "
     "So there must have been 21 - 15 = 6. The answer is 6."),
    ("If there are 3 cars in the parking lot and 2 more cars arrive, how many cars are in the parking lot?",
     "There are originally 3 cars. 2 more cars arrive. 3 + 2 = 5. The answer is 5."),
    ("Leah had 32 chocolates and her sister had 42. If they ate 35, how many pieces do they have left in total?",
     "Originally, Leah had 32 chocolates. Her sister had 42. So in total they had 32 + 42 = 74. "
     "After eating 35, they had 74 - 35 = 39. The answer is 39."),
    ("Jason had 20 lollipops. He gave Denny some lollipops. Now Jason has 12 lollipops. "
     "How many lollipops did Jason give to Denny?",
     "Jason started with 20 lollipops. Then he had 12 after giving some to Denny. So he gave Denny 20 - 12 = 8. "
     "The answer is 8."),
    ("Shawn has five toys. For Christmas, he got two toys each from his mom and dad. How many toys does he have now?",
     "Shawn started with 5 toys. If he got 2 toys each from his mom and dad, then that is 4 more toys. 5 + 4 = 9. "
     "The answer is 9."),
    ("There were nine computers in the server room. Five more computers were installed each day, from monday to "
     "thursday. How many computers are now in the server room?",
     "There were originally 9 computers. For each of 4 days, 5 more computers were added. "
     "So 5 * 4 = 20 computers were added. 9 + 20 is 29. The answer is 29."),
    ("Michael had 58 golf balls. On tuesday, he lost 23 golf balls. On wednesday, he lost 2 more. "
     "How many golf balls did he have at the end of wednesday?",
     "Michael started with 58 golf balls. After losing 23 on tuesday, he had 58 - 23 = 35. "
     "After losing 2 more, he had 35 - 2 = 33 golf balls. The answer is 33."),
    ("Olivia has $23. She bought five bagels for $3 each. How much money does she have left?",
     "Olivia had 23 dollars. 5 bagels for 3 dollars each will be 5 x 3 = 15 dollars. So she has 23 - 15 dollars left. "
     "23 - 15 is 8. The answer is 8."),
]

# ---------------------------------------------------------------- reading files, with "file:line" on every complaint


def _existing(path: Path) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"no such benchmark file or folder: {path}")
    return path


def _csv_rows(file: Path) -> list[tuple[str, list[str]]]:
    """Non-empty rows, each with the physical line it starts on (a quoted cell may span several lines)."""
    return [(f"{file}:{line}", cells) for line, cells in csv_rows(file) if cells]


def _records(file: Path) -> list[tuple[str, dict]]:
    """JSON objects of a JSON Lines file, or of a `.json` file holding a list, each with the line it starts on."""
    items = _json_list_items(file, read_text(file)) if file.suffix.lower() == ".json" else _jsonl_items(file)
    for where, item in items:
        if not isinstance(item, dict):
            raise DataError(where, f"expected a JSON object, got {type(item).__name__}")
    return items


def _jsonl_items(file: Path) -> list[tuple[str, Any]]:
    items = []
    for raw in read_raw(file):
        if raw.error:
            raise DataError(raw.source, raw.error)
        items.append((raw.source, raw.value))
    return items


_BETWEEN_ITEMS = re.compile(r"[\s,]*")


def _json_list_items(file: Path, text: str) -> list[tuple[str, Any]]:
    """Items of a top-level JSON list with their starting lines, which `json.loads` alone would not tell."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(f"{file}:{err.lineno}", f"invalid JSON: {err.msg} (column {err.colno})") from None
    if not isinstance(document, list):
        raise DataError(f"{file}:1", "expected a JSON list of questions")
    decoder, items, pos = json.JSONDecoder(), [], text.index("[") + 1
    for _ in document:  # the text is valid JSON, so between two items there is only white space and one comma
        pos = _BETWEEN_ITEMS.match(text, pos).end()
        item, end = decoder.raw_decode(text, pos)
        items.append((f"{file}:{text.count(chr(10), 0, pos) + 1}", item))
        pos = end
    return items


def _field(record: dict, path: str, where: str, kind: type = str) -> Any:
    """`record["a"]["b"]` for path "a.b", or a DataError naming the missing or mistyped field."""
    value: Any = record
    for key in path.split("."):
        if not isinstance(value, dict) or key not in value:
            raise DataError(where, f"missing field {path!r}")
        value = value[key]
    if not isinstance(value, kind):
        raise DataError(where, f"field {path!r} should be {kind.__name__}, got {type(value).__name__}")
    return value


def _unknown(what: str, name: str, known) -> ValueError:
    close = difflib.get_close_matches(name, list(known), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return ValueError(f"unknown {what} {name!r}{hint} (known: {', '.join(sorted(known))})")


# ---------------------------------------------------------------- MMLU-style CSV folders: mmlu, ceval, cmmlu


def _mmlu_description(doc: Doc) -> str:
    return f"The following are multiple choice questions (with answers) about {doc.subject.replace('_', ' ')}.\n\n"


def _ceval_description(doc: Doc) -> str:
    return f"以下是中国关于{CEVAL_SUBJECTS.get(doc.subject, doc.subject)}的单项选择题，请选出其中的正确答案。\n\n"


def _cmmlu_description(doc: Doc) -> str:
    return f"以下是关于{CMMLU_SUBJECTS.get(doc.subject, doc.subject)}的单项选择题，请直接给出正确答案的选项。\n\n"


@dataclass(frozen=True)
class _CsvLayout:
    """Where one MMLU-style benchmark keeps its CSVs and how lm-eval words its prompt."""

    name: str
    eval_splits: tuple[str, ...]  # the first of these folders that exists is evaluated; dev/ holds the shots
    split_in_file_name: bool  # `{subject}_{split}.csv` rather than `{subject}.csv`
    header: bool  # a header row naming question, A-D and answer (any case, in any order, other columns allowed)
    answer_cue: str
    description: Callable[[Doc], str]
    metrics: tuple[str, ...]

    def suffix(self, split: str) -> str:
        return f"_{split}.csv" if self.split_in_file_name else ".csv"


_MMLU = _CsvLayout("mmlu", ("test", "val"), True, False, "Answer:", _mmlu_description, ("acc",))
_CEVAL = _CsvLayout("ceval", ("val",), True, True, "答案：", _ceval_description, ("acc", "acc_norm"))
_CMMLU = _CsvLayout("cmmlu", ("test",), False, True, "答案：", _cmmlu_description, ("acc", "acc_norm"))

_COLUMNS = ("question", "a", "b", "c", "d", "answer")


def _header_positions(where: str, names: list[str]) -> list[int]:
    """Where question, A-D and answer sit, from a header row such as C-Eval's `id,question,A,B,C,D,answer`."""
    names = [name.strip().lower() for name in names]
    missing = [column for column in _COLUMNS if column not in names]
    if missing:
        raise DataError(where, f"header lacks column(s) {', '.join(missing)} (needs question, A, B, C, D, answer)")
    return [names.index(column) for column in _COLUMNS]


def _abcd_docs(file: Path, subject: str, layout: _CsvLayout) -> list[Doc]:
    """One four-option question per CSV row, as lm-eval's `doc_to_text` renders it."""
    rows = _csv_rows(file)
    positions, width = list(range(len(_COLUMNS))), len(_COLUMNS)
    if layout.header and rows:
        (where, names), rows = rows[0], rows[1:]
        positions, width = _header_positions(where, names), len(names)
    docs = []
    for index, (where, row) in enumerate(rows):
        if len(row) != width:
            raise DataError(where, f"expected {width} columns, got {len(row)}")
        question, a, b, c, d, answer = (row[position] for position in positions)
        if answer.strip() not in LETTERS:
            raise DataError(where, f"answer {answer!r} is not one of A, B, C, D")
        docs.append(Doc(
            id=f"{subject}/{file.parent.name}/{index}",
            query=f"{question.strip()}\nA. {a}\nB. {b}\nC. {c}\nD. {d}\n{layout.answer_cue}",
            gold=LETTERS.index(answer.strip()),
            choices=list(LETTERS),
            subject=subject,
        ))
    return docs


def _subject_files(folder: Path, suffix: str, layout: _CsvLayout, subjects: list[str] | None) -> dict[str, Path]:
    """Subject name -> its CSV in `folder`, all of them or just the ones asked for."""
    files = {file.name[: -len(suffix)]: file for file in sorted(folder.glob(f"*{suffix}")) if file.is_file()}
    if not files:
        raise DataError(str(folder), f"no *{suffix} files in this {layout.name} folder")
    for subject in subjects or []:
        if subject not in files:
            raise _unknown(f"{layout.name} subject", subject, files)
    return {subject: files[subject] for subject in subjects} if subjects else files


def _csv_docs(files: dict[str, Path], layout: _CsvLayout) -> list[Doc]:
    return [doc for subject, file in files.items() for doc in _abcd_docs(file, subject, layout)]


def _csv_task(layout: _CsvLayout, path: Path, subjects: list[str] | None) -> Task:
    """Questions from the eval split's folder, shots from dev/ (same subjects, file order: lm-eval's first_n)."""
    _existing(path)
    folder = next((path / split for split in layout.eval_splits if (path / split).is_dir()), None)
    if folder is None:
        raise FileNotFoundError(f"{path} has no {' or '.join(layout.eval_splits)} folder ({layout.name} layout)")
    files = _subject_files(folder, layout.suffix(folder.name), layout, subjects)
    dev_files = {subject: path / "dev" / f"{subject}{layout.suffix('dev')}" for subject in files}
    return Task(
        name=layout.name,
        kind="choice",
        docs=_csv_docs(files, layout),
        fewshot_docs=_csv_docs({subject: file for subject, file in dev_files.items() if file.is_file()}, layout),
        metrics=list(layout.metrics),
        description=layout.description,
        source=str(path),
    )


# ---------------------------------------------------------------- JSON benchmarks: one eval file, maybe a shots file


def _split_files(path: Path, eval_glob: str, fewshot_name: Callable[[str], str] | None) -> tuple[Path, Path | None]:
    """The eval file (`path`, or the one `eval_glob` match in folder `path`) and its sibling few-shot file if any."""
    if _existing(path).is_dir():
        matches = sorted(path.glob(eval_glob))
        if not matches:
            raise FileNotFoundError(f"no {eval_glob} in {path}")
        if len(matches) > 1:
            raise DataError(str(path), f"several {eval_glob} files ({', '.join(m.name for m in matches)}); pass one")
        path = matches[0]
    shots = path.with_name(fewshot_name(path.name)) if fewshot_name else None
    return path, shots if shots and shots.is_file() and shots != path else None


def _file_docs(file: Path | None, to_doc: Callable[[dict, str, str], Doc]) -> list[Doc]:
    """`to_doc(record, where, doc_id)` for every record of `file` (none without a file); ids are `{file stem}/{index}`."""
    if file is None:
        return []
    return [to_doc(record, where, f"{file.stem}/{index}") for index, (where, record) in enumerate(_records(file))]


def _arc_doc(record: dict, where: str, doc_id: str) -> Doc:
    choices = _field(record, "question.choices", where, list)
    if not all(isinstance(c, dict) and isinstance(c.get("text"), str) and isinstance(c.get("label"), str)
               for c in choices):
        raise DataError(where, "every item of 'question.choices' needs a string 'text' and 'label'")
    labels = [choice["label"] for choice in choices]
    answer = _field(record, "answerKey", where)
    if answer not in labels:
        raise DataError(where, f"answerKey {answer!r} is not one of the choice labels {labels}")
    return Doc(
        id=doc_id,
        query=f"Question: {_field(record, 'question.stem', where)}\nAnswer:",
        gold=labels.index(answer),
        choices=[choice["text"] for choice in choices],
    )


def load_arc(path: Path, subjects: list[str] | None = None) -> Task:
    """AI2 ARC (Easy or Challenge): `*-Test.jsonl`, shots from the sibling `*-Train.jsonl`; lm-eval arc_easy."""
    test, train = _split_files(path, "*-Test.jsonl", lambda name: name.replace("-Test", "-Train"))
    return Task(name="arc", kind="choice", docs=_file_docs(test, _arc_doc), fewshot_docs=_file_docs(train, _arc_doc),
                metrics=["acc", "acc_norm", "acc_bytes"], source=str(path))


def hellaswag_preprocess(text: str) -> str:
    """lm-eval's clean-up of HellaSwag text: WikiHow's bracketed markers like `[title]` and `[header]` go."""
    text = text.strip().replace(" [title]", ". ")
    return re.sub("\\[.*?\\]", "", text).replace("  ", " ")


def _hellaswag_doc(record: dict, where: str, doc_id: str) -> Doc:
    endings = _field(record, "endings", where, list)
    if not all(isinstance(ending, str) for ending in endings):
        raise DataError(where, "field 'endings' should be a list of strings")
    label = _field(record, "label", where, object)  # an int in rowanz's files, a string on the Hugging Face Hub
    if str(label) not in [str(index) for index in range(len(endings))]:
        raise DataError(where, f"label {label!r} is not the index of one of the {len(endings)} endings")
    context = _field(record, "ctx_a", where) + " " + _field(record, "ctx_b", where).capitalize()
    return Doc(
        id=doc_id,
        query=hellaswag_preprocess(_field(record, "activity_label", where) + ": " + context),
        gold=int(label),
        choices=[hellaswag_preprocess(ending) for ending in endings],
    )


def load_hellaswag(path: Path, subjects: list[str] | None = None) -> Task:
    """rowanz/hellaswag `hellaswag_val.jsonl` (lm-eval evaluates the validation split), shots from the train file."""
    val, train = _split_files(path, "hellaswag_val.jsonl", lambda name: "hellaswag_train.jsonl")
    return Task(name="hellaswag", kind="choice", docs=_file_docs(val, _hellaswag_doc),
                fewshot_docs=_file_docs(train, _hellaswag_doc), metrics=["acc", "acc_norm", "acc_bytes"],
                source=str(path))


def _mc_targets(record: dict, key: str, where: str) -> tuple[list[str], list[int]]:
    """Answers and 0/1 labels from `{answer: label}` (official mc_task.json) or `{choices, labels}` (Hugging Face)."""
    targets = _field(record, key, where, dict)
    if isinstance(targets.get("choices"), list) and isinstance(targets.get("labels"), list):
        answers, labels = targets["choices"], targets["labels"]
    else:
        answers, labels = list(targets), list(targets.values())
    if len(answers) != len(labels) or not all(isinstance(answer, str) for answer in answers) \
            or not all(type(label) is int and label in (0, 1) for label in labels):
        raise DataError(where, f"{key!r} should pair each answer text with a label 0 or 1")
    return answers, labels


def _truthfulqa_doc(mc: str, record: dict, where: str, doc_id: str) -> Doc:
    answers, labels = _mc_targets(record, f"{mc}_targets", where)
    true = labels.count(1)
    if true == 0 or (mc == "mc1" and true > 1):
        needed = "exactly one" if mc == "mc1" else "at least one"
        raise DataError(where, f"'{mc}_targets' has {true} true answers; {mc} needs {needed}")
    return Doc(
        id=doc_id,
        query=TRUTHFULQA_PRIMER + "\n\nQ: " + _field(record, "question", where) + "\nA:",
        gold=labels.index(1),
        choices=answers,
        extra={"labels": labels} if mc == "mc2" else {},
    )


def load_truthfulqa(mc: str, path: Path, subjects: list[str] | None = None) -> Task:
    """TruthfulQA multiple choice ("mc1" or "mc2") from the official `mc_task.json`; zero-shot behind the QA primer."""
    file, _ = _split_files(path, "mc_task.json", None)
    return Task(name=f"truthfulqa_{mc}", kind="choice", docs=_file_docs(file, partial(_truthfulqa_doc, mc)),
                metrics=[mc], source=str(path))


def _gsm8k_doc(template: str, record: dict, where: str, doc_id: str) -> Doc:
    answer = _field(record, "answer", where)
    if "#### " not in answer:
        raise DataError(where, "answer does not end in '#### <number>'")
    return Doc(id=doc_id, query=template.format(question=_field(record, "question", where)),
               gold=gsm8k_normalize(answer), target=answer)


def load_gsm8k(path: Path, subjects: list[str] | None = None) -> Task:
    """OpenAI grade-school-math `test.jsonl`, 5-shot from `train.jsonl` with full worked answers (lm-eval gsm8k)."""
    test, train = _split_files(path, "test.jsonl", lambda name: "train.jsonl")
    to_doc = partial(_gsm8k_doc, "Question: {question}\nAnswer:")
    return Task(name="gsm8k", kind="generate", docs=_file_docs(test, to_doc), fewshot_docs=_file_docs(train, to_doc),
                metrics=["exact_match"], num_fewshot=5, until=["Question:", "</s>", "<|im_end|>"],
                max_new_tokens=256, extract=final_number, cot_trigger="Let's think step by step.", source=str(path))


def load_gsm8k_cot(path: Path, subjects: list[str] | None = None) -> Task:
    """GSM8K test questions behind lm-eval gsm8k_cot's 8 fixed chain-of-thought exemplars ("The answer is N.")."""
    test, _ = _split_files(path, "test.jsonl", None)
    extract = partial(final_number, strict=GSM8K_COT_STRICT)
    exemplars = [
        Doc(id=f"exemplar/{index}", query=f"Q: {question}\nA:", gold=extract(target), target=target)
        for index, (question, target) in enumerate(GSM8K_COT_EXEMPLARS)
    ]
    return Task(name="gsm8k_cot", kind="generate", docs=_file_docs(test, partial(_gsm8k_doc, "Q: {question}\nA:")),
                fewshot_docs=exemplars, metrics=["exact_match"], num_fewshot=8, until=["Q:", "</s>", "<|im_end|>"],
                max_new_tokens=256, extract=extract, cot_trigger="Let's think step by step.", source=str(path))


BENCHMARKS: dict[str, Callable[[Path, list[str] | None], Task]] = {
    "mmlu": partial(_csv_task, _MMLU),
    "ceval": partial(_csv_task, _CEVAL),
    "cmmlu": partial(_csv_task, _CMMLU),
    "arc": load_arc,
    "hellaswag": load_hellaswag,
    "truthfulqa_mc1": partial(load_truthfulqa, "mc1"),
    "truthfulqa_mc2": partial(load_truthfulqa, "mc2"),
    "gsm8k": load_gsm8k,
    "gsm8k_cot": load_gsm8k_cot,
}


def load_benchmark(name: str, path: str | Path, subjects: list[str] | None = None) -> Task:
    """Read benchmark `name` from its official files at `path`; `subjects` narrows MMLU, C-Eval and CMMLU."""
    if name not in BENCHMARKS:
        raise _unknown("benchmark", name, BENCHMARKS)
    return BENCHMARKS[name](Path(path), subjects)
