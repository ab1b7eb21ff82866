"""Throughput of smelt's in-process engine against a plain one-prompt-at-a-time generate loop.

The same prompts go through:

- anchor: ``model.generate`` on each prompt's token ids, batch 1, in a plain loop (no cache kept
  between prompts), stopping at the adapter's stop strings;
- smelt: the program called from a pool of threads as dspy.Evaluate calls it, DSPy's response cache
  off, on the engine (continuous batching, prefix cache emptied first), twice: without, then with
  prompt-lookup drafts (``lm/engine/prompt_lookup.py``), each with its own count of decode steps.

Both decode greedily with the same max_new_tokens and stop strings, on the same loaded model, in the
same process, after a warm-up; the anchor runs first. ``--transformers-batch`` also runs transformers' own
continuous batching (``generate_batch``) on the prompts' token ids. The answers of every engine pass are compared
with the anchor's: greedy fp32 answers should be identical, and every difference is counted.

``--docs doc_qa`` (default) sends the prompts of the doc_qa program as ``compile doc_qa`` leaves it:
the selected passages of each document, and two demos (the first two train examples, as
LabeledFewShot attaches them; ``--program RUN/program.json`` loads a compiled program instead), so
every prompt starts with the same system message and demos. The questions come from dev and test,
English and Japanese alternating (``--split test``: the test split in file order). ``--docs short``
asks a bare ``document, question -> answer`` predictor about short notices, without demos.

    python -m bench.engine_throughput [--docs doc_qa|short] [--program FILE] [--split mixed|test]
                                      [--device auto] [--n 16] [--threads 8] [--max-tokens 32]
                                      [--transformers-batch] [--model SPEC] [--answer-tokens N] [--json FILE]

``--model`` runs another in-process model (``hf:<folder>``: bench/gpu_check.sh passes a random-weight one, whose
answers never reach a stop string, so ``--answer-tokens`` fixes every answer's length and tokens/s compare);
``--json`` writes the numbers.
"""

import argparse
import json
import os
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import dspy
import torch
from transformers import StoppingCriteria

from bench.machine import device_name
from smelt.lm import lm_for_spec
from smelt.lm.generation import GenerationSettings, find_stop
from smelt.lm.prefill_adapter import PrefillChatAdapter
from smelt.lm.rendering import encode_prompt
from smelt.programs.program_file import load_program_file
from smelt.programs.registry import get_task

SHORT = [
    ("The city library is open from 9:00 to 19:00 on weekdays and from 10:00 to 17:00 on weekends. "
     "It is closed on the last Monday of each month.", "What time does the library close on weekdays?"),
    ("市立図書館の開館時間は平日が午前9時から午後7時まで、土日は午前10時から午後5時までです。毎月最終月曜日は休館日です。",
     "平日の閉館時間は何時ですか。"),
    ("Burnable waste is collected every Tuesday and Friday. Bags must be put out by 8:30 a.m. "
     "at the designated collection point.", "By what time must bags be put out?"),
    ("燃えるごみは毎週火曜日と金曜日に収集します。収集日の午前8時30分までに指定の集積所に出してください。",
     "ごみは何時までに出す必要がありますか。"),
    ("The home insulation grant covers half of the cost of new windows, up to 150,000 yen per household. "
     "Applications open on May 1 and close on June 30.", "What is the maximum grant per household?"),
    ("住宅断熱改修補助金は、窓の改修費用の2分の1を補助します。上限は1世帯あたり15万円です。申請期間は5月1日から6月30日までです。",
     "補助金の上限はいくらですか。"),
    ("Flu vaccinations for residents aged 65 and over cost 1,500 yen. The clinic is held at the Health "
     "Center on the first floor every Saturday in November.", "How much does the vaccination cost?"),
    ("65歳以上の方のインフルエンザ予防接種の自己負担額は1,500円です。接種は保健センター1階で行います。",
     "予防接種の自己負担額はいくらですか。"),
    ("Road closures for the summer festival will be in effect on August 2 from 16:00 to 22:00 around "
     "Central Station. Buses will use a detour route.", "On what date are the roads closed?"),
    ("夏まつりの開催に伴い、8月2日午後4時から午後10時まで中央駅周辺で交通規制を行います。バスは迂回運行となります。",
     "交通規制が行われるのは何月何日ですか。"),
    ("The childcare benefit is 30,000 yen per child. Families who received it last year must apply again "
     "by October 31 at counter 5 of City Hall.", "Where do families apply for the benefit?"),
    ("子育て応援給付金は子ども1人につき3万円です。昨年受給した世帯も10月31日までに市役所5番窓口で再度申請してください。",
     "申請はどこで行いますか。"),
    ("Evacuation shelters open when a level 3 alert is issued. The nearest shelter for the Eastern District "
     "is Minato Elementary School gymnasium.", "Which shelter serves the Eastern District?"),
    ("警戒レベル3が発令されると避難所を開設します。東地区の避難所は港小学校の体育館です。",
     "東地区の避難所はどこですか。"),
    ("Property tax can be paid in four installments. The first installment is due on April 30; "
     "payment is accepted at banks and convenience stores.", "When is the first installment due?"),
    ("固定資産税は4回に分けて納付できます。第1期の納期限は4月30日で、金融機関やコンビニエンスストアで納付できます。",
     "第1期の納期限はいつですか。"),
]


