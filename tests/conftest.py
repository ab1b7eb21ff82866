"""Shared fixtures. The embedded model is loaded once per test session; every engine test reuses it."""

import pytest


@pytest.fixture(scope="session")
def embedded_model():
    """The embedded Gemma 3 270M on CPU (converted on first use, then read from the smelt cache)."""
    from smelt.lm.loading import load_model
    from smelt.lm.specs import parse_spec

    return load_model(parse_spec("gemma-3-270m"), device="cpu")


@pytest.fixture
def embedded_lm(embedded_model):
    """A ``ResolvedLM`` on the session's model, DSPy cache off. Its engine is the model's one shared engine; closing
    it afterwards empties ``batch_sizes`` for the next test (the engine stays usable)."""
    from smelt.lm import lm_for_spec

    resolved = lm_for_spec("gemma-3-270m", device="cpu", max_tokens=16, cache=False)
    yield resolved
    resolved.engine.close()


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    """Runs and bad data files for the user-mistake cases (tests/mistakes.py), built once per test module."""
    from mistakes import build_world

    return build_world(tmp_path_factory.mktemp("bad_inputs"))
