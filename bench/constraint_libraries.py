"""Which library holds the embedded model's answers to a pattern: xgrammar, llguidance and outlines (outlines-core),
measured on the embedded model's own tokenizer (Gemma 3, 262,144 tokens), loaded as ``lm/loading.py`` loads it.

For each library, in a process of its own (so that imports and caches do not carry over): the seconds to import it,
to prepare the tokenizer (what the library builds from the vocabulary, once per process), to compile each grammar
smelt writes (``lm/completion_pattern.py``: inquiry_routing's 6 labels, a date, a number, a task's pattern
``[A-Z]{3}-[0-9]{4}``, and the field structure of ChainOfThought: a reasoning of several lines, then a free-text
answer of one sentence) and the mask time per token: a walk through an answer that matches each grammar, computing
the token mask (a bit per token) before each token and then advancing by it. Each library's first mask is compared
with a check of every ordinary token's text against the pattern (regex's partial match): "exact", or +N ordinary
tokens it allows that it should not and -N it refuses that it should allow; the first-step count itself shows the
added tokens (<pad>, <unused0>, ...) a library lets through.
Last, what each adds to smelt's dependencies: the packages it requires that smelt does not already install, and
their size on disk here.

    python -m bench.constraint_libraries [--repeats 20] [--clock cpu|wall]
"""

import argparse
import json
import os
import re
import subprocess
import sys
import time
import tomllib
from importlib import metadata
from pathlib import Path

import regex
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
LIBRARIES = ("xgrammar", "llguidance", "outlines")
ONE_THREAD = {"RAYON_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}  # llguidance's and torch's thread pools
DISTRIBUTIONS = {"xgrammar": "xgrammar", "llguidance": "llguidance", "outlines": "outlines"}


def grammars() -> dict[str, tuple[str, str]]:
    """name -> (the completion pattern smelt writes, an answer it matches)."""
    from smelt.lm.completion_pattern import COMPLETED_MARKER, completion_pattern
    from smelt.programs.answer_constraint import DATE_PATTERN, NUMBER_PATTERN, SENTENCE_PATTERN

    task_file = tomllib.loads((ROOT / "examples" / "inquiry_routing.toml").read_text())
    labels = task_file["fields"]["department"]["labels"]
    end = f"\n\n{COMPLETED_MARKER}"
    one = {
        "labels (6)": ({"enum": labels}, "roads_and_parks"),
        "date": ({"pattern": DATE_PATTERN}, "2026-06-30"),
        "number": ({"pattern": NUMBER_PATTERN}, "1,200.5"),
        "pattern [A-Z]{3}-[0-9]{4}": ({"pattern": "[A-Z]{3}-[0-9]{4}"}, "ABC-1234"),
    }
    made = {name: (completion_pattern(["answer"], {"answer": schema}), text + end)
            for name, (schema, text) in one.items()}
    made["field structure (cot)"] = (
        completion_pattern(["reasoning", "answer"], {"answer": {"pattern": SENTENCE_PATTERN}}),
        "The resident reports a pothole on the road in front of the school.\nPotholes are a road matter [r2].\n\n"
        "[[ ## answer ## ]]\nroads_and_parks handles potholes; it repairs them within a week." + end)
    return made


# --- one library, in its own process ------------------------------------------------------------------------------

class XGrammar:
    def __init__(self, tokenizer, vocabulary: int):
        import xgrammar

        self.xgr = xgrammar
        self.info = xgrammar.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocabulary)

    def compile(self, pattern: str):
        return self.xgr.GrammarCompiler(self.info, max_threads=1, cache_enabled=False).compile_regex(pattern)

    def matcher(self, compiled):
        return self.xgr.GrammarMatcher(compiled)

    def fill(self, matcher, bitmask) -> None:
        matcher.fill_next_token_bitmask(bitmask)

    def advance(self, matcher, token: int) -> None:
        assert matcher.accept_token(token), token


