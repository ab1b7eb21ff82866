"""Throughput of the batched in-process engine against a plain one-prompt-at-a-time generate loop.

The same doc-QA prompts, half English and half Japanese, go through:

- smelt: ``dspy.Predict("document, question -> answer")`` with the PrefillChatAdapter on the
  batched engine, called from a pool of threads as dspy.Evaluate would, DSPy's cache off;
- anchor: ``model.generate`` on the same prompt token ids, batch 1, in a plain loop.

Both decode greedily with the same max_new_tokens and stop strings, on the same loaded model,
in the same process, after a warm-up; the anchor runs first. ``--docs short`` (default) uses
the short notices below, the size of a retrieved passage; ``--docs doc_qa`` uses the shipped
doc_qa questions with their whole documents (400-1200 characters), where the prompt pass
dominates and batching has less to win.

    python -m bench.engine_throughput [--docs short|doc_qa] [--device auto] [--n 16] [--threads 8]
                                      [--max-tokens 32] [--torch-threads N]
"""

import argparse
import json
import os
import resource
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dspy
import torch
from transformers import StoppingCriteria

from bench.machine import device_name
from smelt.lm import lm_for_spec
from smelt.lm.engine import find_stop
from smelt.lm.prefill_adapter import PrefillChatAdapter
from smelt.lm.rendering import encode_prompt

DATA_DIR = Path(__file__).resolve().parents[1] / "data" / "doc_qa"
SIGNATURE = "document, question -> answer"

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


def short_prompts(n: int) -> list[dict[str, str]]:
    if n > len(SHORT):
        sys.exit(f"--docs short has {len(SHORT)} prompts; ask for --n {len(SHORT)} or fewer")
    return [{"document": document, "question": question} for document, question in SHORT[:n]]


def doc_qa_prompts(n: int, data_dir: Path = DATA_DIR) -> list[dict[str, str]]:
    """n shipped questions with their whole documents, alternating English and Japanese, in file order."""

    def read(path: Path) -> list[dict]:
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]

    documents = {doc["id"]: doc for doc in read(data_dir / "documents.jsonl")}
    questions = [q for split in ("dev", "test", "train") for q in read(data_dir / f"{split}.jsonl")]
    by_language = {lang: [q for q in questions if q["language"] == lang] for lang in ("en", "ja")}
    picked = [q for pair in zip(by_language["en"], by_language["ja"], strict=False) for q in pair][:n]
    if len(picked) < n:
        sys.exit(f"{data_dir}: only {len(picked)} English/Japanese question pairs for --n {n}")
    return [{"document": documents[q["doc_id"]]["text"], "question": q["question"]} for q in picked]




class _StopAfter(StoppingCriteria):
    """Ends a batch-1 generation once its text holds a stop string, by the engine's own rule (find_stop)."""

    def __init__(self, tokenizer, stops: list[str], prompt_length: int):
        self.tokenizer, self.stops, self.prompt_length = tokenizer, tuple(stops), prompt_length

    def __call__(self, input_ids, scores, **kwargs):
        text = self.tokenizer.decode(input_ids[0, self.prompt_length :], skip_special_tokens=True)
        return torch.tensor([find_stop(text, self.stops) >= 0], device=input_ids.device)


def run_anchor(model, tokenizer, prompt_ids: list[list[int]], max_tokens: int, stops: list[str]) -> tuple[float, int]:
    """Plain sequential generate, one prompt at a time; returns (seconds, generated tokens)."""
    device = next(model.parameters()).device
    generated = 0
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
            generated += output.shape[1] - len(ids)
    _sync(device)
    return time.perf_counter() - started, generated


