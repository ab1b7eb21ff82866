"""The int8-screened greedy pick: always the fp32 projection's argmax, even where int8 alone would pick wrong.

Every screening kernel is tested on every machine that has it: int8 x int8 through fbgemm (every x86 PyTorch),
through ``torch._int_mm``, and bf16 x int8 (``torch._weight_int8pack_mm``)."""

import platform

import pytest
import torch

from smelt.lm.engine import fbgemm_linear
from smelt.lm.engine.greedy_head import (
    KERNELS,
    GreedyHead,
    available_kernels,
    cpu_has_int8_dot_products,
    default_kernel,
)

NEEDS_FBGEMM = pytest.mark.skipif("fbgemm" not in available_kernels(), reason="no fbgemm in this PyTorch (not x86)")
EVERY_KERNEL = pytest.mark.parametrize("kernel", [
    pytest.param(name, marks=NEEDS_FBGEMM if name == "fbgemm" else ()) for name in KERNELS])


@EVERY_KERNEL
def test_a_near_tie_below_int8s_error_is_decided_by_the_exact_logits(kernel):
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(2000, 64, generator=generator) * 0.05
    hidden = torch.randn(3, 64, generator=generator)
    # Row 7 is row 3 nudged towards the first hidden state: its exact logit wins by 1e-4, far below int8's error.
    weight[3] = torch.randn(64, generator=generator) * 0.05 + hidden[0] * 0.2
    weight[7] = weight[3] + hidden[0] / hidden[0].norm() ** 2 * 1e-4
    head = GreedyHead(weight, kernel=kernel)
    exact = hidden @ weight.T
    assert int(exact[0].argmax()) == 7

    approx, radius = head.screen(hidden)
    assert bool(((exact - approx).abs() <= radius).all())  # the bound holds everywhere
    assert float(radius[0, 7]) > 1e-3  # int8 alone cannot tell rows 3 and 7 apart
    assert head.argmax(hidden).tolist() == exact.argmax(dim=1).tolist()


@EVERY_KERNEL
def test_random_hidden_states_pick_the_fp32_argmax(kernel):
    generator = torch.Generator().manual_seed(1)
    weight = torch.randn(5000, 128, generator=generator) * 0.03
    hidden = torch.randn(8, 128, generator=generator) * 4
    head = GreedyHead(weight, kernel=kernel)
    assert head.argmax(hidden).tolist() == (hidden @ weight.T).argmax(dim=1).tolist()


@pytest.mark.parametrize("kernel", ["int_mm", pytest.param("fbgemm", marks=NEEDS_FBGEMM)])
def test_the_hidden_states_rounding_is_inside_the_int8_bound(kernel):
    # Weights that int8 with bf16 scales holds exactly: the screen's whole error is the hidden state's int8
    # rounding, coarse where a few outlier dimensions set its scale, which the bound must still cover.
    generator = torch.Generator().manual_seed(2)
    weight = torch.randint(-127, 128, (5000, 96), generator=generator).float() * 2.0**-9
    weight[:, -1] = 127 * 2.0**-9  # every row's largest entry: its scale is 2^-9
    hidden = torch.randn(16, 96, generator=generator)
    hidden[:, :3] *= 60
    head = GreedyHead(weight, kernel=kernel)
    assert float(head.error.max()) == 0.0
    exact = (hidden.double() @ weight.double().T).float()
    approx, radius = head.screen(hidden)
    assert float((exact - approx).abs().max()) > 0  # the hidden state's rounding shows
    assert bool(((exact - approx).abs() <= radius).all())
    assert head.argmax(hidden).tolist() == exact.argmax(dim=1).tolist()


def test_only_fp32_cpu_weights_are_screened():
    assert GreedyHead.usable(torch.zeros(4, 4))
    assert not GreedyHead.usable(torch.zeros(4, 4, dtype=torch.bfloat16))
    assert not GreedyHead.usable(None)