class LLGuidance:
    def __init__(self, tokenizer, vocabulary: int):
        import llguidance
        import llguidance.hf

        self.llg = llguidance
        self.tokenizer = llguidance.hf.from_tokenizer(tokenizer, n_vocab=vocabulary)
        started = time.process_time()  # what smelt does for the embedded model, whose tokenizer.json it wrote
        llguidance.LLTokenizer(str(Path(tokenizer.name_or_path) / "tokenizer.json"), n_vocab=vocabulary)
        self.from_file_s = time.process_time() - started

    def compile(self, pattern: str):
        matcher = self.llg.LLMatcher(self.tokenizer, self.llg.LLMatcher.grammar_from_regex(pattern))
        assert not matcher.is_error(), matcher.get_error()
        return matcher

    def matcher(self, compiled):
        return compiled.deep_copy()

    def fill(self, matcher, bitmask) -> None:
        row = bitmask[0]
        matcher.unsafe_compute_mask_ptr(row.data_ptr(), row.numel() * row.element_size())

    def advance(self, matcher, token: int) -> None:
        assert matcher.consume_token(token), matcher.get_error()


class Outlines:
    """outlines-core's index over a vocabulary of token bytes. outlines' own conversion of the vocabulary
    (``OutlinesCoreBackend.create_outlines_core_vocabulary``) is tried first: on Gemma 3 it leaves out the space,
    and no grammar with a space compiles (``own_vocabulary_error``); the bytes of each token are what it must see."""

    def __init__(self, tokenizer, vocabulary: int):
        from outlines.backends.outlines_core import OutlinesCoreBackend
        from outlines.models.transformers import TransformerTokenizer
        from outlines_core import Guide, Index, Vocabulary

        self.guide, self.index = Guide, Index
        own = OutlinesCoreBackend.create_outlines_core_vocabulary(
            tokenizer.get_vocab(), tokenizer.eos_token_id, tokenizer.eos_token,
            TransformerTokenizer(tokenizer).convert_token_to_string)
        try:
            Index("a b", own)
            self.own_vocabulary_error = None
        except ValueError as exc:
            self.own_vocabulary_error = str(exc).split(". ")[0]
        special = set(tokenizer.all_special_ids)
        by_bytes: dict[bytes, list[int]] = {}
        for token, token_id in tokenizer.get_vocab().items():
            if token_id not in special:
                by_bytes.setdefault(_token_bytes(token), []).append(token_id)
        self.vocabulary = Vocabulary(tokenizer.eos_token_id, by_bytes)

    def compile(self, pattern: str):
        return self.index(pattern, self.vocabulary)

    def matcher(self, compiled):
        return self.guide(compiled)

    def fill(self, matcher, bitmask) -> None:
        matcher.write_mask_into(bitmask.data_ptr(), bitmask.numel(), bitmask.element_size())

    def advance(self, matcher, token: int) -> None:
        matcher.advance(token_id=token, return_tokens=False)


def _token_bytes(token: str) -> bytes:
    """A SentencePiece token's bytes: <0xNN> is one byte, \u2581 a space."""
    if re.fullmatch(r"<0x[0-9A-F]{2}>", token):
        return bytes([int(token[3:5], 16)])
    return token.replace("\u2581", " ").encode()


RUNNERS = {"xgrammar": XGrammar, "llguidance": LLGuidance, "outlines": Outlines}