def run_engine(resolved, inputs: list[dict[str, str]], threads: int) -> tuple[float, int, int]:
    """DSPy Predict calls from a thread pool on the engine; returns (seconds, generated tokens, parse errors)."""
    predict = dspy.Predict(SIGNATURE)

    def call(example: dict[str, str]) -> bool:
        with resolved.context():
            try:
                predict(**example)
                return True
            except dspy.utils.exceptions.AdapterParseError:
                return False

    history_before = len(resolved.lm.history)
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        parsed = list(pool.map(call, inputs))
    seconds = time.perf_counter() - started
    generated = sum(entry["usage"]["completion_tokens"] for entry in resolved.lm.history[history_before:])
    return seconds, generated, parsed.count(False)


def _sync(device) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", choices=("short", "doc_qa"), default="short", help="which documents to ask about")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    parser.add_argument("--n", type=int, default=16, help="number of doc-QA prompts")
    parser.add_argument("--threads", type=int, default=8, help="DSPy caller threads on the engine")
    parser.add_argument("--max-tokens", type=int, default=32, help="max new tokens per prompt, both sides")
    parser.add_argument("--torch-threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--data", type=Path, default=DATA_DIR, help="folder with the doc_qa jsonl files")
    args = parser.parse_args(argv)
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)

    inputs = short_prompts(args.n) if args.docs == "short" else doc_qa_prompts(args.n, args.data)
    resolved = lm_for_spec("gemma-3-270m", device=args.device, max_tokens=args.max_tokens, cache=False)
    engine = resolved.engine
    model, tokenizer = engine.model, engine.tokenizer
    adapter = PrefillChatAdapter()
    signature = dspy.Signature(SIGNATURE)
    prompt_ids = [encode_prompt(tokenizer, adapter.format(signature, [], example)) for example in inputs]
    stops = adapter.stop_strings(signature)
    lengths = sorted(len(ids) for ids in prompt_ids)
    on_gpu = engine.device.startswith("cuda")

    print(f"device: {engine.device} ({device_name(engine.device)}, {engine.dtype}), "
          f"torch threads: {torch.get_num_threads()}, load average before: {os.getloadavg()[0]:.2f}")
    print(f"prompts: {len(inputs)} --docs {args.docs} (en/ja alternating), prompt tokens min/median/max "
          f"{lengths[0]}/{lengths[len(lengths) // 2]}/{lengths[-1]}, max new tokens {args.max_tokens}")

    run_anchor(model, tokenizer, prompt_ids[:1], 4, stops)  # warm-up: first-call allocations
    if on_gpu:
        torch.cuda.reset_peak_memory_stats()
    anchor_s, anchor_tokens = run_anchor(model, tokenizer, prompt_ids, args.max_tokens, stops)
    anchor_gpu = torch.cuda.max_memory_allocated() if on_gpu else 0
    if on_gpu:
        torch.cuda.reset_peak_memory_stats()
    calls_before = len(engine.batch_sizes)
    engine_s, engine_tokens, parse_errors = run_engine(resolved, inputs, args.threads)
    engine_gpu = torch.cuda.max_memory_allocated() if on_gpu else 0
    batches = engine.batch_sizes[calls_before:]

    n = len(inputs)
    print(f"anchor  sequential generate, batch 1: {n / anchor_s:6.3f} examples/s  {anchor_tokens / anchor_s:6.1f} "
          f"generated tokens/s  ({anchor_s:.1f} s, {anchor_tokens} tokens)")
    print(f"smelt   dspy.Predict x {args.threads} threads, batched engine: {n / engine_s:6.3f} examples/s  "
          f"{engine_tokens / engine_s:6.1f} generated tokens/s  ({engine_s:.1f} s, {engine_tokens} tokens, "
          f"generate calls {batches}, parse errors {parse_errors}/{n})")
    print(f"ratio (smelt / anchor examples/s): {anchor_s / engine_s:.2f}x")
    memory = f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB (whole process)"
    if on_gpu:
        memory += f"; peak GPU allocated: anchor {anchor_gpu / 2**20:.0f} MiB, smelt {engine_gpu / 2**20:.0f} MiB"
    print(memory)
    print(f"load average after: {os.getloadavg()[0]:.2f} (other busy processes on this machine skew both sides)")


if __name__ == "__main__":
    main()
