"""User mistakes through the real CLI: each one ends in exactly one `error: ...` line and changes nothing on disk.

The shared check and the world the cases run in are in ``mistakes.py``; the ``world`` fixture is in conftest.py.
Most cases fail before a model loads (a few seconds each); the adapter, context-length and connection cases load
the embedded model or call a server that is not there.
"""

import pytest
from mistakes import ENV, HAS_GPU, run_mistake

# (id, argv, key words of the error line); {runs}, {data}, {done}, {undone}, {evalrun}, {distillrun}, {toml} are
# the world's paths. Relative paths are relative to the case's own (empty) working folder.
FAST = [
    # --- TASK
    ("unknown-task", ["compile", "doc_qaa"], ["unknown task 'doc_qaa'", "doc_qa", "cli.py tasks"]),
    ("task-missing-python-file", ["compile", "path/missing.py:task"], ["path/missing.py", "no such file"]),
    ("task-file-unknown-key", ["compile", "{data}/bad_key.toml"], ["bad_key.toml", "metrc", "unknown key"]),
    ("task-file-unknown-field", ["compile", "{data}/bad_field.toml"],
     ["bad_field.toml", "fields.answr", "not a field", "inquiry, department"]),
    ("task-missing-toml", ["compile", "{data}/nosuch.toml"], ["nosuch.toml", "no such task file"]),
    ("compile-without-task", ["compile"], ["compile needs a TASK", "compile doc_qa"]),
    # --- models, metric, optimizer, device, numbers
    ("unknown-lm", ["compile", "doc_qa", "--lm", "gemma-3-27m"], ["--lm 'gemma-3-27m'", "unknown model",
                                                                  "gemma-3-270m"]),
    ("unknown-litellm-provider", ["compile", "doc_qa", "--lm", "foo/bar"],
     ["--lm foo/bar", "'foo' is not a LiteLLM provider", "openai/"]),
    ("unknown-judge", ["compile", "doc_qa", "--judge", "big-judge"], ["--judge 'big-judge'", "unknown model"]),
    ("metric-judge-without-judge", ["compile", "doc_qa", "--metric", "judge"], ["--metric judge", "--judge"]),
    ("unknown-optimizer", ["compile", "doc_qa", "--optimizer", "adam"],
     ["--optimizer", "'adam'", "bootstrap", "--help"]),
    ("unknown-metric", ["compile", "doc_qa", "--metric", "bleu"], ["--metric", "'bleu'", "f1"]),
    ("unknown-option", ["compile", "doc_qa", "--nosuch"], ["--nosuch", "--help"]),
    ("threads-not-a-number", ["compile", "doc_qa", "--threads", "many"], ["--threads", "'many'", "integer"]),
    ("device-tpu", ["compile", "doc_qa", "--device", "tpu"], ["--device 'tpu'", "cpu", "cuda"]),
    ("threads-0", ["compile", "doc_qa", "--threads", "0"], ["--threads 0", "1 or more"]),
    ("max-dev-negative", ["compile", "doc_qa", "--max-dev", "-1"], ["--max-dev", "0 or more"]),
    ("latency-sample-negative", ["compile", "doc_qa", "--latency-sample", "-2"], ["--latency-sample", "0 or more"]),
    # --- data files
    ("data-missing-file", ["compile", "doc_qa", "--data", "missing.jsonl"], ["missing.jsonl", "no such file"]),
    ("data-empty-file", ["compile", "doc_qa", "--data", "{data}/empty.jsonl"], ["empty.jsonl", "empty"]),
    ("data-not-utf8", ["compile", "doc_qa", "--data", "{data}/latin1.jsonl"], ["latin1.jsonl:2", "UTF-8"]),
    ("data-bad-json-line-3", ["compile", "doc_qa", "--data", "{data}/bad_line3.jsonl"],
     ["bad_line3.jsonl:3", "not valid JSON"]),
    ("data-json-array-line", ["compile", "doc_qa", "--data", "{data}/array_line.jsonl"],
     ["array_line.jsonl:2", "JSON object"]),
    ("data-csv-missing-column", ["compile", "doc_qa", "--data", "{data}/no_answer.csv"],
     ["no_answer.csv:2", "'answer'", "--field answer="]),
    ("data-csv-unquoted-comma", ["compile", "doc_qa", "--data", "{data}/extra_cells.csv"],
     ["extra_cells.csv:2", "quote"]),
    ("data-too-few-examples", ["compile", "doc_qa", "--data", "{data}/two.jsonl"],
     ["two.jsonl", "at least 3", "--train/--dev/--test"]),
    ("data-empty-answer", ["compile", "doc_qa", "--data", "{data}/empty_answer.jsonl"],
     ["empty_answer.jsonl:2", "'answer'", "empty"]),
    ("field-unknown-column", ["compile", "doc_qa", "--data", "{data}/good.jsonl", "--field", "answer=nosuch"],
     ["good.jsonl:1", "'nosuch'", "--field answer="]),
    ("field-without-column", ["compile", "doc_qa", "--data", "{data}/good.jsonl", "--field", "answer"],
     ["--field 'answer'", "FIELD=COLUMN"]),
    ("field-bad-path", ["compile", "doc_qa", "--data", "{data}/good.jsonl", "--field", "answer=answers..text"],
     ["--field answer=answers..text", "not a valid column path"]),
    ("field-given-twice", ["compile", "doc_qa", "--data", "{data}/good.jsonl", "--field", "answer=a",
                           "--field", "answer=b"], ["--field answer", "twice"]),
    ("data-duplicate-ids", ["compile", "doc_qa", "--data", "{data}/dup_ids.jsonl"],
     ["dup_ids.jsonl:3", "'q1'", "line 1", "--field id="]),
    ("data-squad-answer-dict", ["compile", "doc_qa", "--data", "{data}/squad.jsonl"],
     ["squad.jsonl:1", "'answer'", "not text", "--field answer=answer.text[0]"]),
    ("data-txt-file", ["compile", "doc_qa", "--data", "{data}/notes.txt"],
     ["notes.txt", "unsupported file type '.txt'", ".jsonl"]),
    ("train-without-dev-test", ["compile", "doc_qa", "--train", "{data}/good.jsonl"],
     ["--dev and --test missing", "together"]),
    # --- program options
    ("option-unknown-key", ["compile", "doc_qa", "-o", "nosuch=1"],
     ["-o nosuch", "not an option of task doc_qa", "top_k (int)"]),
    ("option-wrong-type", ["compile", "doc_qa", "-o", "top_k=three"], ["-o top_k=three", "expected int"]),
    # --- resume
    ("resume-missing-dir", ["compile", "doc_qa", "--resume", "runs/doc_qa/20990101-000000-compile"],
     ["--resume runs/doc_qa/20990101-000000-compile", "no such directory"]),
    ("resume-finished-run", ["compile", "--resume", "{done}"], ["{done}", "already finished", "without --resume"]),
    ("resume-other-task", ["compile", "rag_qa", "--resume", "{undone}"],
     ["{undone}", "task doc_qa, not rag_qa", "leave TASK out"]),
    ("distill-resume-compile-run", ["distill", "--resume", "{undone}"],
     ["{undone}", "a compile run, not a distill run", "compile --resume"]),
    ("resume-contradicting-lm", ["compile", "--resume", "{undone}", "--lm", "qwen2.5-7b"],
     ["--lm qwen2.5-7b contradicts the run", "gemma-3-270m", "drop --lm"]),
    # --- eval
    ("eval-without-program", ["eval", "doc_qa"], ["--program"]),
    ("eval-of-eval-run", ["eval", "--program", "{evalrun}"], ["{evalrun}", "an eval run", "{done}"]),
    ("eval-missing-program", ["eval", "--program", "runs/doc_qa/nosuch"],
     ["--program runs/doc_qa/nosuch", "no such directory"]),
    ("eval-other-task", ["eval", "rag_qa", "--program", "{done}"], ["{done}", "task doc_qa, not rag_qa"]),
    ("eval-unfinished-run", ["eval", "--program", "{undone}"], ["{undone}", "no program.json", "--resume"]),
    ("eval-bad-split", ["eval", "--program", "{done}", "--split", "validation"], ["--split", "'validation'", "dev"]),
    # --- distill
    ("distill-missing-teacher-path", ["distill", "doc_qa", "--student", "gemma-3-270m", "--teacher", "/nonexistent"],
     ["--teacher", "/nonexistent", "no such"]),
    ("distill-api-student", ["distill", "--student", "openai/gpt-4o-mini", "--teacher", "{done}"],
     ["--student openai/gpt-4o-mini", "in-process"]),
    ("distill-min-score-2", ["distill", "--student", "gemma-3-270m", "--teacher", "{done}", "--min-score", "2"],
     ["--min-score 2", "between 0 and 1"]),
    ("distill-without-student", ["distill", "--teacher", "{done}"], ["--student", "gemma-3-270m"]),
    ("distill-unfinished-teacher", ["distill", "--student", "gemma-3-270m", "--teacher", "{undone}"],
     ["{undone}", "no program.json"]),
    # --- run
    ("run-unknown-input", ["run", "--program", "{done}", "-i", "nosuch=x"],
     ["nosuch", "not an input of task doc_qa", "document", "question"]),
    ("run-missing-input-file", ["run", "--program", "{done}", "-i", "document=@missing.txt", "-i", "question=q"],
     ["document=@missing.txt", "no such file"]),
    ("run-missing-input", ["run", "--program", "{done}", "-i", "question=q"],
     ["--input document=", "missing", "--input question="]),
    ("run-input-without-value", ["run", "--program", "{done}", "-i", "question"], ["'question'", "NAME=VALUE"]),
    ("run-eval-run", ["run", "--program", "{evalrun}", "-i", "question=q"], ["{evalrun}", "an eval run"]),
    # --- sweep
    ("sweep-trials-0", ["sweep", "doc_qa", "--trials", "0"], ["--trials", "1 or more"]),
    ("sweep-bad-objective", ["sweep", "doc_qa", "--objective", "nonsense"], ["--objective nonsense", "score"]),
    ("sweep-missing-space", ["sweep", "doc_qa", "--space", "missing.yaml"], ["--space missing.yaml", "no such file"]),
    ("sweep-bad-space", ["sweep", "doc_qa", "--space", "{data}/bad_space.yaml"],
     ["bad_space.yaml", "top_k", "low 4 is above high 1"]),
]