def measure_library(name: str, repeats: int, clock) -> dict:
    """The library's import, tokenizer and compile seconds, per-token mask seconds and first-step counts, timed by
    ``clock``."""
    import torch
    from transformers import AutoTokenizer

    from smelt.lm.embedded import ensure_embedded_model

    torch.set_num_threads(1)
    tokenizer = AutoTokenizer.from_pretrained(ensure_embedded_model())  # as lm/loading.py loads it
    vocabulary = len(tokenizer)
    started = clock()
    __import__({"outlines": "outlines_core"}.get(name, name))
    result = {"import_s": clock() - started}
    started = clock()
    runner = RUNNERS[name](tokenizer, vocabulary)
    result["tokenizer_s"] = clock() - started
    result["own_vocabulary_error"] = getattr(runner, "own_vocabulary_error", None)
    result["from_file_s"] = getattr(runner, "from_file_s", None)
    bitmask = torch.zeros((1, (vocabulary + 31) // 32), dtype=torch.int32)
    result["grammars"] = {}
    for grammar, (pattern, text) in grammars().items():
        try:
            result["grammars"][grammar] = _walk(runner, pattern, tokenizer.encode(text, add_special_tokens=False),
                                                bitmask, repeats, clock)
        except (ValueError, AssertionError, RuntimeError) as exc:  # the library fails on this grammar
            result["grammars"][grammar] = {"error": f"{type(exc).__name__}: {str(exc)[:120]}"}
    return result


def _walk(runner, pattern: str, tokens: list[int], bitmask, repeats: int, clock) -> dict:
    """Compile ``pattern``, then walk ``tokens`` through it ``repeats`` times, a mask before each token."""
    started = clock()
    compiled = runner.compile(pattern)
    compile_s = clock() - started
    first_allowed = None
    started = clock()
    for _ in range(repeats):
        matcher = runner.matcher(compiled)
        for token in tokens:
            runner.fill(matcher, bitmask)
            if first_allowed is None:
                first_allowed = _set_bits(bitmask[0])
            runner.advance(matcher, token)
    return {"compile_s": compile_s, "mask_s": (clock() - started) / (repeats * len(tokens)), "tokens": len(tokens),
            "first_allowed": first_allowed}


def _set_bits(words) -> list[int]:
    return [32 * index + bit for index, word in enumerate(words.tolist()) if word for bit in range(32)
            if word >> bit & 1]


def token_texts(tokenizer) -> dict[int, str]:
    """Each ordinary token's text: the tokenizer's added tokens (its special and control tokens such as <unused0>,
    and the HTML tags Gemma adds as single tokens, whose text ordinary tokens still spell) and the byte tokens of a
    character's non-first bytes (<0x80> to <0xFF>, which a check of text cannot judge) left out."""
    added = set(tokenizer.all_special_ids) | set(tokenizer.added_tokens_decoder)
    texts = {}
    for token, i in tokenizer.get_vocab().items():
        if i in added:
            continue
        if re.fullmatch(r"<0x[0-9A-F]{2}>", token):
            if int(token[3:5], 16) < 0x80:
                texts[i] = chr(int(token[3:5], 16))
        else:
            texts[i] = token.replace("\u2581", " ")
    return texts


def first_tokens(pattern: str, texts: dict[int, str]) -> set[int]:
    """The tokens whose text can start a completion matching ``pattern``: checked one by one, with regex's partial
    matches, as the reference the libraries' first masks are compared with."""
    compiled = regex.compile(pattern)
    return {i for i, text in texts.items() if text and compiled.fullmatch(text, partial=True)}


# --- what each library adds to smelt's dependencies -------------------------------------------------------------

def requirement_closure(names: list[str]) -> set[str]:
    """The installed distributions these require, recursively (markers evaluated here, extras not followed)."""
    seen: set[str] = set()
    pending = list(names)
    while pending:
        name = _canonical(pending.pop())
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for text in requires:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                pending.append(requirement.name)
    return seen


def installed_bytes(name: str) -> int | None:
    try:
        files = metadata.distribution(name).files or []
    except metadata.PackageNotFoundError:
        return None
    total = 0
    for file in files:
        path = Path(file.locate())
        if path.is_file():
            total += path.stat().st_size
    return total


def added_dependencies(library: str) -> list[tuple[str, int | None]]:
    """(package, bytes; None: not installed here) of what ``library`` brings that smelt's own dependencies lack."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    smelt_needs = requirement_closure([Requirement(text).name for text in project
                                       if Requirement(text).name not in DISTRIBUTIONS.values()])
    return sorted(((name, installed_bytes(name)) for name in requirement_closure([DISTRIBUTIONS[library]])
                   if name not in smelt_needs), key=lambda item: -(item[1] or 0))


def _canonical(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


# --- the table --------------------------------------------------------------------------------------------------

def _cells(values: dict[str, float | None], unit: str, scale: float) -> list[str]:
    fastest = min(v for v in values.values() if v is not None)
    return [f"{values[name] * scale:9.3f} {unit} {values[name] / fastest:6.1f}x" if values[name] is not None
            else f"{'fails':>20}" for name in LIBRARIES]


def _difference(allowed: set[int], expected: set[int], checked: set[int]) -> str:
    """How a library's first mask differs from the token-by-token check over the ``checked`` tokens: "+N" tokens it
    allows that no text of the pattern starts with, "-N" it refuses that one does."""
    extra, missing = len((allowed & checked) - expected), len(expected - allowed)
    return "exact" if not extra and not missing else f"+{extra} -{missing}"


def _grammar_values(results: dict, grammar: str, key: str) -> dict[str, float | None]:
    return {name: result["grammars"][grammar].get(key) for name, result in results.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=20, help="walks through each answer, for the mask time")
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu",
                        help="cpu: the process's CPU seconds (default: on a shared machine, wall time also counts the "
                             "neighbours' work); wall: elapsed seconds")
    parser.add_argument("--library", choices=LIBRARIES, help=argparse.SUPPRESS)  # one library's child process
    args = parser.parse_args(argv)
    if args.library:
        clock = time.process_time if args.clock == "cpu" else time.perf_counter
        print(json.dumps(measure_library(args.library, args.repeats, clock)))
        return

    from bench.machine import cpu_name

    results = {}
    for library in LIBRARIES:
        child = subprocess.run([sys.executable, "-m", "bench.constraint_libraries", "--library", library,
                                "--repeats", str(args.repeats), "--clock", args.clock], cwd=ROOT,
                               capture_output=True, text=True, check=True, env={**os.environ, **ONE_THREAD})
        results[library] = json.loads(child.stdout.strip().splitlines()[-1])
    print(f"CPU: {cpu_name()}, one thread each, {args.clock} seconds; Gemma 3 tokenizer, 262,144 tokens; "
          "x: against the fastest")
    print(f"{'':34}" + "".join(f"{name:>20}" for name in LIBRARIES))
    print(f"{'import':34}" + "".join(_cells({n: r['import_s'] for n, r in results.items()}, 's ', 1)))
    print(f"{'prepare the tokenizer':34}" + "".join(_cells({n: r['tokenizer_s'] for n, r in results.items()}, 's ',
                                                           1)))
    for grammar in results[LIBRARIES[0]]["grammars"]:
        print(f"{'compile ' + grammar:34}" + "".join(_cells(_grammar_values(results, grammar, "compile_s"), 'ms',
                                                             1e3)))
    for grammar in results[LIBRARIES[0]]["grammars"]:
        tokens = max(r["grammars"][grammar].get("tokens", 0) for r in results.values())
        print(f"{f'mask/token {grammar} ({tokens} t)':34}" + "".join(_cells(
            _grammar_values(results, grammar, "mask_s"), 'us', 1e6)))
    from transformers import AutoTokenizer

    from smelt.lm.embedded import ensure_embedded_model

    texts = token_texts(AutoTokenizer.from_pretrained(ensure_embedded_model()))
    for grammar, (pattern, _) in grammars().items():
        expected = first_tokens(pattern, texts)
        allowed = _grammar_values(results, grammar, "first_allowed")
        print(f"{'first tokens, ' + grammar:34}" + "".join(
            f"{len(allowed[n]):>9,} {_difference(set(allowed[n]), expected, set(texts)):>10}" if allowed[n] is not None
            else f"{'fails':>20}" for n in LIBRARIES) + f"   (each token's text checked: {len(expected):,})")
    for library in LIBRARIES:
        for grammar, measured in results[library]["grammars"].items():
            if "error" in measured:
                print(f"{library} fails on {grammar}: {measured['error']}")
    for library in LIBRARIES:
        if results[library].get("from_file_s") is not None:
            print(f"{library}: the tokenizer prepared from its tokenizer.json, not the tokenizer object (as smelt does "
                  f"for the embedded model): {results[library]['from_file_s']:.3f} s")
        if results[library].get("own_vocabulary_error"):
            print(f"{library}: its own vocabulary conversion fails ({results[library]['own_vocabulary_error']}); "
                  "measured on the tokens' bytes")
    print("\nadded to smelt's dependencies (installed size here):")
    for library in LIBRARIES:
        added = added_dependencies(library)
        total = sum(size or 0 for _, size in added)
        listed = ", ".join(f"{name} {size / 1e6:.1f} MB" if size is not None else f"{name} (not installed here)"
                           for name, size in added)
        print(f"  {library:12} {total / 1e6:7.1f} MB: {listed}")


if __name__ == "__main__":
    main()
