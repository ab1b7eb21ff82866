"""The JSON of ``POST /v1/predict``, made from the task's signature: each input field a typed, described property of
the request (nothing else accepted), each output field one of the reply's ``outputs``. FastAPI turns these models
into the OpenAPI schema and into 422 replies naming the field at fault."""

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model

from smelt.programs.task import Task

# Inputs whose name or description says they hold a body of text get a tall text box on the page.
_LONG_TEXT = re.compile(r"document|passage|text|context|body|content|article|notice|message|email|inquiry|transcript",
                        re.IGNORECASE)


class Usage(BaseModel):
    prompt_tokens: int = Field(description="prompt tokens of the model calls this answer took")
    completion_tokens: int = Field(description="tokens the model generated for this answer")
    lm_calls: int = Field(description="model calls the program made")


class Passage(BaseModel):
    id: str = Field(description="the id of the document the passage comes from")
    text: str = Field(description="the passage as the model saw it")
    cited: bool = Field(description="whether the answer cites this passage's document")


def field_description(task: Task, name: str, field) -> str:
    """The field's description in the signature, or a plain one where it has none (DSPy's placeholder '${name}')."""
    desc = (field.json_schema_extra or {}).get("desc")
    if not isinstance(desc, str) or not desc.strip() or desc.strip() == f"${{{name}}}":
        kind = "input" if name in task.input_fields else "output"
        return f"the {name.replace('_', ' ')} ({kind} of task {task.name})"
    return desc.strip()


def is_long_text(task: Task, name: str) -> bool:
    field = task.signature.input_fields[name]
    return field.annotation is str and bool(_LONG_TEXT.search(f"{name} {field_description(task, name, field)}"))


def _model_name(task: Task, suffix: str) -> str:
    return "".join(part.capitalize() for part in re.split(r"[^A-Za-z0-9]+", task.name) if part) + suffix


def request_model(task: Task) -> type[BaseModel]:
    """``{input field: value}``, every input required, typed as its signature says, strings not empty."""
    fields: dict[str, Any] = {
        name: (field.annotation, Field(..., description=field_description(task, name, field),
                                       json_schema_extra={"x-long-text": is_long_text(task, name)}))
        for name, field in task.signature.input_fields.items()
    }
    config = ConfigDict(extra="forbid", str_min_length=1, title=f"{task.name} inputs",
                        json_schema_extra={"description": f"{task.description} The inputs of task {task.name}."})
    return create_model(_model_name(task, "Inputs"), __config__=config, **fields)


def response_model(task: Task) -> type[BaseModel]:
    """``outputs`` (each output field of the task), the latency, the tokens, for a program that retrieves (rag_qa)
    the passages it answered from, and for a task with answer formats the fields that lack theirs."""
    outputs: dict[str, Any] = {
        name: (field.annotation | None, Field(None, description=field_description(task, name, field)))
        for name, field in task.signature.output_fields.items()
    }
    output_model = create_model(_model_name(task, "Outputs"), __config__=ConfigDict(title=f"{task.name} outputs"),
                                **outputs)
    return create_model(
        _model_name(task, "Answer"),
        __config__=ConfigDict(title=f"{task.name} answer"),
        outputs=(output_model, Field(description=f"the output fields of task {task.name}")),
        latency_s=(float, Field(description="seconds from receiving the request to the answer, queueing included")),
        usage=(Usage, Field(description="what the answer cost")),
        passages=(list[Passage] | None, Field(None, description="the retrieved passages the program answered from "
                                                                 "(programs that retrieve, such as rag_qa)")),
        malformed=(list[str] | None, Field(None, description="the output fields whose answer lacks the format the "
                                                             "task declares for them (date, number, label, pattern); "
                                                             "null for a task that declares none")),
    )


def input_fields(task: Task, model: type[BaseModel]) -> list[dict]:
    """Each input as the try-it page renders it: name, description, JSON schema, and whether it is long text."""
    properties = model.model_json_schema().get("properties", {})
    return [{"name": name, "description": field_description(task, name, field), "schema": properties.get(name, {}),
             "long": is_long_text(task, name)} for name, field in task.signature.input_fields.items()]


def output_fields(task: Task) -> list[dict]:
    return [{"name": name, "description": field_description(task, name, field)}
            for name, field in task.signature.output_fields.items()]