def short_workload(n: int):
    """A bare predictor and n short notices (inputs of that predictor)."""
    if n > len(SHORT):
        raise SystemExit(f"--docs short has {len(SHORT)} prompts; ask for --n {len(SHORT)} or fewer")
    predict = dspy.Predict("document, question -> answer")
    inputs = [{"document": document, "question": question} for document, question in SHORT[:n]]
    return predict, predict, inputs, inputs


def doc_qa_workload(n: int, split: str, program_file: Path | None):
    """The doc_qa program with its demos, its predictor, the program's inputs and the predictor's inputs."""
    task = get_task("doc_qa")
    data = task.shipped_data()
    program = task.program()
    if program_file is not None:
        load_program_file(program, program_file, task_name=task.name)  # DSPy JSON, as `compile` saves it
    else:
        program.answer.demos = [task.as_demo(program, example) for example in data.train[:2]]
    if split == "test":
        examples = data.test
    else:
        pool = data.dev + data.test
        by_language = {lang: [e for e in pool if e.language == lang] for lang in ("en", "ja")}
        examples = [e for pair in zip(by_language["en"], by_language["ja"], strict=False) for e in pair]
    if len(examples) < n:
        raise SystemExit(f"--split {split} has {len(examples)} doc_qa questions; ask for --n {len(examples)} or fewer")
    examples = examples[:n]
    program_inputs = [{"document": e.document, "question": e.question} for e in examples]
    predictor_inputs = [{"document": program.passages(e.document, e.question), "question": e.question}
                        for e in examples]
    return program, program.answer, program_inputs, predictor_inputs


class _StopAfter(StoppingCriteria):
    """Ends a batch-1 generation once its text holds a stop string, by the engine's own rule (find_stop)."""

    def __init__(self, tokenizer, stops: list[str], prompt_length: int):
        self.tokenizer, self.stops, self.prompt_length = tokenizer, tuple(stops), prompt_length

    def __call__(self, input_ids, scores, **kwargs):
        text = self.tokenizer.decode(input_ids[0, self.prompt_length :], skip_special_tokens=True)
        return torch.tensor([find_stop(text, self.stops) >= 0], device=input_ids.device)


def cut(text: str, stops: list[str]) -> str:
    at = find_stop(text, tuple(stops))
    return text[:at] if at >= 0 else text


def run_anchor(model, tokenizer, prompt_ids: list[list[int]], max_tokens: int, stops: list[str]):
    """Plain sequential generate, one prompt at a time; returns (seconds, generated tokens, answers)."""
    device = next(model.parameters()).device
    generated, answers = 0, []
    started = time.perf_counter()
    with torch.inference_mode():
        for ids in prompt_ids:
            output = model.generate(
                input_ids=torch.tensor([ids], device=device),
                attention_mask=torch.ones((1, len(ids)), dtype=torch.long, device=device),
                max_new_tokens=max_tokens,
                do_sample=False,
                temperature=None,
                top_p=None,
                top_k=None,
                stopping_criteria=[_StopAfter(tokenizer, stops, len(ids))],
                pad_token_id=tokenizer.pad_token_id,
            )
            new = output[0, len(ids) :].tolist()
            generated += len(new)
            answers.append(cut(tokenizer.decode(new, skip_special_tokens=True), stops))
    _sync(device)
    return time.perf_counter() - started, generated, answers