_REFUSED = ["compile", "doc_qa", "--lm", "openai/x", "--api-base", "http://127.0.0.1:9/v1", "--max-dev", "2",
            "--max-test", "2", "--max-train", "2", "--optimizer", "none", "--latency-sample", "0"]
_NO_KEY = {k: v for k, v in ENV.items() if k != "OPENAI_API_KEY"}
# Cases that load the embedded model or call a model: (id, argv, key words, words that must not be there, allow a
# new run dir, extra environment, timeout s).
SLOW = [
    ("eval-adapter-of-another-model", ["eval", "--program", "{distillrun}", "--max-test", "1", "--latency-sample", "0"],
     ["{distillrun}/adapter", "does not fit", "gemma-3-270m"], [], False, None, 300),
    # Every input is ~140,000 characters: every call is refused; the advice is to shorten the input, not to check a
    # server, and this task has no context_chars option to turn.
    ("input-past-context-length",
     ["compile", "{data}/long_inputs.toml", "--optimizer", "none", "--latency-sample", "0", "--threads", "2"],
     ["exceeds", "context of 32,768 tokens", "shorten"], ["server is up", "context_chars"], True, None, 600),
    # Nothing listens on port 9: every call is refused (with retries).
    ("server-refuses-every-call", _REFUSED, ["every model call failed", "--api-base"], [], True,
     {**ENV, "OPENAI_API_KEY": "sk-smelt-test-not-a-key"}, 600),
    # A hosted API's model and no key (a server named by --api-base that takes no key is sent the placeholder EMPTY).
    ("api-model-without-key", [a for a in _REFUSED if a not in ("--api-base", "http://127.0.0.1:9/v1")],
     ["OPENAI_API_KEY"], [], True, _NO_KEY, 600),
]


