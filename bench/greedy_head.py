"""The greedy pick through the int8-screened output projection against the fp32 projection's argmax.

On the embedded model (Gemma 3 270M, a 262,144 x 640 head), for batches of 1 to 64 hidden states taken
from doc_qa prompts, in one process: the anchor is ``head @ hidden.T`` and its argmax, as a step without
the screen picks; against it, ``GreedyHead.argmax`` with each screening kernel the machine has: int8 x int8
through ``torch._int_mm`` (the engine's choice where the CPU has int8 dot products, and fast only there),
through fbgemm (``lm/engine/fbgemm_linear.py``; the engine's choice on other x86 CPUs), and bf16 x int8
(``torch._weight_int8pack_mm``). Every pick is checked against the anchor's; the ratio is anchor time over
screen time (above 1: the screen is faster).

    python -m bench.greedy_head [--repeats 10]
"""

import argparse

import torch

from bench.machine import cpu_name
from bench.timing import seconds_per_call
from smelt.lm import lm_for_spec
from smelt.lm.engine.greedy_head import GreedyHead, available_kernels, cpu_has_int8_dot_products, default_kernel
from smelt.lm.engine.model_parts import decoder_of, plain_output_projection
from smelt.programs.registry import get_task

BATCHES = (1, 2, 4, 8, 16, 32, 64)
NAMES = {"fbgemm": "int8 x int8 (fbgemm)", "int_mm": "int8 x int8 (_int_mm)", "int8pack": "bf16 x int8"}


def hidden_states(engine, count: int):
    """Final hidden states at every position of a few doc_qa documents: ``count`` of them, spread out."""
    texts = [example.document for example in get_task("doc_qa").shipped_data().dev[:6]]
    with torch.inference_mode():
        states = torch.cat([decoder_of(engine.model)(input_ids=engine.tokenizer(text, return_tensors="pt")
                                                      .input_ids[:, :512]).last_hidden_state[0] for text in texts])
    return states[torch.linspace(0, len(states) - 1, count).long()]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=10, help="timed calls per batch size and method")
    args = parser.parse_args(argv)

    engine = lm_for_spec("gemma-3-270m", device="cpu").engine
    weight = plain_output_projection(engine.model)
    print(f"CPU: {cpu_name()}, torch threads {torch.get_num_threads()}, int8 dot products: "
          f"{cpu_has_int8_dot_products()}; head {tuple(weight.shape)} fp32; "
          f"the engine's kernel: {NAMES[default_kernel()]}")
    heads = {NAMES[kernel]: GreedyHead(weight, kernel=kernel) for kernel in available_kernels()}
    states = hidden_states(engine, max(BATCHES) * 4)
    print(f"{'rows':>5} {'fp32 argmax':>12} " + " ".join(f"{name:>22}" for name in heads))
    with torch.inference_mode():
        for rows in BATCHES:
            hidden = states[:: len(states) // rows][:rows]
            expected = (weight @ hidden.T).argmax(dim=0).tolist()
            anchor = seconds_per_call(lambda h=hidden: (weight @ h.T).argmax(dim=0), args.repeats)
            cells = []
            for head in heads.values():
                same = head.argmax(hidden).tolist() == expected
                took = seconds_per_call(lambda h=hidden, g=head: g.argmax(h), args.repeats)
                cells.append(f"{took * 1e3:7.1f} ms {anchor / took:5.2f}x {'same' if same else 'DIFF'}")
            print(f"{rows:>5} {anchor * 1e3:9.1f} ms " + " ".join(f"{cell:>22}" for cell in cells))


if __name__ == "__main__":
    main()
