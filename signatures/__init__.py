"""What goes in and out of each step: dspy.Signature classes, no logic."""

__all__ = [
    "doc_qa", "judge", "rag_qa", "synthetic",
]
