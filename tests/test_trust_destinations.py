"""A run directory never chooses where the user's inputs and keys go.

A tampered manifest points a run's server model (or judge) at a second local server that records everything it
receives. Every command that takes a run (``run``, ``eval``, ``serve``, ``distill --teacher RUN``, ``--resume``)
must refuse in one line (the shared check of ``mistakes.py``), and that server must receive nothing, until the
user names the destination: ``--api-base URL`` or ``--api-base recorded``. Then the command says where the
requests and the environment's key go before the first call. DSPy's response cache is keyed by the server too.
"""

import dataclasses
import json
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from chat_stub import ChatStub, chat_reply
from mistakes import CLI, ENV, run_mistake

ANSWER = chat_reply({"answer": "9:00"})
KEY = "sk-never-leaves-1234"
OPT_IN = ["never chooses where your data and keys go", "--api-base recorded", "--api-base URL"]


@pytest.fixture(scope="module")
def spy():
    with ChatStub(ANSWER) as stub:
        yield stub


def _env(tmp_path: Path) -> dict:
    """Keys in the environment, as a user's shell has them, and DSPy's cache in the test's folder."""
    return {**ENV, "OPENAI_API_KEY": KEY, "SMELT_API_KEY": KEY, "DSPY_CACHEDIR": str(tmp_path / "dspy_cache")}


def _tampered_run(runs: Path, *, spec: str, api_base: str | None, command: str = "compile", finished: bool = True,
                  judge: str | None = None) -> Path:
    """A run of doc_qa as smelt writes it, whose manifest records ``spec`` on ``api_base`` (and a judge)."""
    from smelt.commands.compile import CompileOptions
    from smelt.commands.distill import DistillOptions
    from smelt.files import write_json
    from smelt.lifecycle import build_manifest, new_run_dir
    from smelt.programs.registry import get_task

    task = get_task("doc_qa")
    run_dir = new_run_dir(task.name, command, runs)
    if command == "compile":
        options = CompileOptions(task="doc_qa", lm=spec, judge=judge, api_base=api_base, runs_root=str(runs))
    else:
        options = DistillOptions(task="doc_qa", student="gemma-3-270m", teacher=spec, api_base=api_base,
                                 runs_root=str(runs))
    model = {"spec": spec, **({"api_base": api_base} if api_base else {})}
    models = {"program": model, **({"judge": {"spec": judge, "api_base": api_base}} if judge else {})}
    write_json(run_dir / "manifest.json", build_manifest(
        command=command, task=task, options=dataclasses.asdict(options), seed=0, models=models, data_sources={},
        program_options=task.default_options(), extra={"metric": "judge" if judge else "f1"}))
    task.program().save(str(run_dir / "program.json"))
    if finished:
        write_json(run_dir / "summary.json", {"task": task.name, "command": command, "metric": "f1"})
    return run_dir


def _question() -> str:
    return f"When does pool {uuid.uuid4().hex[:8]} open?"  # never in a response cache


def _run_args(run_dir: Path, *extra: str) -> list[str]:
    return ["run", "--program", str(run_dir), "-i", "document=Confidential: the pool opens at 9:00.",
            "-i", f"question={_question()}", *extra]


@pytest.fixture(scope="module")
def tampered(world, spy):
    runs = world["runs"]
    return {
        "server": _tampered_run(runs, spec="openai/local-model", api_base=spy.url),
        "hosted": _tampered_run(runs, spec="openai/gpt-4o-mini", api_base=None),
        "judged": _tampered_run(runs, spec="gemma-3-270m", api_base=spy.url, judge="openai/local-judge"),
        "unfinished": _tampered_run(runs, spec="openai/local-model", api_base=spy.url, finished=False),
        "unfinished_distill": _tampered_run(runs, spec="openai/local-model", api_base=spy.url, finished=False,
                                            command="distill"),
    }


def _refused(world, tmp_path, spy, args, fragments):
    before = len(spy.seen)
    result = run_mistake(world, tmp_path / "work", args, fragments, env=_env(tmp_path))
    assert spy.seen[before:] == [], f"{args[0]} sent {len(spy.seen) - before} requests where only the run named"
    assert KEY not in result.stdout + result.stderr
    return result


@pytest.mark.parametrize("command", ["run", "eval", "distill", "serve"])
def test_a_server_only_the_run_names_receives_nothing(world, tmp_path, spy, tampered, command):
    run_dir = tampered["server"]
    args = {
        "run": _run_args(run_dir),
        "eval": ["eval", "--program", str(run_dir), "--max-test", "1"],
        "distill": ["distill", "--student", "gemma-3-270m", "--teacher", str(run_dir), "--max-train", "1"],
        "serve": ["serve", str(run_dir), "--port", "0"],
    }[command]
    result = _refused(world, tmp_path, spy, args, [*OPT_IN, f"openai/local-model on {spy.url}"])
    assert "--api-base recorded`" in result.stderr  # the exact command to type, ending with the opt-in


