"""A task file and its data are data: a signature never reaches DSPy's string parser (which imports the names in
annotations), answers must be among the labels, invisible answers are empty, column names match across Unicode
forms, and a dataset folder is read with smelt's own readers.

Mistakes run through the real CLI with the shared check (``mistakes.run_mistake``); the positive cases run in
process, without a model.
"""

import json
import unicodedata
from pathlib import Path

import pytest
from mistakes import ENV, ROOT, run_mistake

from smelt.errors import SmeltError, shown
from smelt.programs.datasets import load_hub_records, load_splits
from smelt.programs.registry import get_task
from smelt.programs.signature_text import ALLOWED_TYPES, SignatureTextError, parse_signature
from smelt.programs.text import is_blank

ZEN = "Beautiful is better"
ROUTING = ROOT / "examples" / "inquiry_routing.toml"
ROUTING_QA = {"fields": {}, "input_keys": ("inquiry",), "required": ("inquiry", "department")}


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return path


def _routing(i: int, department: str = "taxes") -> dict:
    return {"id": f"r{i}", "inquiry": f"inquiry number {i}", "department": department}


@pytest.fixture(scope="module")
def trust(world, tmp_path_factory) -> dict:
    """Task files, a module that must never be imported, and data, in the world's (watched) data folder."""
    folder = world["data"] / "trust"
    folder.mkdir()
    marker = tmp_path_factory.mktemp("marker") / "imported"
    (folder / "evil_mod.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n", encoding="utf-8")

    def task(name: str, signature: str, extra: str = "") -> None:
        (folder / f"{name}.toml").write_text(f"signature = {json.dumps(signature)}\n{extra}", encoding="utf-8")

    task("sig_this", "inquiry: this -> department")
    task("sig_module", "inquiry: evil_mod -> department")
    task("sig_system", "inquiry: os.system('touch pwned') -> department")
    task("sig_list_os", "inquiry: list[os] -> department")
    task("sig_literal", "inquiry -> department: Literal['taxes', 'roads']")
    task("sig_twice", "inquiry, inquiry -> department")
    task("sig_same", "inquiry -> inquiry")
    task("sig_space", "citizen message -> department")
    task("sig_reserved", "inquiry -> schema")
    task("sig_arrows", "inquiry -> department -> office")
    task("labels_twice", "inquiry -> department",
         '[fields.department]\nlabels = ["roads_and_parks", "Roads and Parks"]\n')
    labels = '[fields.department]\nlabels = ["taxes", "roads"]\n'
    task("bad_label", "inquiry -> department",
         labels + '[data]\ntrain = "labelled/train.jsonl"\ndev = "labelled/dev.jsonl"\ntest = "labelled/dev.jsonl"\n')
    _jsonl(folder / "labelled" / "train.jsonl", [_routing(1), _routing(2, "weather"), _routing(3, "roads")])
    _jsonl(folder / "labelled" / "dev.jsonl", [_routing(4), _routing(5, "roads")])
    _jsonl(folder / "routing_bad_label.jsonl", [_routing(i, "taxes") for i in range(4)] + [_routing(9, "parking")])
    qa = [{"document": f"The pool opens at {i}:00.", "question": "When?", "answer": f"{i}:00"} for i in range(5)]
    _jsonl(folder / "zero_width.jsonl", [qa[0], {**qa[1], "answer": "\u200b\u200b"}, qa[2]])
    _jsonl(folder / "invisible_mix.jsonl", [qa[0], qa[1], {**qa[2], "answer": "\u3000\u200b\ufeff\u00a0\u2028"}])
    broken = folder / "broken_folder"
    _jsonl(broken / "train.jsonl", qa)
    (broken / "validation.jsonl").write_text(json.dumps(qa[0]) + "\n" + json.dumps(qa[1]) + "\n{oops\n",
                                             encoding="utf-8")
    _jsonl(broken / "test.jsonl", qa)
    unnamed = folder / "unnamed_folder"
    _jsonl(unnamed / "part1.jsonl", qa)
    _jsonl(unnamed / "part2.jsonl", qa)
    # Nine nested aliases: 9**9 (387 million) strings once expanded.
    levels = ["&l0 [x, x, x, x, x, x, x, x, x]"] + [f"&l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 9)]
    (folder / "alias_bomb.yaml").write_text(f'signature: "inquiry -> department"\ndescription: [{", ".join(levels)}]\n',
                                            encoding="utf-8")
    task("deep", "inquiry -> department", "description = " + "[" * 100_000 + "\n")
    task("huge_metric", "inquiry -> department", f"metric = {json.dumps('f' * 1_000_000)}\n")
    task("invisible_label", "inquiry -> department", '[fields.department]\nlabels = ["billing\\u200b", "taxes"]\n')
    (folder / "deep.jsonl").write_text(json.dumps(qa[0]) + "\n" + "[" * 100_000 + "\n", encoding="utf-8")
    (folder / "semicolons.csv").write_text("document;question;answer\nThe pool opens at 9, on weekdays.;When?;9\n"
                                           "Closed Mondays.;When is it closed?;Mondays\n", encoding="utf-8")
    return {"folder": folder, "marker": marker}


# ---------------------------------------------------------------------------- mistakes through the CLI

_TYPE = "is not allowed; use str, int, float, bool or list[str]"
# (id, task file or argv after `compile`, key words of the error line)
CASES = [
    ("annotation-this", ["{folder}/sig_this.toml"], ["sig_this.toml: signature:", "field 'inquiry'", "'this'", _TYPE]),
    ("annotation-module-next-to-file", ["{folder}/sig_module.toml"],
     ["sig_module.toml: signature:", "'evil_mod'", _TYPE]),
    ("annotation-os-system", ["{folder}/sig_system.toml"], ["sig_system.toml: signature:", "os.system", _TYPE]),
    ("annotation-list-of-module", ["{folder}/sig_list_os.toml"], ["sig_list_os.toml", "'list[os]'", _TYPE]),
    ("annotation-literal", ["{folder}/sig_literal.toml"],
     ["sig_literal.toml", "field 'department'", "Literal", "fields.department.labels"]),
    ("input-given-twice", ["{folder}/sig_twice.toml"], ["sig_twice.toml: signature:", "'inquiry' is given twice"]),
    ("input-is-output", ["{folder}/sig_same.toml"], ["sig_same.toml", "'inquiry' is both an input and an output"]),
    ("name-not-identifier", ["{folder}/sig_space.toml"], ["sig_space.toml", "'citizen message' is not a valid name"]),
    ("name-reserved", ["{folder}/sig_reserved.toml"], ["sig_reserved.toml", "field 'schema'", "choose another"]),
    ("two-arrows", ["{folder}/sig_arrows.toml"], ["sig_arrows.toml: signature:", "exactly one '->'"]),
    ("labels-same-to-the-metric", ["{folder}/labels_twice.toml"],
     ["labels_twice.toml: fields.department.labels", "'Roads and Parks' is listed twice", "'roads_and_parks'"]),
    ("label-outside-in-task-data", ["{folder}/bad_label.toml"],
     ["labelled/train.jsonl:2", "'weather'", "not one of the labels (taxes, roads)"]),
    ("label-outside-in-data-flag", [str(ROUTING), "--data", "{folder}/routing_bad_label.jsonl"],
     ["routing_bad_label.jsonl:5", "'parking'", "not one of the labels", "waste_and_recycling", "roads_and_parks"]),
    ("answer-zero-width-space", ["doc_qa", "--data", "{folder}/zero_width.jsonl"],
     ["zero_width.jsonl:2", "'answer'", "empty"]),
    ("answer-invisible-mix", ["doc_qa", "--data", "{folder}/invisible_mix.jsonl"],
     ["invisible_mix.jsonl:3", "'answer'", "empty"]),
    ("data-folder-broken-file", ["doc_qa", "--data", "{folder}/broken_folder"],
     ["broken_folder/validation.jsonl:3", "not valid JSON"]),
    ("data-folder-without-split-names", ["doc_qa", "--data", "{folder}/unnamed_folder"],
     ["unnamed_folder", "part1.jsonl, part2.jsonl", "train", "validation", "test"]),
    # Refused at the first alias: expanded, the value would fill the memory before any message is made.
    ("yaml-alias-bomb", ["{folder}/alias_bomb.yaml"],
     ["alias_bomb.yaml:2", "YAML alias (*l0)", "no anchors or aliases"]),
    ("task-file-nested-too-deeply", ["{folder}/deep.toml"], ["deep.toml", "nested too deeply"]),
    ("label-with-invisible-character", ["{folder}/invisible_label.toml"],
     ["invisible_label.toml: fields.department.labels", "'billing\\u200b'", "invisible character", "U+200B"]),
    ("data-line-nested-too-deeply", ["doc_qa", "--data", "{folder}/deep.jsonl"], ["deep.jsonl:2", "nested too deeply"]),
    ("csv-separated-by-semicolons", ["doc_qa", "--data", "{folder}/semicolons.csv"],
     ["semicolons.csv:1", "'document;question;answer'", "semicolons (;)", "commas"]),
]


@pytest.mark.parametrize("args, fragments", [pytest.param(a, f, id=i) for i, a, f in CASES])
def test_a_task_file_or_data_mistake_is_one_line(world, trust, tmp_path, args, fragments):
    # The folder is on PYTHONPATH so that a resolver that imports names would find evil_mod there.
    env = {**ENV, "PYTHONPATH": str(trust["folder"])}
    result = run_mistake(world, tmp_path / "work", ["compile", *(a.format_map(trust) for a in args)],
                         [f.format_map(trust) for f in fragments], env=env)
    assert ZEN not in result.stdout + result.stderr  # `this` was never imported
    assert not trust["marker"].exists()  # nor the module next to the task file
    print(f"{result.wall_s:.1f}s {result.stderr.strip()}")  # pytest -rP shows each message


def test_a_huge_value_is_cut_in_the_error(world, trust, tmp_path):
    result = run_mistake(world, tmp_path / "work", ["compile", f"{trust['folder']}/huge_metric.toml"],
                         ["huge_metric.toml: metric:", "'fffff", "...", "is not one of"])
    assert len(result.stderr) < 400


def test_shown_never_builds_the_whole_repr():
    nested: list = ["x"] * 9
    for _ in range(8):  # an alias bomb's value: 9**9 strings, each list shared nine times
        nested = [nested] * 9
    for value in (nested, "y" * 10**7, {f"k{i}": i for i in range(10**5)}, int("9" * 4000) * 10**1000):
        assert len(shown(value)) <= 80
    assert shown("billing\u200b") == "'billing\\u200b'"
    assert shown(1.5) == "1.5" and shown("it's") == '"it\'s"'


# ---------------------------------------------------------------------------- the signature parser


@pytest.mark.parametrize("written, annotation", list(ALLOWED_TYPES.items()))
def test_every_allowed_type_gives_its_annotation(written, annotation):
    signature = parse_signature(f"question: {written} -> answer: {written}")
    assert signature.input_fields["question"].annotation == annotation
    assert signature.output_fields["answer"].annotation == annotation


def test_field_order_defaults_and_instructions_are_kept():
    signature = parse_signature("document, question: str, k: int -> answer, sources: list[ str ]", "Answer.")
    assert list(signature.input_fields) == ["document", "question", "k"]
    assert list(signature.output_fields) == ["answer", "sources"]
    assert signature.input_fields["document"].annotation is str
    assert signature.output_fields["sources"].annotation == list[str]
    assert signature.instructions == "Answer."
    # An untyped input is marked as DSPy's own parser marks it (no type-mismatch warnings for it).
    assert signature.input_fields["document"].json_schema_extra["IS_TYPE_UNDEFINED"] is True
    assert signature.input_fields["question"].json_schema_extra["IS_TYPE_UNDEFINED"] is False


@pytest.mark.parametrize("text, words", [
    ("a: dict[str, int] -> b", "type 'dict[str, int]' is not allowed"),
    ("a: str | None -> b", "type 'str | None' is not allowed"),
    ("a: __import__('os') -> b", "is not allowed"),
    ("-> b", "no inputs"),
    ("a ->", "no outputs"),
    ("a,, b -> c", "field 2 of the inputs has no name"),
    ("a, b -> c, c", "'c' is given twice among the outputs"),
    ("class -> b", "'class' is not a valid name"),
    ("_hidden -> b", "may not start with _"),
    ("a -> json", "'json': the name is taken"),
    ("demos -> b", "'demos': the name is taken"),
    ("a] -> b", "closes a bracket"),
    ("a: list[str -> b", "leaves a bracket open"),
])
def test_the_parser_refuses(text, words):
    with pytest.raises(SignatureTextError) as error:
        parse_signature(text)
    assert words in str(error.value) and "\n" not in str(error.value)


def test_names_are_nfc():
    signature = parse_signature(unicodedata.normalize("NFD", "データ -> 回答"))
    assert list(signature.input_fields) == ["データ"]


# ---------------------------------------------------------------------------- data, in process


def test_an_nfd_column_matches_an_nfc_field(tmp_path):
    nfd = unicodedata.normalize("NFD", "データ")
    assert nfd != "データ"
    rows = [{nfd: f"text {i}", "回答": f"answer {i}"} for i in range(3)]
    jsonl = _jsonl(tmp_path / "nfd.jsonl", rows)
    csv = tmp_path / "nfd.csv"
    csv.write_text(f"{nfd},回答\n" + "".join(f"text {i},answer {i}\n" for i in range(3)), encoding="utf-8")
    for path in (jsonl, csv):
        splits = load_splits(data=str(path), train=None, dev=None, test=None, fields={}, input_keys=("データ",),
                             required=("データ", "回答"), seed=0)
        example = (splits.train + splits.dev + splits.test)[0]
        assert example["データ"].startswith("text ") and nfd not in example


def test_an_answer_in_another_spelling_of_a_label_is_stored_as_the_label(tmp_path):
    rows = [_routing(1, "Roads And Parks"), _routing(2, "ｔａｘｅｓ"), _routing(3, "taxes")]
    path = _jsonl(tmp_path / "d.jsonl", rows)
    splits = load_splits(data=None, train=str(path), dev=str(path), test=str(path), seed=0, **ROUTING_QA,
                         labels={"department": ("taxes", "roads_and_parks")})
    assert [e.department for e in splits.train] == ["roads_and_parks", "taxes", "taxes"]


def test_a_shipped_label_task_checks_its_own_data():
    task = get_task(str(ROUTING))
    splits = task.shipped_data()
    assert {e.department for e in splits.train} == set(task.answer_labels)


def test_a_task_file_label_needs_a_str_answer(tmp_path):
    path = tmp_path / "t.toml"
    path.write_text('signature = "a -> b: int"\n[fields.b]\nlabels = ["1", "2"]\n', encoding="utf-8")
    with pytest.raises(SmeltError, match=r"t\.toml: fields\.b\.labels: labels need a str answer"):
        get_task(str(path))


@pytest.mark.parametrize("text, blank", [("\u200b", True), (" \u3000\ufeff\u2029", True), ("", True),
                                         ("a\u200b", False), ("０", False)])
def test_is_blank(text, blank):
    assert is_blank(text) is blank


def test_a_dataset_folder_is_read_with_smelts_readers(tmp_path, monkeypatch):
    import datasets

    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: pytest.fail("a local folder must not use it"))
    folder = tmp_path / "csvs"
    folder.mkdir()
    for split, n in (("train", 4), ("dev", 2), ("test", 3)):
        (folder / f"{split}.csv").write_text("question,answer\n" + "".join(f"q{i},a{i}\n" for i in range(n)),
                                             encoding="utf-8")
    (folder / "README.md").write_text("# a dataset\n", encoding="utf-8")
    splits = load_splits(data=str(folder), train=None, dev=None, test=None, fields={}, input_keys=("question",),
                         required=("question", "answer"), seed=0)
    assert (len(splits.train), len(splits.dev), len(splits.test)) == (4, 2, 3)
    (folder / "validation.jsonl").write_text('{"question": "q", "answer": "a"}\n', encoding="utf-8")
    with pytest.raises(SmeltError, match=r"dev\.csv and validation\.jsonl are both its validation split"):
        load_hub_records(str(folder))


def test_a_hub_load_is_quiet_and_restores_datasets_settings(monkeypatch):
    import datasets
    from datasets.utils import logging as datasets_logging

    seen = {}

    def offline(*args, **kwargs):
        seen["bars off"] = datasets.are_progress_bars_disabled()
        seen["verbosity"] = datasets_logging.get_verbosity()
        raise ConnectionError("offline")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    datasets.enable_progress_bars()
    before = datasets_logging.get_verbosity()
    with pytest.raises(SmeltError, match="could not be loaded from the hub"):
        load_hub_records("someone/some-qa")
    assert seen == {"bars off": True, "verbosity": datasets_logging.ERROR}
    assert not datasets.are_progress_bars_disabled() and datasets_logging.get_verbosity() == before
