"""An Ollama Modelfile that sends the distilled program's prompt byte for byte.

The TEMPLATE is the prompt of prompt.json with ``{{ .Prompt }}`` where the input goes, and no other logic: with one
input field, ``.Prompt`` is that field's value; with several, it is the user part of the prompt (each field after its
``[[ ## name ## ]]`` marker, as prompt.json's ``user`` shows). One Modelfile per predictor (``Modelfile`` when the
program has one). Greedy decoding with no repeat penalty (Ollama's default is 1.1), the program's stop strings and
max_tokens, as smelt decodes.

Ollama's Modelfile parser takes a quoted value as it stands (no escapes, newlines kept), keeps only printable
characters besides spaces and line breaks, and ends a value at whitespace after its closing quotes; the template is a
Go template, where ``{{`` opens an action. Text that cannot pass through either is refused.
"""

from smelt.errors import SmeltError

PROMPT_ACTION = "{{ .Prompt }}"


def modelfiles(spec: dict, model_file: str, *, header: str, adapter: str | None = None) -> dict[str, str]:
    """File name -> Modelfile text for each predictor of prompt.json's ``spec``, all FROM ``model_file`` (with the
    GGUF LoRA ``adapter`` on it, if given)."""
    predictors = spec["predictors"]
    return {("Modelfile" if len(predictors) == 1 else f"Modelfile.{name}"):
            modelfile(entry, model_file, header=f"{header}; predictor {name}", adapter=adapter)
            for name, entry in predictors.items()}


def modelfile(predictor: dict, model_file: str, *, header: str, adapter: str | None = None) -> str:
    lines = [f"# {header}", "# ollama create NAME -f THIS_FILE (see README.txt)", f"FROM ./{model_file}",
             *([f"ADAPTER ./{adapter}"] if adapter else []), f"TEMPLATE {_quoted(template(predictor))}"]
    lines += [f"PARAMETER stop {_quoted(stop)}" for stop in predictor["stop"]]
    lines += ["PARAMETER temperature 0", "PARAMETER repeat_penalty 1",
              f"PARAMETER num_predict {predictor['max_tokens']}"]
    return "\n".join(lines) + "\n"


def template(predictor: dict) -> str:
    """The Go template: prompt.json's prompt with ``{{ .Prompt }}`` for the input (see the module docstring)."""
    fields = list(predictor["input_fields"])
    if len(fields) == 1:
        head, tail = predictor["user"].split("{" + fields[0] + "}")
        pieces = [predictor["before"] + head, None, tail + predictor["after"]]
    else:
        pieces = [predictor["before"], None, predictor["after"]]
    return "".join(PROMPT_ACTION if piece is None else _literal(piece) for piece in pieces)


def _literal(text: str) -> str:
    """``text`` as literal Go template text: ``{{`` written as an action that prints it."""
    return text.replace("{{", '{{ "{{" }}')


def _quoted(value: str) -> str:
    """A Modelfile value that Ollama's parser reads back as ``value``."""
    unreadable = sorted({repr(c) for c in value if not c.isprintable() and c not in "\n\t"})
    if unreadable or '"""' in value:
        what = ", ".join(unreadable) if unreadable else 'three double quotes in a row'
        raise SmeltError(f"the program's prompt holds {what}, which an Ollama Modelfile cannot carry; export --format "
                         "gguf and send prompt.json's prompt to llama.cpp instead")
    return f'"""{value}"""' if '"' in value else f'"{value}"'