def run_engine(resolved, program, inputs: list[dict[str, str]], threads: int):
    """Program calls from a thread pool on the engine; returns (seconds, generated tokens, parse errors, answers
    by prompt ids)."""

    def call(example: dict[str, str]) -> bool:
        with resolved.context():
            try:
                program(**example)
                return True
            except dspy.utils.exceptions.AdapterParseError:
                return False

    history_before = len(resolved.lm.history)
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        parsed = list(pool.map(call, inputs))
    seconds = time.perf_counter() - started
    entries = resolved.lm.history[history_before:]
    generated = sum(entry["usage"]["completion_tokens"] for entry in entries)
    tokenizer = resolved.engine.tokenizer
    answers = {}
    for entry in entries:
        output = entry["outputs"][0]
        text = output["text"] if isinstance(output, dict) else output
        answers[tuple(encode_prompt(tokenizer, entry["messages"]))] = text  # text-only: plain role/content dicts
    return seconds, generated, parsed.count(False), answers


def run_transformers_batch(model, tokenizer, prompt_ids: list[list[int]], max_tokens: int, stops: list[str]):
    """transformers' own continuous batching (``generate_batch``) on the same prompts, greedy; returns (seconds,
    generated tokens, answers cut at the stop strings)."""
    from transformers import ContinuousBatchingConfig, GenerationConfig

    config = GenerationConfig(max_new_tokens=max_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id,
                              eos_token_id=model.generation_config.eos_token_id)
    # Its paged cache takes most of the free memory by default: on a CPU, the machine's RAM; a tenth is plenty here.
    on_cpu = next(model.parameters()).device.type == "cpu"
    batching = ContinuousBatchingConfig(max_memory_percent=0.1) if on_cpu else None
    started = time.perf_counter()
    outputs = model.generate_batch(prompt_ids, generation_config=config, continuous_batching_config=batching,
                                   warmup=False)
    _sync(next(model.parameters()).device)
    seconds = time.perf_counter() - started
    generated = [output.generated_tokens for output in outputs.values()]  # in the order of the prompts
    answers = [cut(tokenizer.decode(tokens, skip_special_tokens=True), stops) for tokens in generated]
    return seconds, sum(len(tokens) for tokens in generated), answers


@dataclass
class EnginePass:
    seconds: float
    tokens: int
    parse_errors: int
    answers: dict
    steps: int
    admissions: int
    peak_rows: int
    hit_rate: float
    rss: int
    gpu: int
    prompt_pass_s: float  # the engine worker's time in prompt passes (one request at a time)
    decode_step_s: float  # ... and in decode steps (the whole batch at once)


def engine_pass(resolved, program, inputs: list[dict[str, str]], threads: int, on_gpu: bool) -> EnginePass:
    """One engine run from an empty prefix cache, with the engine's counters read around it."""
    engine = resolved.engine
    engine.prefix_cache.clear()
    stats = engine.prefix_cache.stats
    looked_up, reused = stats.prompt_tokens, stats.reused_tokens
    admissions_before = len(engine.batch_sizes)
    steps_before = engine.steps
    prompt_before, decode_before = engine.prompt_pass_seconds, engine.decode_step_seconds
    engine.peak_rows = 0
    if on_gpu:
        torch.cuda.reset_peak_memory_stats()
    with PeakRSS() as rss:
        seconds, tokens, parse_errors, answers = run_engine(resolved, program, inputs, threads)
    return EnginePass(seconds, tokens, parse_errors, answers, engine.steps - steps_before,
                      len(engine.batch_sizes) - admissions_before, engine.peak_rows,
                      (stats.reused_tokens - reused) / max(1, stats.prompt_tokens - looked_up), rss.peak,
                      torch.cuda.max_memory_allocated() if on_gpu else 0,
                      engine.prompt_pass_seconds - prompt_before, engine.decode_step_seconds - decode_before)


