"""report.html: written by every run (compile, distill, eval, sweep) and by `cli.py report`, self-contained (no
network, charts as data: URIs, text escaped), and rendered by a real headless Chromium with every image loaded.

Run directories are built by hand from small fake records, Japanese and English, so no model runs here."""

import base64
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from smelt.commands.report import compare_runs, summarize_records, write_comparison
from smelt.errors import SmeltError
from smelt.eval.reports.chart_data import language_scores, pick_examples, radar_values, record_language
from smelt.eval.reports.html import write_html_report
from smelt.eval.reports.run_records import read_records

ROOT = Path(__file__).resolve().parents[1]
DOC_JA = "令和8年度の粗大ごみ収集は毎月第2水曜日です。申込みは環境課（電話 03-1234-5678）へ。手数料は1点500円です。"
DOC_EN = "Oversized waste is collected on the second Wednesday of each month. Call 03-1234-5678. The fee is 500 yen."
# (id, document, question, gold): three Japanese and three English examples.
EXAMPLES = [
    ("ja1", DOC_JA, "粗大ごみの収集日はいつですか？", "毎月第2水曜日"),
    ("ja2", DOC_JA, "手数料はいくらですか？", "1点500円"),
    ("ja3", DOC_JA, "申込み先はどこですか？", "環境課"),
    ("en1", DOC_EN, "When is oversized waste collected?", "the second Wednesday of each month"),
    ("en2", DOC_EN, "What is the fee?", "500 yen"),
    ("en3", DOC_EN, "Which number do I call?", "03-1234-5678"),
]
HOSTILE = "<script>alert('x')</script> see https://evil.example/a.png"  # must come out as text, never as markup


def record(example, prediction, score, *, language=True, latency=1.0, prompt_tokens=400, **extra) -> dict:
    id_, document, question, gold = example
    out = {"id": id_, "inputs": {"document": document, "question": question}, "gold": gold, "prediction": prediction,
           "metric": "f1", "score": score, "parse_error": False, "error": None, "latency_s": latency,
           "prompt_tokens": prompt_tokens, "completion_tokens": 12, "lm_calls": 1, "cached": False, **extra}
    if language:
        out["language"] = "ja" if id_.startswith("ja") else "en"
    return out


def baseline_records(**kw) -> list[dict]:
    # ja1 and en1 are right at baseline and wrong once compiled: the worst regressions.
    scores = {"ja1": 1.0, "ja2": 0.2, "ja3": 0.0, "en1": 1.0, "en2": 0.5, "en3": 0.0}
    return [record(ex, ex[3] if scores[ex[0]] == 1.0 else "わかりません", scores[ex[0]], **kw) for ex in EXAMPLES]


def compiled_records(**kw) -> list[dict]:
    scores = {"ja1": 0.0, "ja2": 1.0, "ja3": 1.0, "en1": 0.0, "en2": 1.0, "en3": 0.8}
    return [record(ex, HOSTILE if scores[ex[0]] == 0.0 else ex[3], scores[ex[0]], latency=2.0, prompt_tokens=800,
                   **kw) for ex in EXAMPLES]