def test_on_the_embedded_model_the_bound_holds_and_the_picks_match(embedded_lm):
    from smelt.lm.engine.model_parts import decoder_of, plain_output_projection

    engine = embedded_lm.engine
    assert engine.runner.screened_head() is not None  # CPU, fp32, a plain tied head: greedy steps are screened
    weight = plain_output_projection(engine.model)
    texts = ["The city library is open from 9:00 to 19:00 on weekdays. When does it close? Answer:",
             "市立図書館の開館時間は平日が午前9時から午後7時まで。閉館時間は？ 答え：",
             "1, 2, 3, 4, 5, 6, 7"]
    with torch.inference_mode():
        hidden = [decoder_of(engine.model)(input_ids=engine.tokenizer(text, return_tensors="pt").input_ids)
                  .last_hidden_state[0] for text in texts]  # every position: many contexts
        for kernel in available_kernels():
            head = GreedyHead(weight, kernel=kernel)
            for text, states in zip(texts, hidden, strict=True):
                exact = (weight @ states.T).T
                approx, radius = head.screen(states)
                assert bool(((exact - approx).abs() <= radius).all()), (kernel, text)
                assert head.argmax(states).tolist() == exact.argmax(dim=1).tolist(), (kernel, text)


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="fbgemm is x86's")
def test_on_x86_fbgemm_sums_exactly_and_is_the_default_kernel_without_int8_dot_products():
    assert fbgemm_linear.sums_exactly()
    assert default_kernel() == ("int_mm" if cpu_has_int8_dot_products() else "fbgemm")


def test_an_unknown_kernel_is_refused_by_name():
    with pytest.raises(ValueError, match="'int4'"):
        GreedyHead(torch.zeros(4, 4), kernel="int4")


@NEEDS_FBGEMM
def test_fbgemm_grid_values_are_what_the_kernel_multiplies():
    generator = torch.Generator().manual_seed(3)
    rows = torch.randn(5, 40, generator=generator) * 7
    grid = fbgemm_linear.on_grid(rows)
    levels = grid.exact / grid.scale
    assert bool((levels == levels.round()).all()) and float(levels.min()) >= -grid.zero_point
    assert float(levels.max()) <= 127 - grid.zero_point
    assert float((rows.double() - grid.exact).abs().max()) <= grid.scale / 2 * (1 + 1e-6)
    # What the kernel is handed rounds the grid's values to fp32, by far less than half a level: it reads them back
    # as the same levels.
    assert bool(((grid.values.double() - grid.exact).abs() <= grid.exact.abs() * 2.0**-24).all())


@NEEDS_FBGEMM
def test_a_row_with_thousands_of_candidates_gets_a_second_fbgemm_pass_and_the_same_pick(monkeypatch):
    generator = torch.Generator().manual_seed(4)
    hidden = torch.randn(4, 64, generator=generator) * 3
    # Weights that int8 holds exactly (so the hidden states' rounding is the screen's whole error), and 4,000 rows
    # a step apart in one entry around the first hidden state's direction: 7 bits cannot tell them apart.
    levels = torch.randint(-126, 127, (6000, 64), generator=generator)
    levels[:4000] = (hidden[0] / hidden[0].abs().max() * 100).round()
    levels[torch.arange(4000), torch.randint(0, 63, (4000,), generator=generator)] += 1
    levels[:, -1] = 127  # every row's largest entry: its scale is 2^-9
    weight = levels.float() * 2.0**-9
    head = GreedyHead(weight, kernel="fbgemm")
    assert float(head.error.max()) == 0.0
    refined = []
    original = GreedyHead._refine
    monkeypatch.setattr(GreedyHead, "_refine", lambda self, bound, h, rows: (refined.append(rows.tolist()),
                                                                              original(self, bound, h, rows)))
    exact = (hidden.double() @ weight.double().T).float()
    assert head.argmax(hidden).tolist() == exact.argmax(dim=1).tolist()
    assert refined and 0 in refined[0]
    # and after the second pass the bound still holds everywhere, narrower than after the first
    bound = head._screen_fbgemm(hidden)
    first = bound.radius()[0].clone()
    original(head, bound, hidden, torch.tensor([0]))
    assert bool(((exact - bound.approx).abs() <= bound.radius()).all())
    assert float(bound.radius()[0].max()) < float(first.min()) / 2