def _fill(texts: list[str], world: dict) -> list[str]:
    return [text.format_map(world) for text in texts]


@pytest.mark.parametrize("args, fragments", [pytest.param(a, f, id=i) for i, a, f in FAST])
def test_mistake_is_one_line_and_writes_nothing(world, tmp_path, args, fragments):
    result = run_mistake(world, tmp_path / "work", _fill(args, world), _fill(fragments, world))
    print(f"{result.wall_s:.1f}s {result.stderr.strip()}")  # pytest -rP shows each message


@pytest.mark.skipif(HAS_GPU, reason="this machine has a GPU: --device cuda is no mistake here")
def test_cuda_without_a_gpu(world, tmp_path):
    run_mistake(world, tmp_path / "work", ["compile", "doc_qa", "--device", "cuda"], ["--device cuda", "--device cpu"])


@pytest.mark.parametrize("args, fragments, absent, allow_new_run, env, timeout",
                         [pytest.param(*case, id=case_id) for case_id, *case in SLOW])
def test_mistake_found_at_the_model(world, tmp_path, args, fragments, absent, allow_new_run, env, timeout):
    result = run_mistake(world, tmp_path / "work", _fill(args, world), _fill(fragments, world), absent=absent,
                         allow_new_run=allow_new_run, env=env, timeout=timeout)
    print(f"{result.wall_s:.1f}s {result.stderr.strip()}")  # pytest -rP shows each message
