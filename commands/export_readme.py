"""README.txt of an export: what is in OUT, the prompt to send, and how to serve it in each format."""

import json


def readme(fmt: str, quant: str, spec: dict, context: dict) -> str:
    """The text of README.txt. ``spec`` is prompt.json's content; ``context`` names OUT, its model files, the task,
    the student, the base model (peft) and the adapter's rank."""
    name = f"smelt-{context['task'].replace('_', '-')}"
    first = next(iter(spec["predictors"].values()))
    request = {"stop": first["stop"], "max_tokens": first["max_tokens"]}
    parts = [context["header"], "", "Files: " + ", ".join([*context["files"], "prompt.json", "README.txt"]), "",
             _prompt_section(spec), "", "How to serve it", "", _SERVE[fmt](context, name, quant, request)]
    return "\n".join(parts).rstrip() + "\n"


def _prompt_section(spec: dict) -> str:
    lines = ["The prompt (prompt.json holds it exactly; it has no instructions: the adapter learned the task)"]
    for predictor_name, entry in spec["predictors"].items():
        lines += ["", f"predictor {predictor_name}: inputs {', '.join(entry['input_fields'])} -> "
                      f"{', '.join(entry['output_fields'])}",
                  f"  PROMPT = {json.dumps(entry['prompt'], ensure_ascii=False)}",
                  f"  with each {{field}} replaced by its value; stop {json.dumps(entry['stop'], ensure_ascii=False)}, "
                  f"max_tokens {entry['max_tokens']}, temperature 0 (greedy)",
                  f"  answer: {entry['answer']}"]
    lines += ["",
              "Each input is the value the program passes its predictor: a program may prepare it from the task's "
              f"inputs ({', '.join(spec['task_inputs'])}); doc_qa and rag_qa cut a long document down to its best "
              "passages first. Whitespace at either end of the user part is removed (prompt.json how_to_render). "
              f"The tokenizer puts {' '.join(spec['leading_special_tokens']) or 'nothing'} before the prompt, as "
              "llama.cpp, vLLM, TGI and transformers do by default."]
    if any("\n\n" in entry["stop"] for entry in spec["predictors"].values()):
        lines.append('smelt counts a stop string only after the answer\'s first non-blank character; a server stops '
                     'at the first "\\n\\n" even there, so an answer that opens with a blank line comes back empty.')
    decoding = spec.get("decoding", {})
    if decoding.get("choice") == "likelihood":
        lines.append("The program chooses its label by likelihood (-o choice=likelihood): smelt scores each declared "
                     "label; a server generates one instead, which may differ.")
    elif decoding.get("constrain") and spec.get("answer_labels"):
        lines.append("smelt holds the answer to the task's labels while it decodes (-o constrain=true); a server "
                     f"without that constraint may answer outside them ({', '.join(spec['answer_labels'])}).")
    return "\n".join(lines)


def _body(fields: dict) -> str:
    return json.dumps(fields, ensure_ascii=False)


def _hf(context: dict, name: str, quant: str, request: dict) -> str:
    out = context["out"]
    return "\n".join([
        "transformers:",
        f'  model = AutoModelForCausalLM.from_pretrained("{out}"); tokenizer = AutoTokenizer.from_pretrained("{out}")',
        f"  model.generate(**tokenizer(PROMPT, return_tensors='pt'), max_new_tokens={request['max_tokens']}, "
        "do_sample=False), then cut the new text at the first stop string",
        f"vLLM: vllm serve {out} --served-model-name {name}",
        "  POST /v1/completions " + _body({"model": name, "prompt": "PROMPT", "temperature": 0, **request}),
        f"TGI: text-generation-launcher --model-id {out}",
        "  POST /generate " + _body({"inputs": "PROMPT", "parameters": {
            "max_new_tokens": request["max_tokens"], "do_sample": False, "stop": request["stop"]}}),
    ])


def _peft(context: dict, name: str, quant: str, request: dict) -> str:
    base, rank = context["base"], context.get("rank") or 16
    lines = [
        f"vLLM: vllm serve {base} --enable-lora --max-lora-rank {max(16, 1 << (rank - 1).bit_length())} "
        f"--lora-modules {name}={context['out']}",
        "  POST /v1/completions " + _body({"model": name, "prompt": "PROMPT", "temperature": 0, **request}),
        f'peft: PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained("{base}"), "{context["out"]}")',
        f"The base model is {base} (adapter_config.json's base_model_name_or_path): serve the adapter on exactly it.",
    ]
    if context["embedded"]:
        lines.append("That folder is smelt's transformers copy of the embedded GGUF (not the hub's "
                     "google/gemma-3-270m, whose weights differ); `python cli.py bundle OUT_DIR --model gemma-3-270m` "
                     "carries it to another machine, or export --format hf for one merged folder.")
    return "\n".join(lines)


def _gguf(context: dict, name: str, quant: str, request: dict) -> str:
    model = f"{context['out']}/{context['files'][0]}"
    lora = f" --lora {context['out']}/adapter.gguf" if "adapter.gguf" in context["files"] else ""
    return "\n".join([
        f"llama.cpp: llama-server -m {model}{lora}",
        "  POST /completion " + _body({"prompt": "PROMPT", "n_predict": request["max_tokens"], "temperature": 0,
                                       "stop": request["stop"]}),
        "  (or /v1/completions with max_tokens, as for vLLM)",
        f"Ollama: export again with --format ollama --quant {quant} for a Modelfile that writes the prompt.",
    ])


def _ollama(context: dict, name: str, quant: str, request: dict) -> str:
    modelfiles = [file for file in context["files"] if file.startswith("Modelfile")]
    lines = [f"cd {context['out']} && ollama create {name} -f {modelfiles[0]}"]
    if len(modelfiles) > 1:
        lines.append("(one Modelfile per predictor: " + ", ".join(modelfiles) + "; create each under its own name)")
    lines += [
        f'ollama run {name} "INPUT", or POST /api/generate ' + _body({"model": name, "prompt": "INPUT",
                                                                     "stream": False}),
        "INPUT is the value of the input field when the predictor has one; with several it is the user part of the "
        "prompt (prompt.json's user, filled in): the Modelfile's TEMPLATE adds the rest, byte for byte.",
    ]
    if not context["embedded"]:
        lines.append("The Modelfile imports the merged safetensors folder model/ (Ollama converts the architectures "
                     "it supports: Llama, Mistral, Gemma, Phi-3, Qwen); ollama create --quantize q4_K_M makes it "
                     "smaller.")
    return "\n".join(lines)


_SERVE = {"hf": _hf, "peft": _peft, "gguf": _gguf, "ollama": _ollama}
