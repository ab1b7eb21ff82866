"""``run``: answer one question about one document with a finished compile or distill run."""

import sys
from pathlib import Path

from smelt.commands.common import configure_dspy, load_run
from smelt.errors import SmeltError


def read_document(path: str) -> str:
    """The document text from a file, or from standard input when the path is ``-``."""
    if path == "-":
        return sys.stdin.read()
    file = Path(path)
    if not file.is_file():
        raise SmeltError(f"--document {path}: no such file; pass a UTF-8 text file or - for standard input")
    try:
        return file.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SmeltError(f"--document {path}: not UTF-8 text (byte {exc.start}); convert it to UTF-8") from exc


def answer_question(task: str, program_run: str, document: str, question: str, *, lm: str | None = None,
                    device: str = "auto", api_base: str | None = None) -> str:
    if not question.strip():
        raise SmeltError("--question is empty; pass the question to answer")
    if not document.strip():
        raise SmeltError("--document is empty; pass a file with the document's text")
    configure_dspy(threads=1)
    loaded = load_run(program_run, task_name=task, lm_spec=lm, device=device, api_base=api_base)
    from dspy.utils.exceptions import AdapterParseError

    try:
        with loaded.lm.context():
            prediction = loaded.program(document=document, question=question)
    except AdapterParseError as exc:
        raise SmeltError(f"the model's output could not be read as an answer: {str(exc.lm_response)[:200]!r}") from exc
    return str(prediction.answer).strip()
