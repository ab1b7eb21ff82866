"""Tasks and the programs they build: Task, the shipped tasks (doc_qa, rag_qa), task files, finding TASK
(registry), DSPy modules (signature_program, predictors), loading program.json, the metric vocabulary, data
loading (data_files, field_mapping, datasets), text normalisation and BM25 retrieval."""

__all__ = [
    "bm25", "citations", "collection_index", "data_files", "datasets", "doc_qa", "field_mapping", "metric_names",
    "predictors", "program_file", "rag_qa", "registry", "retrieval", "signature_program", "signature_text", "task",
    "task_file", "text",
]
