"""Drafts come from the latest earlier occurrence of the longest matching run of the request's last tokens."""

from smelt.lm.engine.prompt_lookup import PromptLookup


def test_the_longest_matching_run_wins_over_a_later_shorter_one():
    # "7 8" occurs at 1-2 (followed by 9 10 11); "8" alone occurs later, at 6 (followed by 30).
    lookup = PromptLookup([1, 7, 8, 9, 10, 11, 8, 30, 7, 8])
    assert lookup.draft(3) == [9, 10, 11]


def test_the_latest_occurrence_of_a_run_is_used_and_answer_tokens_count():
    lookup = PromptLookup([5, 6, 1, 5, 6, 2, 4])
    lookup.extend([5, 6])  # the answer so far: "5 6" occurred twice in the prompt, last followed by 2
    assert lookup.draft(2) == [2, 4]
    lookup.extend([2, 4, 5, 6])  # the answer repeats itself: its own earlier run is the latest now
    assert lookup.draft(4) == [2, 4, 5, 6]


def test_no_draft_without_a_match_or_without_room():
    assert PromptLookup([1, 2, 3]).draft(4) == []  # 3 never occurred before
    assert PromptLookup([3, 1, 3]).draft(0) == []
    assert PromptLookup([3, 1, 3]).draft(5) == [1, 3]  # a draft may run up to the current end
