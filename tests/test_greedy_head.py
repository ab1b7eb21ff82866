"""The int8-screened greedy pick: always the fp32 projection's argmax, even where int8 alone would pick wrong."""

import torch

from smelt.lm.greedy_head import GreedyHead


def test_a_near_tie_below_int8s_error_is_decided_by_the_exact_logits():
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(2000, 64, generator=generator) * 0.05
    hidden = torch.randn(3, 64, generator=generator)
    # Row 7 is row 3 nudged towards the first hidden state: its exact logit wins by 1e-4, far below int8's error.
    weight[3] = torch.randn(64, generator=generator) * 0.05 + hidden[0] * 0.2
    weight[7] = weight[3] + hidden[0] / hidden[0].norm() ** 2 * 1e-4
    head = GreedyHead(weight)
    exact = hidden @ weight.T
    assert int(exact[0].argmax()) == 7

    approx, radius = head.screen(hidden)
    assert bool(((exact - approx).abs() <= radius).all())  # the bound holds everywhere
    assert float(radius[0, 7]) > 1e-3  # int8 alone cannot tell rows 3 and 7 apart
    assert head.argmax(hidden).tolist() == exact.argmax(dim=1).tolist()


def test_random_hidden_states_pick_the_fp32_argmax():
    generator = torch.Generator().manual_seed(1)
    weight = torch.randn(5000, 128, generator=generator) * 0.03
    hidden = torch.randn(8, 128, generator=generator) * 4
    head = GreedyHead(weight)
    assert head.argmax(hidden).tolist() == (hidden @ weight.T).argmax(dim=1).tolist()


def test_only_fp32_cpu_weights_are_screened():
    assert GreedyHead.usable(torch.zeros(4, 4))
    assert not GreedyHead.usable(torch.zeros(4, 4, dtype=torch.bfloat16))
    assert not GreedyHead.usable(None)


def test_on_the_embedded_model_the_bound_holds_and_the_picks_match(embedded_lm):
    from smelt.lm.model_parts import decoder_of, plain_output_projection

    engine = embedded_lm.engine
    head = engine._screened_head()
    assert head is not None  # CPU, fp32, a plain tied head: the engine screens its greedy steps
    weight = plain_output_projection(engine.model)
    texts = ["The city library is open from 9:00 to 19:00 on weekdays. When does it close? Answer:",
             "市立図書館の開館時間は平日が午前9時から午後7時まで。閉館時間は？ 答え：",
             "1, 2, 3, 4, 5, 6, 7"]
    with torch.inference_mode():
        for text in texts:
            ids = engine.tokenizer(text, return_tensors="pt").input_ids
            hidden = decoder_of(engine.model)(input_ids=ids).last_hidden_state[0]  # every position: many contexts
            exact = (weight @ hidden.T).T
            approx, radius = head.screen(hidden)
            assert bool(((exact - approx).abs() <= radius).all()), text
            assert head.argmax(hidden).tolist() == exact.argmax(dim=1).tolist(), text