def write_jsonl(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")


def write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")


@pytest.fixture(scope="module")
def program_json(tmp_path_factory) -> Path:
    """doc_qa's program as DSPy saves it, with one demo holding markup to escape."""
    from smelt.programs.registry import get_task

    path = tmp_path_factory.mktemp("program") / "program.json"
    get_task("doc_qa").program().save(str(path))
    state = json.loads(path.read_text(encoding="utf-8"))
    predictor = next(v for v in state.values() if isinstance(v, dict) and "demos" in v)
    predictor["demos"] = [{"document": DOC_JA, "question": "手数料は？ <b>bold</b>", "answer": "1点500円",
                           "augmented": True}]
    path.write_text(json.dumps(state, ensure_ascii=False), encoding="utf-8")
    return path


def make_compile_run(root: Path, program_json: Path, **kw) -> Path:
    from smelt.commands.report import summarize_records

    run = root / "doc_qa" / "20260101-000000-compile"
    base, comp = baseline_records(**kw), compiled_records(**kw)
    for name, records in {"baseline.dev": base[:4], "dev": comp[:4], "baseline.test": base, "test": comp}.items():
        write_jsonl(run / "eval" / f"{name}.jsonl", records)
    columns = {label: {split: summarize_records(records, "f1") | {"threads": 8}
                       for split, records in (("dev", r[:4]), ("test", r))}
               for label, r in (("baseline", base), ("compiled", comp))}
    columns["compiled"]["test"]["single_request_latency_s"] = 2.5
    columns["baseline"]["test"]["single_request_latency_s"] = 1.25
    write_json(run / "manifest.json", {"command": "compile", "task": "doc_qa", "metric": "f1"})
    write_json(run / "summary.json", {"task": "doc_qa", "command": "compile", "optimizer": "labeled", "metric": "f1",
                                      "lm": "gemma-3-270m", **columns, "demos": 1})
    shutil.copy(program_json, run / "program.json")
    return run


@pytest.fixture
def compile_run(tmp_path, program_json) -> Path:
    return make_compile_run(tmp_path / "runs", program_json)


def assert_self_contained(page: str) -> None:
    """No resource from the network (src, href, CSS url(), @import), no script; every image a data: PNG."""
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", page, re.I)
    assert not re.search(r"url\(\s*['\"]?\s*(?:https?:)?//|@import|<link\b", page, re.I)
    assert "<script" not in page.lower()
    images = re.findall(r"<img\b[^>]*>", page)
    assert images
    for tag in images:
        src = re.search(r"""src=(["'])(.*?)\1""", tag).group(2)
        assert src.startswith("data:image/png;base64,"), src[:60]
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"


def test_compile_report_holds_every_section(compile_run):
    path = write_html_report(compile_run)
    assert path == compile_run / "report.html"
    page = path.read_text(encoding="utf-8")
    assert_self_contained(page)
    for header in ("baseline dev", "compiled dev", "baseline test", "compiled test", "score (f1)",
                   "latency, one request at a time (s)"):
        assert f"<th>{header}</th>" in page
    assert "Japanese" in page and "English" in page
    assert len(re.findall(r"<img\b", page)) == 2  # languages and radar
    for axis in ("score: the mean f1", "exact match: share", "speed: 1 / latency", "prompt tokens: the fewest"):
        assert axis in page
    assert "grounding: no &quot;invented&quot; field" in page  # left out, and said why
    # The escaped answer is text, not markup; the hostile URL is no resource.
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    # The worst regressions first: ja1 and en1 fell from 1.0 to 0.0, both languages present.
    examples = page[page.index("Example answers"):]
    ids = re.findall(r"<div class='field'>(\w+) · (Japanese|English)</div>", examples)
    assert [i for i, _ in ids][:2] in (["ja1", "en1"], ["en1", "ja1"]) and len(ids) == 6
    assert {language for _, language in ids} == {"Japanese", "English"}
    # The program: its instructions and its demo, escaped.
    assert "Answer the question using only the document" in page
    assert "&lt;b&gt;bold&lt;/b&gt;" in page and "demo 1 (bootstrapped)" in page


def test_language_detected_when_records_lack_it(tmp_path, program_json):
    run = make_compile_run(tmp_path / "runs", program_json, language=False)
    records = read_records(run / "eval" / "test.jsonl")
    assert [record_language(r) for r in records] == ["ja", "ja", "ja", "en", "en", "en"]
    assert record_language({"language": "en", "inputs": {"question": "いつですか"}}) == "en"  # a record's own wins
    assert record_language({"inputs": {"document": DOC_EN + " 環境課", "question": "Who?"}}) == "en"
    from smelt.eval.reports.run_records import Program

    languages, values, counts = language_scores([Program("c", records)])
    assert languages == ["ja", "en"] and counts == [[3, 3]]
    assert values[0] == pytest.approx([2 / 3, 0.6])
    page = write_html_report(run).read_text(encoding="utf-8")
    assert "Japanese" in page and "English" in page


def test_radar_scales_every_axis_bigger_is_better():
    from smelt.eval.reports.run_records import Program

    slow = Program("baseline", baseline_records(invented=[]), {"single_request_latency_s": 4.0,
                                                                "prompt_tokens_per_example": 300})
    fast = Program("compiled", compiled_records(invented=["3万円"]), {"single_request_latency_s": 1.0,
                                                                     "prompt_tokens_per_example": 600})
    radar = radar_values([slow, fast], "f1")
    values = {axis: (radar.values[0][i], radar.values[1][i]) for i, axis in enumerate(radar.axes)}
    assert values["speed"] == (0.25, 1.0)
    assert values["prompt tokens"] == (1.0, 0.5)
    assert values["grounding"] == (1.0, 0.0)
    assert values["exact match"][0] == pytest.approx(2 / 6)
    assert 0 <= values["fact"][0] <= 1


def test_examples_mix_languages_and_put_regressions_first():
    from smelt.eval.reports.run_records import Program

    rows = pick_examples([Program("a", baseline_records()), Program("b", compiled_records())], limit=4)
    assert [r["id"] for r in rows][:2] in (["ja1", "en1"], ["en1", "ja1"])
    assert {r["language"] for r in rows} == {"ja", "en"} and len(rows) == 4


def test_distill_report(tmp_path, program_json):
    run = tmp_path / "doc_qa" / "20260101-000000-distill"
    files = {"teacher.test": compiled_records(invented=[]), "student.test": baseline_records(invented=["x"]),
             "test": compiled_records(invented=[])}
    for name, records in files.items():
        write_jsonl(run / "eval" / f"{name}.jsonl", records)
    columns = {label: summarize_records(files[name], "f1")
               for label, name in (("teacher", "teacher.test"), ("student (no adapter)", "student.test"),
                                   ("distilled student", "test"))}
    write_json(run / "summary.json", {"task": "doc_qa", "command": "distill", "metric": "f1", "teacher": "run /gone",
                                      "student": "gemma-3-270m", "test": columns})
    write_json(run / "manifest.json", {"command": "distill", "task": "doc_qa"})
    shutil.copy(program_json, run / "program.json")
    page = write_html_report(run).read_text(encoding="utf-8")
    assert_self_contained(page)
    for label in ("teacher", "student (no adapter)", "distilled student"):
        assert f"<th>{label}</th>" in page
    assert "grounding: the share of answers that state no fact their source lacks" in page
    assert "The distilled student&#x27;s program" in page


def test_eval_report(tmp_path, compile_run):
    run = tmp_path / "doc_qa" / "20260101-000000-eval"
    records = compiled_records()
    write_jsonl(run / "eval" / "test.jsonl", records)
    write_json(run / "summary.json", {"task": "doc_qa", "command": "eval", "program_run": str(compile_run),
                                      "split": "test", "metric": "f1", "test": summarize_records(records, "f1")})
    write_json(run / "manifest.json", {"command": "eval", "task": "doc_qa"})
    page = write_html_report(run).read_text(encoding="utf-8")
    assert_self_contained(page)
    assert f"<th>{compile_run.name} test</th>" in page
    assert "The evaluated program" in page and "Answer the question using only the document" in page
    assert "the lowest scores first" in page


def test_sweep_report(tmp_path, program_json):
    from smelt.eval.reports import plots

    run = tmp_path / "doc_qa" / "20260101-000000-sweep"
    trials = {0: baseline_records(), 2: compiled_records()}
    for number, records in trials.items():
        write_jsonl(run / "trials" / f"trial-{number:03d}" / "eval" / "test.jsonl", records)
    shutil.copy(program_json, (run / "best").mkdir(parents=True) or run / "best" / "program.json")
    (run / "history.png").write_bytes(plots.radar(["a"], ["x", "y", "z"], [[0.1, 0.5, 0.9]]))
    write_json(run / "summary.json", {
        "task": "doc_qa", "command": "sweep", "stage": "compile", "objectives": ["score"], "metric": "f1",
        "best": [{"number": 2, "run_dir": "runs/doc_qa/elsewhere/trials/trial-002"}],
        "default": {"number": 0, "run_dir": "runs/doc_qa/elsewhere/trials/trial-000"},
        "test": {"trial 2 (best)": summarize_records(trials[2], "f1"),
                 "trial 0 (default)": summarize_records(trials[0], "f1")},
        "plots": ["history.png"]})
    page = write_html_report(run).read_text(encoding="utf-8")
    assert_self_contained(page)
    assert page.index("<th>trial 2 (best)</th>") < page.index("<th>trial 0 (default)</th>")  # report.md's order
    assert len(re.findall(r"<img\b", page)) == 3  # languages, radar, history.png
    assert "The best trial&#x27;s program" in page


def test_a_broken_run_is_one_logged_line(tmp_path):
    lines = []
    (tmp_path / "summary.json").write_text('{"command": "compile", "baseline": 3}')
    assert write_html_report(tmp_path, log=lines.append) is None
    assert len(lines) == 1 and lines[0].startswith("[smelt] no report.html: ")


def test_report_command_compares_runs(tmp_path, compile_run, program_json):
    other = make_compile_run(tmp_path / "other", program_json)
    write_jsonl(other / "eval" / "test.jsonl", compiled_records()[:4])  # fewer examples: compared on the shared 4
    out = tmp_path / "out" / "cmp.html"
    result = subprocess.run([sys.executable, str(ROOT / "cli.py"), "report", str(compile_run), str(other),
                             "--out", str(out)], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(out)
    page = out.read_text(encoding="utf-8")
    assert_self_contained(page)
    assert "(n=4)" in page and "Compared on the 4 test examples every run scored (of 6, 4)" in page
    assert page.count("Answer the question using only the document") == 2  # each run's program


def test_report_command_refuses_with_one_error_line(tmp_path, compile_run):
    result = subprocess.run([sys.executable, str(ROOT / "cli.py"), "report", str(compile_run), str(tmp_path)],
                            capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "is not a run directory" in errors[0]
    assert not (tmp_path / "report.html").exists()


def test_report_refuses_runs_with_no_shared_split_or_ids(tmp_path, compile_run, program_json):
    dev_only = make_compile_run(tmp_path / "dev_only", program_json)
    for name in ("test", "baseline.test"):
        (dev_only / "eval" / f"{name}.jsonl").unlink()
    eval_run = tmp_path / "doc_qa" / "20260101-000000-eval"
    write_jsonl(eval_run / "eval" / "test.jsonl", [dict(r, id="other-" + r["id"]) for r in compiled_records()])
    write_json(eval_run / "summary.json", {"command": "eval", "task": "doc_qa", "metric": "f1", "split": "test"})
    with pytest.raises(SmeltError, match="share no scored split"):
        compare_runs([eval_run, dev_only])
    with pytest.raises(SmeltError, match="share no example ids"):
        compare_runs([compile_run, eval_run])
    # Both have dev: compared there.
    assert compare_runs([compile_run, dev_only]).split == "dev"
    # One run: the same page as its own report.html.
    assert write_comparison([compile_run], tmp_path / "one.html").read_text(encoding="utf-8") \
        == write_html_report(compile_run).read_text(encoding="utf-8")


# --- a real browser -----------------------------------------------------------------------------------------

PROBE = """<script>
window.addEventListener('error', function () {
  var seen = Number(document.body.getAttribute('data-load-errors') || 0);
  document.body.setAttribute('data-load-errors', String(seen + 1));
}, true);
window.addEventListener('load', function () {
  var images = Array.prototype.slice.call(document.images);
  var loaded = images.filter(function (img) { return img.complete && img.naturalWidth > 0; });
  document.body.setAttribute('data-images', String(images.length));
  document.body.setAttribute('data-images-loaded', String(loaded.length));
});
</script>"""


def chromium() -> str:
    found = next((shutil.which(name) for name in ("chromium", "chromium-browser") if shutil.which(name)), None)
    if found is None:
        reason = ("no chromium on PATH (Debian: apt-get install -y chromium); the report is not opened in a "
                  "real browser")
        if os.environ.get("CI") == "true":
            pytest.fail(f"chromium is required under CI: {reason}")
        pytest.skip(reason)
    return found


def browse(executable: str, page: Path, profile: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([executable, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000",
                           "--enable-logging=stderr", "--v=0", "--no-first-run", f"--user-data-dir={profile}",
                           *extra, page.as_uri()], capture_output=True, text=True, timeout=120)


def test_report_opens_in_headless_chromium(tmp_path, compile_run):
    executable = chromium()
    page = write_html_report(compile_run)
    probed = tmp_path / "probed.html"
    probed.write_text(page.read_text(encoding="utf-8").replace("</body>", PROBE + "\n</body>"), encoding="utf-8")
    dump = browse(executable, probed, tmp_path / "profile", "--dump-dom")
    assert dump.returncode == 0, dump.stderr[-2000:]
    console = [line for line in dump.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert not console, console
    body = re.search(r"<body([^>]*)>", dump.stdout).group(1)
    attributes = dict(re.findall(r'(data-[\w-]+)="([^"]*)"', body))
    assert attributes.get("data-images") == "2", dump.stdout[:500]
    assert attributes.get("data-images-loaded") == "2"
    assert "data-load-errors" not in attributes

    out = Path(os.environ.get("SMELT_TEST_OUTPUT") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    screenshot = out / "report.png"
    screenshot.unlink(missing_ok=True)
    shot = browse(executable, page, tmp_path / "profile", f"--screenshot={screenshot}", "--window-size=1280,2000")
    assert shot.returncode == 0, shot.stderr[-2000:]
    assert screenshot.is_file() and screenshot.stat().st_size > 20_000
    from PIL import Image

    with Image.open(screenshot) as image:
        assert image.size == (1280, 2000)
        low, high = image.convert("L").getextrema()
        assert high - low > 100  # text and charts, not a blank page
