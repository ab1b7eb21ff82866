"""Loading task data: file formats, field mapping, error messages, splits, hub folders, shipped doc_qa."""

import json
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from smelt.errors import SmeltError
from smelt.programs.data_files import load_records, sha256_of_file
from smelt.programs.datasets import Splits, load_hub_records, load_splits, seeded_split
from smelt.programs.doc_qa import load_doc_qa_shipped
from smelt.programs.field_mapping import parse_field_mapping, to_examples

SHIPPED = Path(__file__).resolve().parents[1] / "data" / "doc_qa"
UNANSWERABLE = {"The document does not say.", "文書に記載がありません。"}
QA = {"fields": {}, "input_keys": ("question",), "required": ("question", "answer")}


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def qa_rows(n: int, prefix: str = "q") -> list[dict]:
    return [{"id": f"{prefix}{i}", "question": f"question {i}?", "answer": f"answer {i}"} for i in range(n)]


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    """Keep datasets' cache inside tmp_path and the hub offline."""
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)


# ---------------------------------------------------------------------------- file formats


def test_jsonl_records_skip_blank_lines_and_tolerate_bom(tmp_path):
    path = tmp_path / "qa.jsonl"
    path.write_bytes('\ufeff{"question": "a?"}\n\n{"question": "b?"}\n  \n{"question": "日本?"}\n'.encode())
    assert load_records(path) == [
        (1, {"question": "a?"}),
        (3, {"question": "b?"}),
        (5, {"question": "日本?"}),
    ]


def test_json_suffix_is_read_as_json_lines(tmp_path):
    path = write_jsonl(tmp_path / "qa.json", qa_rows(2))
    assert [line for line, _ in load_records(path)] == [1, 2]


def test_csv_records_count_header_as_line_one(tmp_path):
    path = tmp_path / "qa.csv"
    path.write_text('\ufeffquestion , answer\nq1?,a1\n\n"multi\nline?",a2\nq3?,a3\n', encoding="utf-8")
    assert load_records(path) == [
        (2, {"question": "q1?", "answer": "a1"}),
        (4, {"question": "multi\nline?", "answer": "a2"}),
        (6, {"question": "q3?", "answer": "a3"}),
    ]


def test_parquet_records_are_numbered_from_one(tmp_path):
    path = tmp_path / "qa.parquet"
    pq.write_table(pa.Table.from_pylist(qa_rows(3)), path)
    records = load_records(path)
    assert [line for line, _ in records] == [1, 2, 3]
    assert records[2][1] == {"id": "q2", "question": "question 2?", "answer": "answer 2"}


