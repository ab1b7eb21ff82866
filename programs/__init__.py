"""Tasks and the programs they build: Task, the shipped tasks (doc_qa, rag_qa), task files, finding TASK
(registry), DSPy modules (signature_program, predictors), loading program.json, the metric vocabulary, data
loading (data_files, field_mapping, datasets), text normalisation and BM25 retrieval."""
