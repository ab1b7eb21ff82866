"""No password reaches a manifest: URLs in options and on the command line are recorded without theirs."""

import json
import sys

from smelt.lifecycle import build_manifest
from smelt.programs.registry import get_task
from smelt.redaction import redact_text, scrub, scrub_argv


def test_urls_in_text_lose_their_passwords():
    assert redact_text("see https://user:t0ken@gpu-box:8000/v1 now") == "see https://user:***@gpu-box:8000/v1 now"
    assert redact_text("http://host/v1?api_key=abc&x=1") == "http://host/v1?api_key=***&x=1"
    assert redact_text("http://gpu-box:8000/v1") == "http://gpu-box:8000/v1"


def test_scrub_drops_secret_keys_and_redacts_nested_urls():
    options = {"api_base": "https://u:pw@host/v1", "api_key": "sk-1", "data": {"data": "hf-token"},
               "fields": ["answer=gold", "https://a:b@c/d"], "threads": 8}
    assert scrub(options) == {"api_base": "https://u:***@host/v1", "data": {"data": "hf-token"},
                              "fields": ["answer=gold", "https://a:***@c/d"], "threads": 8}


def test_scrub_argv_hides_secret_option_values_and_url_passwords():
    argv = ["cli.py", "compile", "doc_qa", "--api-base", "https://user:s3cret@host/v1", "--api-key", "sk-1",
            "--token=abc", "--lm", "openai/gpt-4o-mini"]
    assert scrub_argv(argv) == ["cli.py", "compile", "doc_qa", "--api-base", "https://user:***@host/v1",
                                "--api-key", "***", "--token=***", "--lm", "openai/gpt-4o-mini"]


def test_a_manifest_holds_no_password(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["cli.py", "compile", "doc_qa", "--api-base=https://me:s3cret@gpu-box/v1"])
    manifest = build_manifest(command="compile", task=get_task("doc_qa"), seed=0, models={}, data_sources={},
                              options={"api_base": "https://me:s3cret@gpu-box/v1", "openai_api_key": "sk-1"})
    text = json.dumps(manifest)
    assert "s3cret" not in text and "sk-1" not in text
    assert manifest["options"]["api_base"] == "https://me:***@gpu-box/v1"
    assert manifest["argv"][-1] == "--api-base=https://me:***@gpu-box/v1"