class PeakRSS:
    """The process's peak resident memory while inside the block (sampled every 20 ms from /proc)."""

    def __enter__(self):
        self.peak, self._running = self._rss(), True
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._running = False
        self._thread.join()

    def _sample(self):
        while self._running:
            self.peak = max(self.peak, self._rss())
            time.sleep(0.02)

    @staticmethod
    def _rss() -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0


def _sync(device) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", choices=("doc_qa", "short"), default="doc_qa",
                        help="doc_qa: the doc_qa program with two demos; short: a bare predictor on short notices")
    parser.add_argument("--program", type=Path, default=None,
                        help="a compiled doc_qa program.json (from a compile run) instead of the two labeled demos")
    parser.add_argument("--split", choices=("mixed", "test"), default="mixed",
                        help="doc_qa questions: dev+test alternating English/Japanese, or the test split in order")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    parser.add_argument("--n", type=int, default=16, help="number of prompts")
    parser.add_argument("--threads", type=int, default=8, help="DSPy caller threads on the engine")
    parser.add_argument("--max-tokens", type=int, default=32,
                        help="max new tokens per prompt, both sides, where the predictor sets none (doc_qa's sets 64)")
    parser.add_argument("--transformers-batch", action="store_true",
                        help="also run transformers' generate_batch (its continuous batching) on the same prompts")
    parser.add_argument("--torch-threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--model", default="gemma-3-270m", help="the in-process model spec (default: the embedded one)")
    parser.add_argument("--answer-tokens", type=int, default=None,
                        help="max new tokens of every answer, the predictor's own setting overridden")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers to this JSON file")
    args = parser.parse_args(argv)
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)

    if args.docs == "short":
        program, predictor, inputs, predictor_inputs = short_workload(args.n)
    else:
        program, predictor, inputs, predictor_inputs = doc_qa_workload(args.n, args.split, args.program)
    if args.answer_tokens:
        predictor.config["max_tokens"] = args.answer_tokens
    resolved = lm_for_spec(args.model, device=args.device, max_tokens=args.max_tokens, cache=False)
    engine = resolved.engine
    model, tokenizer = engine.model, engine.tokenizer
    adapter = PrefillChatAdapter()
    signature = predictor.signature
    prompt_ids = [encode_prompt(tokenizer, adapter.format(signature, predictor.demos, example))
                  for example in predictor_inputs]
    stops = adapter.stop_strings(signature)
    max_tokens = predictor.config.get("max_tokens") or args.max_tokens  # what the program's calls ask for
    lengths = sorted(len(ids) for ids in prompt_ids)
    shared = min(next((i for i, (a, b) in enumerate(zip(prompt_ids[0], ids, strict=False)) if a != b), len(ids))
                 for ids in prompt_ids[1:]) if len(prompt_ids) > 1 else 0
    on_gpu = engine.device.startswith("cuda")

    print(f"device: {engine.device} ({device_name(engine.device)}, {engine.dtype}), "
          f"torch threads: {torch.get_num_threads()}, load average before: {os.getloadavg()[0]:.2f}")
    demos = f"{len(predictor.demos)} demos" + (f" from {args.program}" if args.program else "")
    print(f"prompts: {len(inputs)} --docs {args.docs} ({demos}), prompt tokens min/median/max "
          f"{lengths[0]}/{statistics.median(lengths):.0f}/{lengths[-1]}, shared by all: {shared}, "
          f"max new tokens {max_tokens}")

    run_anchor(model, tokenizer, prompt_ids[:1], 4, stops)  # warm-ups: first-call allocations, the engine's int8 head
    engine.generate_batch(prompt_ids[:1], GenerationSettings(max_new_tokens=4, stop=tuple(stops)))
    if on_gpu:
        torch.cuda.reset_peak_memory_stats()
    with PeakRSS() as anchor_rss:
        anchor_s, anchor_tokens, anchor_answers = run_anchor(model, tokenizer, prompt_ids, max_tokens, stops)
    anchor_gpu = torch.cuda.max_memory_allocated() if on_gpu else 0
    n = len(inputs)
    results = {"model": args.model, "device": engine.device, "device_name": device_name(engine.device),
               "dtype": str(engine.dtype), "prompts": n, "max_new_tokens": max_tokens, "threads": args.threads,
               "anchor": throughput_numbers(n, anchor_s, anchor_tokens, anchor_gpu)}
    print(f"anchor  sequential generate, batch 1: {n / anchor_s:6.3f} examples/s  {anchor_tokens / anchor_s:6.1f} "
          f"generated tokens/s  ({anchor_s:.1f} s, {anchor_tokens} tokens)")
    runs = {}
    for drafts in (False, True):  # the engine without, then with prompt-lookup drafts
        engine.prompt_lookup = drafts
        runs[drafts] = run = engine_pass(resolved, program, inputs, args.threads, on_gpu)
        label = "with drafts" if drafts else "no drafts  "
        print(f"smelt   {label}, program x {args.threads} threads: {n / run.seconds:6.3f} examples/s  "
              f"{run.tokens / run.seconds:6.1f} generated tokens/s  ({run.seconds:.1f} s, {run.tokens} tokens, "
              f"{run.steps} steps, parse errors {run.parse_errors}/{n}, {run.admissions} admissions, at most "
              f"{run.peak_rows} decoding together; prompt passes {run.prompt_pass_s:.1f} s, decode steps "
              f"{run.decode_step_s:.1f} s)")
        differing = [i for i, ids in enumerate(prompt_ids) if run.answers.get(tuple(ids)) != anchor_answers[i]]
        results["drafts" if drafts else "no_drafts"] = throughput_numbers(n, run.seconds, run.tokens, run.gpu) | {
            "steps": run.steps, "identical_answers": n - len(differing)}
        print(f"        answers identical to sequential generate: {n - len(differing)} of {n}"
              + (f" (differing: prompts {differing})" if differing else ""))
    engine.prompt_lookup = True
    best = runs[True]
    print(f"prefix cache: {best.hit_rate:.1%} of prompt tokens reused, {engine.prefix_cache.nbytes / 2**20:.0f} MiB "
          f"held at the end (budget {engine.prefix_cache.max_bytes / 2**20:.0f} MiB)")
    results["ratio"], results["ratio_no_drafts"] = anchor_s / best.seconds, anchor_s / runs[False].seconds
    print(f"ratio (smelt / anchor examples/s): {anchor_s / best.seconds:.2f}x; without drafts "
          f"{anchor_s / runs[False].seconds:.2f}x; drafts / no drafts {runs[False].seconds / best.seconds:.2f}x")
    memory = (f"peak RSS (whole process): anchor {anchor_rss.peak / 2**20:.0f} MiB, "
              f"smelt {best.rss / 2**20:.0f} MiB")
    if on_gpu:
        memory += f"; peak GPU allocated: anchor {anchor_gpu / 2**20:.0f} MiB, smelt {best.gpu / 2**20:.0f} MiB"
    print(memory)
    if args.json:  # the engine's numbers are kept even if generate_batch below fails
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    if args.transformers_batch:
        seconds, tokens, answers = run_transformers_batch(model, tokenizer, prompt_ids, max_tokens, stops)
        same = sum(answer == expected for answer, expected in zip(answers, anchor_answers, strict=True))
        results["generate_batch"] = throughput_numbers(n, seconds, tokens, 0) | {"identical_answers": same}
        print(f"transformers generate_batch (continuous batching, paged attention): {n / seconds:6.3f} examples/s "
              f"({seconds:.1f} s, {tokens} tokens generated: it has no stop strings, so it runs to max_tokens or "
              f"the end token); ratio to anchor {anchor_s / seconds:.2f}x; answers (cut at the stop strings) "
              f"identical to sequential generate: {same} of {n}")
    print(f"load average after: {os.getloadavg()[0]:.2f} (other busy processes on this machine skew both sides)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


def throughput_numbers(n: int, seconds: float, tokens: int, gpu_bytes: int) -> dict:
    return {"seconds": round(seconds, 3), "generated_tokens": tokens, "examples_per_s": round(n / seconds, 3),
            "tokens_per_s": round(tokens / seconds, 1), "peak_gpu_mib": gpu_bytes // 2**20 if gpu_bytes else None}


if __name__ == "__main__":
    main()