def test_sha256_of_file(tmp_path):
    path = tmp_path / "x.txt"
    path.write_bytes(b"abc")
    assert sha256_of_file(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


# ---------------------------------------------------------------------------- file errors


def test_missing_file(tmp_path):
    with pytest.raises(
        SmeltError, match=r"nope\.jsonl: no such file; pass an existing JSONL, CSV or Parquet"
    ):
        load_records(tmp_path / "nope.jsonl")


BAD_FILES = {
    "unknown extension": ("qa.txt", b"hello\n", r"qa\.txt: unsupported file type '\.txt'.*\.jsonl.*\.csv.*\.parquet"),
    "invalid JSON line": ("qa.jsonl", b'{"question": "a?"}\n\n{"question": "b?",}\n',
                          r"qa\.jsonl:3: not valid JSON \(.+\)$"),
    "JSON line not an object": ("qa.jsonl", b'{"question": "a?"}\n["question", "b?"]\n',
                                r"qa\.jsonl:2: expected a JSON object, got list$"),
    "not UTF-8": ("qa.csv", "question,answer\ncafé?,oui\n".encode("latin-1"),
                  r"qa\.csv:2: not valid UTF-8 text; re-save the file as UTF-8"),
    "CSV row too long": ("qa.csv", b"question,answer\nq1?,a1\nq2?,a,2\n",
                         r"qa\.csv:3: 3 values but the header has 2 columns"),
    "unreadable Parquet": ("qa.parquet", b"not parquet at all", r"qa\.parquet: not a readable Parquet file"),
}


@pytest.mark.parametrize("case", BAD_FILES)
def test_a_bad_file_is_named_with_its_line_and_what_is_wrong(tmp_path, case):
    name, content, message = BAD_FILES[case]
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(SmeltError, match=message):
        load_records(path)


def test_errors_are_one_line(tmp_path):
    path = tmp_path / "qa.jsonl"
    path.write_text("{oops\n")
    with pytest.raises(SmeltError) as info:
        load_records(path)
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------------------- records -> examples


def test_to_examples_maps_fields_strips_and_keeps_metadata(tmp_path):
    path = tmp_path / "qa.csv"
    path.write_text("prompt,gold,language,kind\n  What?  , 42 ,en,fact\n")
    (example,) = to_examples(
        load_records(path),
        source=str(path),
        fields={"question": "prompt", "answer": "gold"},
        input_keys=("question",),
        required=("question", "answer"),
    )
    assert example.question == "What?" and example.answer == "42"
    assert example.language == "en" and example.kind == "fact"
    assert example.id == "qa.csv:2"
    assert "prompt" not in example and "gold" not in example
    assert set(example.inputs().keys()) == {"question"}
    assert set(example.labels().keys()) == {"id", "answer", "language", "kind"}


def test_to_examples_converts_values_to_str_and_keeps_record_id():
    records = [(7, {"id": 12, "question": "How many?", "answer": 3})]
    (example,) = to_examples(records, source="x.jsonl", **QA)
    assert example.id == "12" and example.answer == "3"


def test_missing_required_field_lists_columns_and_hint():
    records = [(1, {"question": "a?", "answer": "b"}), (4, {"prompt": "c?", "gold": "d", "lang": "en"})]
    with pytest.raises(SmeltError) as info:
        to_examples(records, source="data/qa.jsonl", **QA)
    assert str(info.value) == (
        "data/qa.jsonl:4: missing field 'question' (columns here: prompt, gold, lang); "
        "map it with --field question=COLUMN"
    )


def test_missing_mapped_column_names_the_column():
    records = [(2, {"question": "a?", "answer": "b"})]
    with pytest.raises(
        SmeltError, match=r"qa\.jsonl:2: missing field 'question' \(column 'prompt' per --field"
    ):
        to_examples(
            records, source="qa.jsonl", fields={"question": "prompt"}, input_keys=(), required=("question",)
        )


@pytest.mark.parametrize("value", ["", "   ", None])
def test_empty_required_value(value):
    records = [(3, {"question": "a?", "answer": value})]
    with pytest.raises(SmeltError, match=r"qa\.jsonl:3: .*'answer'"):
        to_examples(records, source="qa.jsonl", **QA)


def test_parse_field_mapping():
    assert parse_field_mapping(("question=prompt", " answer = gold ")) == {
        "question": "prompt",
        "answer": "gold",
    }
    assert parse_field_mapping(()) == {}


@pytest.mark.parametrize("bad", ["question", "=prompt", "question=", "question:prompt"])
def test_parse_field_mapping_rejects_malformed(bad):
    with pytest.raises(SmeltError, match=r"--field .*expected FIELD=COLUMN"):
        parse_field_mapping((bad,))


def test_parse_field_mapping_rejects_conflicting_duplicates():
    with pytest.raises(SmeltError, match=r"--field question=.*given twice"):
        parse_field_mapping(("question=a", "question=b"))


# ---------------------------------------------------------------------------- nested columns (paths)


def squad_rows(n: int, prefix: str = "s") -> list[dict]:
    """SQuAD / JSQuAD layout: the gold answer is answers.text[0]."""
    return [
        {
            "id": f"{prefix}{i}",
            "question": f"question {i}?",
            "answers": {"text": [f"answer {i}"], "answer_start": [i]},
            "meta": {"source": "wiki", "tags": ["a", "b"]},
            "choices": [{"label": "A"}, {"label": "B"}, {"label": f"C{i}"}],
        }
        for i in range(n)
    ]


SQUAD = {"input_keys": ("question",), "required": ("question", "answer")}


def test_parse_field_mapping_accepts_paths():
    assert parse_field_mapping(("answer=answers.text[0]", "source=meta.source", "label=choices[2].label")) == {
        "answer": "answers.text[0]",
        "source": "meta.source",
        "label": "choices[2].label",
    }
    assert parse_field_mapping(("x=grid[0][1]", "y=Answer (e.g. Tokyo)")) == {
        "x": "grid[0][1]",
        "y": "Answer (e.g. Tokyo)",
    }


@pytest.mark.parametrize(
    ("column", "why"),
    [
        ("answers..text", "empty key between dots"),
        ("text[x]", "'[x]' is not a list index [N] with N a whole number"),
        ("text[-1]", "'[-1]' is not a list index [N] with N a whole number"),
        ("answers.", "ends with a dot"),
        (".text", "starts with a dot"),
        ("[0]", "'[0]': a list index must follow a key"),
        ("answers.[0]", "'[0]': a list index must follow a key"),
        ("text[0]x", "'x' is not a list index [N] with N a whole number"),
        ("text]", "'text]' has ']' without '['"),
    ],
)
def test_parse_field_mapping_rejects_malformed_paths(column, why):
    with pytest.raises(SmeltError) as info:
        parse_field_mapping((f"answer={column}",))
    assert str(info.value) == (
        f"--field answer={column}: not a valid column path ({why}); join keys with dots and write list items "
        "as [N], e.g. answers.text[0] (or rename the column if that is its name)"
    )


def test_nested_path_on_jsonl(tmp_path):
    path = write_jsonl(tmp_path / "squad.jsonl", squad_rows(3))
    fields = parse_field_mapping(("answer=answers.text[0]", "source=meta.source", "label=choices[2].label"))
    splits = load_splits(data=None, train=str(path), dev=str(path), test=str(path), seed=0, fields=fields, **SQUAD)
    first, second, _ = splits.train
    assert (first.id, first.question, first.answer) == ("s0", "question 0?", "answer 0")
    assert (second.answer, second.source, second.label) == ("answer 1", "wiki", "C1")
    # The top-level column of a mapped path is consumed like a mapped column, not copied as metadata.
    assert "answers" not in first and "meta" not in first and "choices" not in first
    assert set(first.labels().keys()) == {"id", "answer", "source", "label"}


def test_nested_path_on_parquet(tmp_path):
    path = tmp_path / "squad.parquet"
    pq.write_table(pa.Table.from_pylist(squad_rows(5)), path)
    splits = load_splits(
        data=str(path), train=None, dev=None, test=None, seed=0, fields={"answer": "answers.text[0]"}, **SQUAD
    )
    examples = sorted(splits.train + splits.dev + splits.test, key=lambda e: e.id)
    assert [e.answer for e in examples] == [f"answer {i}" for i in range(5)]
    assert examples[0].meta == {"source": "wiki", "tags": ["a", "b"]}  # unmapped nested columns stay metadata
    assert "answers" not in examples[0]


PATH_MISSES = {
    "list index out of range": (
        "answers.text[3]",
        {"answers": {"text": ["Tokyo"], "answer_start": [3]}},
        "answers.text has 1 item",
    ),
    "empty list": ("answers.text[0]", {"answers": {"text": [], "answer_start": []}}, "answers.text has 0 items"),
    "no such key": (
        "answers.txt[0]",
        {"answers": {"text": ["Tokyo"], "answer_start": [3]}},
        "answers has no key 'txt' (keys: text, answer_start)",
    ),
    "not a list": ("answers.text[0]", {"answers": {"text": "Tokyo"}}, "answers.text is a string, not a list"),
    "not a dict": ("answers.text[0]", {"answers": ["Tokyo"]}, "answers is a list, not a dict"),
    "null on the way": ("answers.text[0]", {"answers": None}, "answers is null, not a dict"),
    "null at the end": ("answers.text[0]", {"answers": {"text": [None]}}, "answers.text[0] is null"),
    "no column": ("answers.text[0]", {"gold": "Tokyo"}, "no column 'answers'; columns here: question, gold"),
}


@pytest.mark.parametrize("case", PATH_MISSES)
def test_a_path_that_does_not_resolve_is_a_missing_field(tmp_path, case):
    column, record, why = PATH_MISSES[case]
    path = tmp_path / "squad.jsonl"
    path.write_text("\n" + json.dumps({"question": "q?", **record}) + "\n")  # the record is on line 2
    with pytest.raises(SmeltError) as info:
        load_splits(data=str(path), train=None, dev=None, test=None, seed=0, fields={"answer": column}, **SQUAD)
    assert str(info.value) == (
        f"{path}:2: missing field 'answer' (path '{column}' per --field: {why}); "
        f"fix --field answer={column} or drop the line"
    )


def test_a_path_that_does_not_resolve_skips_an_optional_field():
    records = [(1, {"question": "q?", "answer": "a", "meta": {"tags": []}})]
    (example,) = to_examples(records, source="x.jsonl", fields={"tag": "meta.tags[0]"}, **SQUAD)
    assert "tag" not in example and "meta" not in example


def test_a_dotted_column_name_is_looked_up_before_the_path():
    records = [(1, {"question": "q?", "answer.text": "exact", "answer": {"text": "nested"}, "meta": {"k": 1}})]
    (example,) = to_examples(records, source="x.jsonl", fields={"answer": "answer.text"}, **SQUAD)
    assert example.answer == "exact"
    records = [(1, {"question": "q?", "meta.source": "exact", "meta": {"source": "nested"}, "answer": "a"})]
    (example,) = to_examples(records, source="x.jsonl", fields={"source": "meta.source"}, **SQUAD)
    assert example.source == "exact"
    assert example.meta == {"source": "nested"}  # only the column actually used is consumed


# ---------------------------------------------------------------------------- task fields must be text


def test_a_dict_valued_answer_suggests_a_path_to_its_text(tmp_path):
    path = write_jsonl(tmp_path / "squad.jsonl", squad_rows(3))
    with pytest.raises(SmeltError) as info:
        load_splits(data=str(path), train=None, dev=None, test=None, seed=0, fields={"answer": "answers"}, **SQUAD)
    assert str(info.value) == (
        f"{path}:1: field 'answer' (column 'answers') is a dict (keys: text, answer_start), not text; "
        "map the text inside it with --field answer=answers.text[0]"
    )


def test_the_suggested_path_skips_non_text_values():
    records = [(4, {"question": "q?", "answer": {"answer_start": [3], "text": ["Tokyo"]}})]
    with pytest.raises(SmeltError) as info:
        to_examples(records, source="qa.jsonl", **QA)
    assert str(info.value) == (
        "qa.jsonl:4: field 'answer' is a dict (keys: answer_start, text), not text; "
        "map the text inside it with --field answer=answer.text[0]"
    )


def test_a_list_valued_answer_suggests_an_item(tmp_path):
    rows = [{"question": "q?", "answers": v} for v in ("a", 1, ["a", "b"])]  # numbers are still fine
    path = write_jsonl(tmp_path / "qa.jsonl", rows)
    with pytest.raises(SmeltError) as info:
        load_splits(data=str(path), train=None, dev=None, test=None, seed=0, fields={"answer": "answers"}, **SQUAD)
    assert str(info.value) == (
        f"{path}:3: field 'answer' (column 'answers') is a list of 2 items, not text; "
        "map the text inside it with --field answer=answers[0]"
    )


def test_a_path_that_stops_at_a_list_suggests_going_further():
    records = [(2, {"question": "q?", "answers": {"text": ["Tokyo"]}})]
    with pytest.raises(SmeltError) as info:
        to_examples(records, source="x.jsonl", fields={"answer": "answers.text"}, **SQUAD)
    assert str(info.value) == (
        "x.jsonl:2: field 'answer' (column 'answers.text') is a list of 1 item, not text; "
        "map the text inside it with --field answer=answers.text[0]"
    )


@pytest.mark.parametrize("value", [{}, [], {"start": [1, 2]}, [[None]]])
def test_a_nested_value_without_text_gets_no_path_suggestion(value):
    records = [(1, {"question": value, "answer": "a"})]
    with pytest.raises(SmeltError) as info:
        to_examples(records, source="x.jsonl", **QA)
    assert str(info.value).startswith("x.jsonl:1: field 'question' is ")
    assert str(info.value).endswith(
        ", not text; map --field question=COLUMN to a column or path (like COLUMN.key[0]) that holds text"
    )


def test_numbers_and_booleans_are_still_text():
    records = [(1, {"question": True, "answer": 2.5, "id": 7})]
    (example,) = to_examples(records, source="x.jsonl", **QA)
    assert (example.question, example.answer, example.id) == ("True", "2.5", "7")


# ---------------------------------------------------------------------------- ids


def test_duplicate_ids_in_one_file_name_both_lines(tmp_path):
    rows = [{"id": f"doc-{i // 2}", "question": f"q{i}?", "answer": "a"} for i in range(8)]
    path = write_jsonl(tmp_path / "qa.jsonl", [qa_rows(1)[0], *rows])
    with pytest.raises(SmeltError) as info:
        load_splits(data=str(path), train=None, dev=None, test=None, seed=0, **QA)
    assert str(info.value) == (
        f"{path}:3: id 'doc-0' is also the id of line 2; each example needs its own id "
        "(is this column a document id? map a unique column with --field id=COLUMN, "
        "or rename it so smelt numbers the lines)"
    )


def test_duplicate_ids_in_a_mapped_id_column(tmp_path):
    path = write_jsonl(tmp_path / "qa.jsonl", [{"qid": "x", "question": f"q{i}?", "answer": "a"} for i in range(3)])
    with pytest.raises(SmeltError) as info:
        load_splits(data=None, train=str(path), dev=str(path), test=str(path), seed=0, fields={"id": "qid"}, **SQUAD)
    assert str(info.value) == (
        f"{path}:2: id 'x' (column 'qid' per --field) is also the id of line 1; each example needs its own id "
        "(is this column a document id? map a unique column with --field id=COLUMN, "
        "or drop --field id=qid so smelt numbers the lines)"
    )


def test_field_id_maps_the_id_column(tmp_path):
    rows = [{"id": "doc-1", "qid": f"q{i}", "question": f"q{i}?", "answer": "a"} for i in range(5)]
    del rows[4]["qid"]
    path = write_jsonl(tmp_path / "qa.jsonl", rows)
    fields = parse_field_mapping(("id=qid",))
    splits = load_splits(data=None, train=str(path), dev=str(path), test=str(path), seed=0, fields=fields, **SQUAD)
    assert [e.id for e in splits.train] == ["q0", "q1", "q2", "q3", "qa.jsonl:5"]  # not the document id
    assert "qid" not in splits.train[0]


def test_same_ids_in_train_dev_and_test_files_are_fine(tmp_path):
    paths = {name: write_jsonl(tmp_path / f"{name}.jsonl", qa_rows(3)) for name in ("train", "dev", "test")}
    splits = load_splits(data=None, seed=0, **{k: str(v) for k, v in paths.items()}, **QA)
    assert [e.id for e in splits.train] == [e.id for e in splits.dev] == [e.id for e in splits.test] == [
        "q0",
        "q1",
        "q2",
    ]
    numbered = {
        name: write_jsonl(tmp_path / f"{name}.jsonl", [{"question": "q?", "answer": "a"}] * 2)
        for name in ("train", "dev", "test")
    }
    splits = load_splits(data=None, seed=0, **{k: str(v) for k, v in numbered.items()}, **QA)
    assert [e.id for e in splits.dev] == ["dev.jsonl:1", "dev.jsonl:2"]


def test_an_id_must_be_text():
    records = [(1, {"id": {"doc": 3}, "question": "q?", "answer": "a"})]
    with pytest.raises(SmeltError, match=r"^x\.jsonl:1: field 'id' is a dict \(keys: doc\), not text; "):
        to_examples(records, source="x.jsonl", **QA)


# ---------------------------------------------------------------------------- splits


def test_seeded_split_is_deterministic_disjoint_and_complete():
    examples = to_examples([(i + 1, r) for i, r in enumerate(qa_rows(50))], source="qa.jsonl", **QA)
    first = seeded_split(examples, seed=7)
    again = seeded_split(examples, seed=7)
    other = seeded_split(examples, seed=8)
    ids = [[e.id for e in part] for part in first]
    assert ids == [[e.id for e in part] for part in again]
    assert ids != [[e.id for e in part] for part in other]
    assert [len(part) for part in ids] == [20, 10, 20]
    assert sorted(sum(ids, [])) == sorted(e.id for e in examples)
    assert not (set(ids[0]) & set(ids[1]) or set(ids[0]) & set(ids[2]) or set(ids[1]) & set(ids[2]))


@pytest.mark.parametrize("n", [3, 4, 5])
def test_seeded_split_gives_every_split_an_example(n):
    examples = to_examples([(i + 1, r) for i, r in enumerate(qa_rows(n))], source="qa.jsonl", **QA)
    parts = seeded_split(examples, seed=0)
    assert all(parts) and sum(len(p) for p in parts) == n


def test_seeded_split_needs_three_examples():
    examples = to_examples([(1, qa_rows(1)[0]), (2, qa_rows(2)[1])], source="qa.jsonl", **QA)
    with pytest.raises(SmeltError, match=r"qa\.jsonl: only 2 example\(s\); need at least 3"):
        seeded_split(examples, seed=0, source="qa.jsonl")


def test_load_splits_from_one_file(tmp_path):
    path = write_jsonl(tmp_path / "qa.jsonl", qa_rows(10))
    splits = load_splits(data=str(path), train=None, dev=None, test=None, seed=1, **QA)
    assert isinstance(splits, Splits)
    assert (len(splits.train), len(splits.dev), len(splits.test)) == (4, 2, 4)
    assert splits.sources == {"train": str(path), "dev": str(path), "test": str(path)}


def test_load_splits_explicit_files_win(tmp_path):
    paths = {
        name: write_jsonl(tmp_path / f"{name}.jsonl", qa_rows(n, name))
        for name, n in [("train", 3), ("dev", 2), ("test", 1)]
    }
    other = write_jsonl(tmp_path / "other.jsonl", qa_rows(30))
    splits = load_splits(data=str(other), seed=0, **{k: str(v) for k, v in paths.items()}, **QA)
    assert [e.id for e in splits.train] == ["train0", "train1", "train2"]
    assert [e.id for e in splits.dev] == ["dev0", "dev1"]
    assert [e.id for e in splits.test] == ["test0"]
    assert splits.sources == {k: str(v) for k, v in paths.items()}


def test_load_splits_explicit_files_need_all_three(tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", qa_rows(3))
    with pytest.raises(SmeltError, match=r"^--dev and --test missing"):
        load_splits(data=None, train=str(train), dev=None, test=None, seed=0, **QA)


def test_load_splits_errors_name_the_bad_line_in_split_files(tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", qa_rows(3))
    dev = write_jsonl(tmp_path / "dev.jsonl", [*qa_rows(1), {"question": "no answer?"}])
    with pytest.raises(SmeltError, match=r"dev\.jsonl:2: missing field 'answer'"):
        load_splits(data=None, train=str(train), dev=str(dev), test=str(train), seed=0, **QA)


def test_load_splits_without_any_data():
    with pytest.raises(SmeltError, match="no data given"):
        load_splits(data=None, train=None, dev=None, test=None, seed=0, **QA)


def test_load_splits_missing_local_file(tmp_path):
    with pytest.raises(SmeltError, match=r"--data .*qa\.jsonl: no such file"):
        load_splits(data=str(tmp_path / "qa.jsonl"), train=None, dev=None, test=None, seed=0, **QA)


def test_load_splits_missing_relative_file_is_not_taken_for_a_hub_id(monkeypatch):
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: pytest.fail("must not reach the hub"))
    with pytest.raises(SmeltError, match=r"--data data/qa\.jsonl: no such file"):
        load_splits(data="data/qa.jsonl", train=None, dev=None, test=None, seed=0, **QA)


def test_hub_id_failure_says_how_to_download(monkeypatch):
    calls = []

    def offline(*args, **kwargs):
        calls.append(args)
        raise ConnectionError("Couldn't reach the Hugging Face Hub\nmore detail")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(SmeltError) as info:
        load_splits(data="someone/some-qa:en", train=None, dev=None, test=None, seed=0, **QA)
    assert calls == [("someone/some-qa", "en")]
    assert str(info.value) == (
        "dataset 'someone/some-qa:en' could not be loaded from the hub "
        "(Couldn't reach the Hugging Face Hub); download it first with "
        "`hf download --repo-type dataset someone/some-qa` or pass a local file with --data"
    )


# ---------------------------------------------------------------------------- hub loader on a local folder


def test_hub_loader_reads_a_local_dataset_folder(tmp_path, hf_cache):
    folder = tmp_path / "owner_qa"
    folder.mkdir()
    for name, n in [("train", 4), ("validation", 3), ("test", 2)]:
        write_jsonl(folder / f"{name}.jsonl", qa_rows(n, name))
    records = load_hub_records(str(folder))
    assert list(records) == ["train", "validation", "test"]
    assert records["validation"][0] == (
        1,
        {"id": "validation0", "question": "question 0?", "answer": "answer 0"},
    )
    assert [line for line, _ in records["train"]] == [1, 2, 3, 4]

    splits = load_splits(data=str(folder), train=None, dev=None, test=None, seed=0, **QA)
    assert [e.id for e in splits.dev] == ["validation0", "validation1", "validation2"]
    assert (len(splits.train), len(splits.test)) == (4, 2)
    assert splits.sources["dev"] == str(folder)


def test_hub_folder_without_validation_is_split_by_seed(tmp_path, hf_cache):
    folder = tmp_path / "only_train"
    folder.mkdir()
    write_jsonl(folder / "train.jsonl", qa_rows(10))
    splits = load_splits(data=str(folder), train=None, dev=None, test=None, seed=3, **QA)
    assert (len(splits.train), len(splits.dev), len(splits.test)) == (4, 2, 4)


def test_hub_rows_report_split_and_row_number(tmp_path, hf_cache):
    folder = tmp_path / "bad"
    folder.mkdir()
    write_jsonl(folder / "train.jsonl", [{"prompt": "q?", "answer": "a"}] * 3)
    with pytest.raises(
        SmeltError, match=rf"{folder}\[train\]:1: missing field 'question' \(columns here: prompt"
    ):
        load_splits(data=str(folder), train=None, dev=None, test=None, seed=0, **QA)


def test_hub_folder_with_squad_answers(tmp_path, hf_cache):
    folder = tmp_path / "squad_like"
    folder.mkdir()
    for name, n in [("train", 4), ("validation", 3), ("test", 2)]:
        write_jsonl(folder / f"{name}.jsonl", squad_rows(n, name))
    fields = parse_field_mapping(("answer=answers.text[0]",))
    splits = load_splits(data=str(folder), train=None, dev=None, test=None, seed=0, fields=fields, **SQUAD)
    assert [(e.id, e.answer) for e in splits.dev] == [(f"validation{i}", f"answer {i}") for i in range(3)]
    assert (len(splits.train), len(splits.test)) == (4, 2)
    assert "answers" not in splits.dev[0]


def test_hub_split_with_duplicate_ids(tmp_path, hf_cache):
    folder = tmp_path / "dups"
    folder.mkdir()
    write_jsonl(folder / "train.jsonl", [{"id": "doc", "question": f"q{i}?", "answer": "a"} for i in range(3)])
    with pytest.raises(SmeltError, match=rf"^{folder}\[train\]:2: id 'doc' is also the id of line 1; "):
        load_splits(data=str(folder), train=None, dev=None, test=None, seed=0, **QA)


def test_hub_loader_wraps_failures_for_an_empty_folder(tmp_path, hf_cache):
    folder = tmp_path / "empty"
    folder.mkdir()
    with pytest.raises(SmeltError, match=r"dataset folder '.*empty' could not be loaded \("):
        load_hub_records(str(folder))


# ---------------------------------------------------------------------------- shipped doc_qa


def make_doc_qa(folder: Path, *, doc_id: str = "d1") -> Path:
    folder.mkdir(parents=True)
    write_jsonl(
        folder / "documents.jsonl",
        [
            {"id": "d1", "language": "en", "title": "Kettles", "text": "A kettle boils water."},
            {"id": "d2", "language": "ja", "title": "猫", "text": "猫は眠る。"},
        ],
    )
    for split in ("train", "dev", "test"):
        write_jsonl(
            folder / f"{split}.jsonl",
            [
                {
                    "id": f"{split}-1",
                    "doc_id": "d1",
                    "language": "en",
                    "question": "What boils water?",
                    "answer": "A kettle.",
                    "kind": "extractive",
                },
                {
                    "id": f"{split}-2",
                    "doc_id": doc_id if split == "dev" else "d2",
                    "language": "ja",
                    "question": "犬は?",
                    "answer": "文書に記載がありません。",
                    "kind": "unanswerable",
                },
            ],
        )
    return folder


def test_doc_qa_joins_questions_with_documents(tmp_path):
    folder = make_doc_qa(tmp_path / "doc_qa")
    splits = load_doc_qa_shipped(folder)
    first, second = splits.train
    assert first.document == "A kettle boils water." and first.question == "What boils water?"
    assert (first.id, first.answer, first.language, first.kind, first.doc_id) == (
        "train-1",
        "A kettle.",
        "en",
        "extractive",
        "d1",
    )
    assert second.document == "猫は眠る。" and second.kind == "unanswerable"
    assert set(first.inputs().keys()) == {"document", "question"}
    assert splits.sources == {
        "documents": str(folder / "documents.jsonl"),
        "train": str(folder / "train.jsonl"),
        "dev": str(folder / "dev.jsonl"),
        "test": str(folder / "test.jsonl"),
    }
    assert load_doc_qa_shipped(tmp_path).sources == splits.sources  # the parent of doc_qa/ works too


def test_doc_qa_unknown_doc_id(tmp_path):
    folder = make_doc_qa(tmp_path / "doc_qa", doc_id="d99")
    with pytest.raises(SmeltError) as info:
        load_doc_qa_shipped(folder)
    assert str(info.value) == f"{folder / 'dev.jsonl'}:2: unknown doc_id 'd99' (not in documents.jsonl)"


def test_doc_qa_question_in_two_splits(tmp_path):
    folder = make_doc_qa(tmp_path / "doc_qa")
    write_jsonl(folder / "test.jsonl", [{"id": "train-1", "doc_id": "d1", "question": "q?", "answer": "a"}])
    with pytest.raises(
        SmeltError, match=r"test\.jsonl:1: duplicate question id 'train-1' \(also at train\.jsonl:1\)"
    ):
        load_doc_qa_shipped(folder)


def test_shipped_doc_qa_data():
    # The data ships with the project, so missing files are a failure, not a skip.
    splits = load_doc_qa_shipped(SHIPPED)
    for name, minimum in [("train", 30), ("dev", 20), ("test", 30)]:
        examples = getattr(splits, name)
        assert len(examples) >= minimum, f"{name}: {len(examples)} examples, want >= {minimum}"
        unanswerable = sum(e.answer in UNANSWERABLE for e in examples)
        assert unanswerable >= 0.1 * len(examples), f"{name}: only {unanswerable} unanswerable questions"
        assert all(e.document for e in examples)