@pytest.mark.parametrize("command", ["compile", "distill"])
def test_resume_never_follows_the_manifest_to_a_server(world, tmp_path, spy, tampered, command):
    run_dir = tampered["unfinished" if command == "compile" else "unfinished_distill"]
    _refused(world, tmp_path, spy, [command, "--resume", str(run_dir)], [*OPT_IN, "--resume"])


def test_a_hosted_api_only_the_run_names_is_refused(world, tmp_path, spy, tampered):
    _refused(world, tmp_path, spy, _run_args(tampered["hosted"]),
             [*OPT_IN, "openai/gpt-4o-mini on the provider's own API"])


def test_a_judge_only_the_run_names_is_refused(world, tmp_path, spy, tampered):
    _refused(world, tmp_path, spy, ["eval", "--program", str(tampered["judged"]), "--max-test", "1"],
             [*OPT_IN, f"judge openai/local-judge on {spy.url}"])


def test_the_same_model_named_again_still_needs_its_server(world, tmp_path, spy, tampered):
    """--lm equal to the recorded spec names the model, not where it runs: the run's server is not taken."""
    _refused(world, tmp_path, spy, _run_args(tampered["server"], "--lm", "openai/local-model"), OPT_IN)


def test_the_user_names_the_destination_and_hears_where_the_key_goes(tmp_path, spy, tampered):
    for given in ("recorded", spy.url):
        before = len(spy.seen)
        result = subprocess.run([sys.executable, str(CLI), *_run_args(tampered["server"], "--api-base", given)],
                                cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True, timeout=180)
        assert result.returncode == 0, result.stderr[-2000:]
        assert result.stdout.strip() == "9:00"
        said = [line for line in result.stderr.splitlines() if line.strip()]
        # A chat model takes no answer pattern (constrain is on by default): said once, after where the key goes.
        unconstrained = ("[smelt] openai/local-model: answers are not constrained (a chat model answers in its "
                         "provider's format, not DSPy's marker format); they are checked after they are written")
        assert said[-2:] == [f"[smelt] the key in $SMELT_API_KEY is sent to {spy.url}", unconstrained], said
        assert spy.url in said[0] and ("(--api-base recorded)" if given == "recorded" else "(--api-base)") in said[0]
        [request] = spy.seen[before:]
        assert request["authorization"] == f"Bearer {KEY}"
        assert "Confidential" in json.dumps(request["body"]["messages"])
        assert KEY not in result.stdout + result.stderr


def test_a_cached_answer_is_not_taken_for_another_server(tmp_path, spy, tampered):
    """The same question on a server that is down is a failed call, not the answer cached from the spy."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    args = _run_args(tampered["server"])
    first = subprocess.run([sys.executable, str(CLI), *args, "--api-base", spy.url], cwd=tmp_path,
                           env=_env(tmp_path), capture_output=True, text=True, timeout=180)
    assert first.returncode == 0 and first.stdout.strip() == "9:00", first.stderr[-2000:]
    cached = subprocess.run([sys.executable, str(CLI), *args, "--api-base", spy.url], cwd=tmp_path,
                            env=_env(tmp_path), capture_output=True, text=True, timeout=180)
    assert cached.returncode == 0 and cached.stdout.strip() == "9:00"
    before = len(spy.seen)
    elsewhere = subprocess.run([sys.executable, str(CLI), *args, "--api-base", f"http://127.0.0.1:{closed}/v1"],
                               cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True, timeout=180)
    assert elsewhere.returncode != 0, "answered from the cache of another server"
    assert "the call to openai/local-model failed" in elsewhere.stderr
    assert spy.seen[before:] == []


def test_recorded_outside_a_run_is_named(world, tmp_path):
    run_mistake(world, tmp_path / "work", ["compile", "doc_qa", "--lm", "openai/x", "--api-base", "recorded"],
                ["--api-base recorded", "only a command that takes a run"], env=_env(tmp_path))


@pytest.mark.parametrize("drop", ["models", "options"])
def test_resume_of_a_manifest_without_models_or_options_is_refused(world, tmp_path, tampered, drop):
    import shutil

    run_dir = Path(shutil.copytree(tampered["unfinished"], world["runs"] / "doc_qa" / f"x-{drop}"))
    manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    del manifest[drop]
    (run_dir / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    run_mistake(world, tmp_path / "work", ["compile", "--resume", str(run_dir)],
                ["--resume", f"records no {drop}", "start a new run"], env=_env(tmp_path))
