"""Scoring: the answer metrics and the judge (metrics, judge, jury), facts and grounding (facts, fact_matching),
languages, the evaluation loop (evaluate), one-request latency, usage copied from an earlier run; reports/."""
