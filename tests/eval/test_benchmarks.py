"""Standard benchmarks from tiny files in their official layouts; prompts must equal lm-eval's string for string."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from lmforge.answers import GSM8K_COT_STRICT, final_number
from lmforge.data import DataError
from lmforge.eval.benchmarks import BENCHMARKS, load_benchmark

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "benchmarks"


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding=encoding)
    return path


def write_jsonl(path: Path, records: list[dict]) -> Path:
    return write(path, "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records))


def raises_at(source: str, match: str):
    return pytest.raises(DataError, match=f"^{re.escape(source)}: .*{match}")


# ---------------------------------------------------------------- MMLU (hendrycks data/: no header, answer letter)


@pytest.fixture()
def mmlu(tmp_path) -> Path:
    data = tmp_path / "data"
    write(data / "test" / "abstract_algebra_test.csv",
          '"  Find the degree\nof Q(sqrt(2)) over Q. ",0,2,"4, or 6",8,B\n'
          "Is Z_4 a field?,Yes,No,Maybe,Never,B\n")
    write(data / "test" / "anatomy_test.csv", "Which bone is longest?,femur,tibia,ulna,rib,A\n")
    write(data / "dev" / "abstract_algebra_dev.csv", "What is 1+1 in Z_2?,0,1,2,3,A\n")
    write(data / "dev" / "anatomy_dev.csv", "Where is the heart?,chest,knee,foot,ear,A\n")
    return data


def test_mmlu_query_description_and_shots_follow_lm_eval(mmlu):
    task = load_benchmark("mmlu", mmlu)
    assert (task.name, task.kind, task.metrics, task.num_fewshot) == ("mmlu", "choice", ["acc"], 0)
    assert task.source == str(mmlu)
    first = task.docs[0]
    assert first.query == "Find the degree\nof Q(sqrt(2)) over Q.\nA. 0\nB. 2\nC. 4, or 6\nD. 8\nAnswer:"
    assert (first.choices, first.gold, first.subject) == (["A", "B", "C", "D"], 1, "abstract_algebra")
    assert [doc.id for doc in task.docs] == ["abstract_algebra/test/0", "abstract_algebra/test/1", "anatomy/test/0"]
    assert task.description(first) == (
        "The following are multiple choice questions (with answers) about abstract algebra.\n\n")
    assert [(doc.id, doc.shot(task.target_delimiter)) for doc in task.fewshot_docs] == [
        ("abstract_algebra/dev/0", "What is 1+1 in Z_2?\nA. 0\nB. 1\nC. 2\nD. 3\nAnswer: A"),
        ("anatomy/dev/0", "Where is the heart?\nA. chest\nB. knee\nC. foot\nD. ear\nAnswer: A"),
    ]


def test_mmlu_subjects_narrow_docs_and_shots_and_unknown_ones_get_a_suggestion(mmlu):
    task = load_benchmark("mmlu", mmlu, ["anatomy"])
    assert {doc.subject for doc in task.docs + task.fewshot_docs} == {"anatomy"}
    with pytest.raises(ValueError, match="did you mean 'anatomy'"):
        load_benchmark("mmlu", mmlu, ["anatomyy"])


def test_mmlu_reads_val_when_there_is_no_test_folder(mmlu):
    shutil.rmtree(mmlu / "test")
    write(mmlu / "val" / "anatomy_val.csv", "Which bone is longest?,femur,tibia,ulna,rib,A\n")
    assert [doc.id for doc in load_benchmark("mmlu", mmlu).docs] == ["anatomy/val/0"]


@pytest.mark.parametrize("rows, line, problem", [
    ('"multi\nline",1,2,3,4,A\nshort,1,2,3,A\n', 3, "expected 6 columns, got 5"),  # physical line, not row number
    ("q,1,2,3,4,A\nq,1,2,3,4,E\n", 2, "answer 'E' is not one of A, B, C, D"),
])
def test_mmlu_bad_rows_name_file_and_line(tmp_path, rows, line, problem):
    file = write(tmp_path / "test" / "x_test.csv", rows)
    with raises_at(f"{file}:{line}", problem):
        load_benchmark("mmlu", tmp_path)


def test_non_utf8_bytes_name_their_line(tmp_path):
    file = tmp_path / "test" / "x_test.csv"
    file.parent.mkdir()
    file.write_bytes("q,1,2,3,4,A\nq,caf\xe9,2,3,4,A\n".encode("latin-1"))
    with raises_at(f"{file}:2", "not valid UTF-8"):
        load_benchmark("mmlu", tmp_path)


# ---------------------------------------------------------------- C-Eval (dev/val/test with header) and CMMLU


@pytest.fixture()
def ceval(tmp_path) -> Path:
    write(tmp_path / "dev" / "accountant_dev.csv",
          "id,question,A,B,C,D,answer,explanation\n0,会计的基本职能是？,核算,监督,预测,决策,A,1. 核算是基本职能\n",
          encoding="utf-8-sig")
    write(tmp_path / "val" / "accountant_val.csv", "id,question,A,B,C,D,answer\n0, 下列属于资产的是 ,存货,负债,收入,费用,A\n")
    write(tmp_path / "val" / "my_exam_val.csv", "id,question,A,B,C,D,answer\n0,1+1=?,1,2,3,4,B\n")
    write(tmp_path / "test" / "accountant_test.csv", "id,question,A,B,C,D\n0,不用于评测,甲,乙,丙,丁\n")
    return tmp_path


def test_ceval_evaluates_val_with_chinese_prompt_and_shots_from_dev(ceval):
    task = load_benchmark("ceval", ceval)
    assert (task.metrics, task.num_fewshot) == (["acc", "acc_norm"], 0)
    doc = task.docs[0]
    assert doc.query == "下列属于资产的是\nA. 存货\nB. 负债\nC. 收入\nD. 费用\n答案："
    assert (doc.id, doc.gold) == ("accountant/val/0", 0)
    assert task.description(doc) == "以下是中国关于注册会计师的单项选择题，请选出其中的正确答案。\n\n"
    assert task.description(task.docs[1]) == "以下是中国关于my_exam的单项选择题，请选出其中的正确答案。\n\n"
    assert [shot.shot(" ") for shot in task.fewshot_docs] == ["会计的基本职能是？\nA. 核算\nB. 监督\nC. 预测\nD. 决策\n答案： A"]


def test_ceval_header_must_name_the_columns(ceval):
    file = write(ceval / "val" / "accountant_val.csv", "id,question,A,B,C,D,label\n0,q,1,2,3,4,A\n")
    with raises_at(f"{file}:1", "header lacks column.s. answer"):
        load_benchmark("ceval", ceval)


def test_cmmlu_prompt_matches_lm_eval(tmp_path):
    write(tmp_path / "test" / "agronomy.csv", ",Question,A,B,C,D,Answer\n0,最主要的生产资料是 ,工具,土地,劳动力,资金,B\n")
    write(tmp_path / "dev" / "agronomy.csv", ",Question,A,B,C,D,Answer\n0,肉牛哪个部位肉质较好,胸,腹,大腿,小腿,C\n")
    task = load_benchmark("cmmlu", tmp_path)
    doc = task.docs[0]
    assert doc.query == "最主要的生产资料是\nA. 工具\nB. 土地\nC. 劳动力\nD. 资金\n答案："
    assert (doc.gold, doc.subject, task.metrics) == (1, "agronomy", ["acc", "acc_norm"])
    assert task.description(doc) == "以下是关于农学的单项选择题，请直接给出正确答案的选项。\n\n"
    assert task.fewshot_docs[0].shot(" ").endswith("D. 小腿\n答案： C")


# ---------------------------------------------------------------- ARC and HellaSwag (JSON Lines)


def arc_record(key: str, labels: str) -> dict:
    texts = ["rock", "air", "wood", "iron", "salt"][: len(labels)]
    return {"id": f"Q{key}", "question": {"stem": "Which is a gas?", "choices": [
        {"text": text, "label": label} for text, label in zip(texts, labels)]}, "answerKey": key}


def test_arc_gold_is_the_answer_keys_position_and_train_gives_shots(tmp_path):
    write_jsonl(tmp_path / "ARC-Challenge-Test.jsonl", [arc_record("2", "1234"), arc_record("E", "ABCDE")])
    write_jsonl(tmp_path / "ARC-Challenge-Train.jsonl", [arc_record("B", "ABCD")])
    task = load_benchmark("arc", tmp_path)
    assert [(doc.query, doc.choices, doc.gold) for doc in task.docs] == [
        ("Question: Which is a gas?\nAnswer:", ["rock", "air", "wood", "iron"], 1),
        ("Question: Which is a gas?\nAnswer:", ["rock", "air", "wood", "iron", "salt"], 4),
    ]
    assert (task.metrics, task.num_fewshot) == (["acc", "acc_norm", "acc_bytes"], 0)
    assert [doc.shot(" ") for doc in load_benchmark("arc", tmp_path / "ARC-Challenge-Test.jsonl").fewshot_docs] == [
        "Question: Which is a gas?\nAnswer: air"]
    assert len(load_benchmark("arc", tmp_path, ["physics"]).docs) == 2, "subjects only narrow subject-split benchmarks"


def test_arc_answer_key_must_be_a_label(tmp_path):
    file = write_jsonl(tmp_path / "ARC-Easy-Test.jsonl", [arc_record("A", "ABCD"), arc_record("5", "1234")])
    with raises_at(f"{file}:2", "answerKey '5' is not one of the choice labels"):
        load_benchmark("arc", file)


def test_hellaswag_applies_lm_evals_preprocessing(tmp_path):
    record = {"ind": 4, "activity_label": "Making a sandwich",
              "ctx_a": "A man [title] takes bread.", "ctx_b": "then PUTS ham",
              "endings": [" [header] adds  cheese. [step] yes", "eats it.", "leaves [title] now", "x"], "label": 2}
    write_jsonl(tmp_path / "hellaswag_val.jsonl", [record, {**record, "label": "0"}])
    write_jsonl(tmp_path / "hellaswag_train.jsonl", [record])
    task = load_benchmark("hellaswag", tmp_path)
    doc = task.docs[0]
    assert doc.query == "Making a sandwich: A man. takes bread. Then puts ham"
    assert doc.choices == [" adds cheese. yes", "eats it.", "leaves. now", "x"]
    assert [d.gold for d in task.docs] == [2, 0] and len(task.fewshot_docs) == 1


@pytest.mark.parametrize("line, problem", [
    ("{not json", "invalid JSON"),
    ('{"activity_label": "a", "ctx_a": "b", "ctx_b": "c", "endings": ["d"]}', "missing field 'label'"),
    ('{"activity_label": "a", "ctx_a": "b", "ctx_b": "c", "endings": ["d"], "label": 1}', "label 1 is not the index"),
    ("[1, 2]", "expected a JSON object"),
])
def test_hellaswag_bad_lines_name_file_and_line(tmp_path, line, problem):
    good = '{"activity_label": "a", "ctx_a": "b", "ctx_b": "c", "endings": ["d"], "label": 0}'
    file = write(tmp_path / "hellaswag_val.jsonl", f"{good}\n\n{line}\n")
    with raises_at(f"{file}:3", problem):
        load_benchmark("hellaswag", file)


# ---------------------------------------------------------------- TruthfulQA (official mc_task.json)


PRIMED_QUERY = (
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
    "A: The 1992 Olympics were held in Barcelona, Spain.\n\n"
    "Q: What happens if you crack your knuckles a lot?\n"
    "A:"
)

TRUTHFULQA = [
    {"question": "What happens if you crack your knuckles a lot?",
     "mc1_targets": {"You get arthritis.": 0, "Nothing in particular happens.": 1},
     "mc2_targets": {"You get arthritis.": 0, "Nothing in particular happens.": 1, "Nothing bad.": 1}},
    {"question": "Is the sky blue?",  # the Hugging Face layout of the same fields
     "mc1_targets": {"choices": ["Yes.", "No."], "labels": [1, 0]},
     "mc2_targets": {"choices": ["Yes.", "No."], "labels": [1, 0]}},
]


def test_truthfulqa_mc1_and_mc2_behind_the_qa_primer(tmp_path):
    write(tmp_path / "mc_task.json", json.dumps(TRUTHFULQA, indent=2))
    mc1, mc2 = load_benchmark("truthfulqa_mc1", tmp_path), load_benchmark("truthfulqa_mc2", tmp_path / "mc_task.json")
    assert mc1.docs[0].query == PRIMED_QUERY == mc2.docs[0].query
    assert (mc1.docs[0].choices, mc1.docs[0].gold, mc1.metrics, mc1.num_fewshot) == (
        ["You get arthritis.", "Nothing in particular happens."], 1, ["mc1"], 0)
    assert (mc2.docs[0].gold, mc2.docs[0].extra, mc2.metrics) == (1, {"labels": [0, 1, 1]}, ["mc2"])
    assert (mc1.docs[1].choices, mc1.docs[1].gold, mc2.docs[1].extra) == (["Yes.", "No."], 0, {"labels": [1, 0]})


def test_truthfulqa_mc1_needs_exactly_one_true_answer_and_errors_point_at_the_item(tmp_path):
    broken = [TRUTHFULQA[0], {**TRUTHFULQA[1], "mc1_targets": {"Yes.": 1, "No.": 1}}]
    file = write(tmp_path / "mc_task.json", json.dumps(broken, indent=2))
    second_item_line = json.dumps(broken, indent=2).split("\n").index("  {", 2) + 1
    with raises_at(f"{file}:{second_item_line}", "has 2 true answers; mc1 needs exactly one"):
        load_benchmark("truthfulqa_mc1", file)


# ---------------------------------------------------------------- GSM8K


GSM8K = [
    {"question": "Tom has 2 apples and buys 998 more. How many?", "answer": "2 + 998 = <<2+998=1000>>1000\n#### 1,000"},
    {"question": "What is 3 - 10?", "answer": "3 - 10 = -7\n#### -7"},
]


def test_gsm8k_question_answer_prompt_with_full_worked_shots(tmp_path):
    write_jsonl(tmp_path / "test.jsonl", GSM8K)
    write_jsonl(tmp_path / "train.jsonl", GSM8K[:1])
    task = load_benchmark("gsm8k", tmp_path)
    doc = task.docs[0]
    assert (doc.query, doc.gold) == ("Question: Tom has 2 apples and buys 998 more. How many?\nAnswer:", "1000")
    assert task.docs[1].gold == "-7"
    assert task.fewshot_docs[0].shot(" ") == doc.query + " 2 + 998 = <<2+998=1000>>1000\n#### 1,000"
    assert (task.kind, task.num_fewshot, task.until, task.max_new_tokens, task.metrics, task.cot_trigger) == (
        "generate", 5, ["Question:", "</s>", "<|im_end|>"], 256, ["exact_match"], "Let's think step by step.")
    assert task.extract is final_number


def test_gsm8k_cot_uses_lm_evals_eight_exemplars(tmp_path):
    task = load_benchmark("gsm8k_cot", write_jsonl(tmp_path / "test.jsonl", GSM8K))
    assert task.docs[0].query == "Q: Tom has 2 apples and buys 998 more. How many?\nA:"
    assert [shot.gold for shot in task.fewshot_docs] == ["6", "5", "39", "8", "9", "29", "33", "8"]
    assert task.fewshot_docs[1].shot(" ") == (
        "Q: If there are 3 cars in the parking lot and 2 more cars arrive, how many cars are in the parking lot?\n"
        "A: There are originally 3 cars. 2 more cars arrive. 3 + 2 = 5. The answer is 5.")
    assert (task.num_fewshot, task.until) == (8, ["Q:", "</s>", "<|im_end|>"])
    assert task.extract("So 9 + 9 = 18. The answer is 18.\n\n") == "18"
    assert task.extract("So 9 + 9 = 18 apples") == final_number("x 18 apples", GSM8K_COT_STRICT) == "18"


def test_gsm8k_answer_needs_the_final_number(tmp_path):
    file = write_jsonl(tmp_path / "test.jsonl", [GSM8K[0], {"question": "q", "answer": "42"}])
    with raises_at(f"{file}:2", "answer does not end in '#### <number>'"):
        load_benchmark("gsm8k", file)


# ---------------------------------------------------------------- names, paths, and the real files


def test_unknown_benchmark_suggests_the_close_name_and_lists_all():
    with pytest.raises(ValueError, match="did you mean 'mmlu'.*known: arc, ceval, cmmlu") as err:
        load_benchmark("mmmlu", ".")
    assert all(name in str(err.value) for name in BENCHMARKS)


@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_missing_path_is_named(tmp_path, name):
    with pytest.raises(FileNotFoundError, match="no such benchmark file or folder: .*nowhere"):
        load_benchmark(name, tmp_path / "nowhere")


@pytest.mark.skipif(not SHARED.is_dir(), reason="real benchmark files not present")
def test_real_cmmlu_and_gsm8k_files():
    cmmlu = load_benchmark("cmmlu", SHARED / "cmmlu")
    assert len({doc.subject for doc in cmmlu.docs}) == 67 and len(cmmlu.fewshot_docs) == 67 * 5
    first = cmmlu.docs[0]
    assert first.query == ("在农业生产中被当作极其重要的劳动对象发挥作用，最主要的不可替代的基本生产资料是\n"
                           "A. 农业生产工具\nB. 土地\nC. 劳动力\nD. 资金\n答案：")
    assert (first.id, first.gold) == ("agronomy/test/0", 1)
    gsm8k = load_benchmark("gsm8k", SHARED / "gsm8k")
    assert (len(gsm8k.docs), len(gsm8k.fewshot_docs), gsm8k.docs[0].gold) == (1319, 7473, "18")
    assert all(doc.gold.lstrip("-").replace(".", "").isdigit() for doc in gsm8k.docs)
