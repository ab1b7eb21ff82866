"""The commands that deploy: `serve` (a finished run's program over HTTP), `bundle` (smelt and model folders for
an offline machine) and `export` (a distilled student for other servers). cli.py adds them to its group; as there,
each command imports what it runs inside its body, so that --help answers at once."""

import click

from smelt.cli_options import LM_HELP, echo, log


@click.command("serve")
@click.argument("run_dirs", metavar="RUN_DIR [RUN_DIR ...]", nargs=-1, required=True, type=click.Path())
@click.option("--task", help="the run's TASK, as elsewhere; required when it is Python code (path.py:task), which a "
                             "run directory never runs by itself; otherwise it makes sure the run is of that task")
@click.option("--lm", help="answer with another model (several runs: gguf:gemma-3-270m, their student's GGUF file). "
                           + LM_HELP)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps")
@click.option("--api-base", help="server URL for the run's server model; 'recorded': the server the run recorded "
                                  "(a run directory never chooses where requests and keys go by itself)")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="the address to listen on; any other than this machine's loopback needs --token-env")
@click.option("--port", default=8000, show_default=True, help="the port to listen on (0: any free one, printed)")
@click.option("--threads", default=8, show_default=True,
              help="predictions running at once: concurrent requests reach the model together and are batched")
@click.option("--token-env", metavar="NAME", help="require the bearer token held in the environment variable NAME "
                                                  "(Authorization: Bearer ...); it is never printed or logged")
@click.option("--max-request-bytes", default=1_000_000, show_default=True,
              help="a larger request body is refused (413)")
@click.option("--timeout", default=120.0, show_default=True,
              help="seconds a request may wait for its answer, queueing included (then 504)")
@click.option("--log", "log_file", type=click.Path(), help="append one JSON line per request to this file: inputs, "
                                                           "outputs, latency, tokens (never a header or a token)")
def serve_command(run_dirs, log_file, **kwargs):
    """Serve a finished run's program over HTTP until Ctrl-C or SIGTERM (in-flight requests finish first).

    RUN_DIR: a compile or distill run directory, or a sweep's (its best trial). Open http://HOST:PORT/ to try it;
    POST /v1/predict takes the task's input fields as JSON; /v1/chat/completions is the model itself, as OpenAI's
    API; /openapi.json describes every route.

    Several RUN_DIRs: distill runs of one student, served on one copy of it on llama.cpp (--lm gguf:gemma-3-270m),
    each with its own adapter; each is named by its folder's name: POST /v1/NAME/predict, "model": NAME in
    /v1/chat/completions."""
    from smelt.serving.options import ServeOptions
    from smelt.serving.server import serve  # lazy: FastAPI, uvicorn and DSPy load only when serving

    serve(ServeOptions(run_dir=run_dirs[0], more_run_dirs=tuple(run_dirs[1:]), log=log_file, **kwargs), log=log)


@click.command("bundle")
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--python-version", metavar="X.Y",
              help="the offline machine's Python, as pip download takes it, e.g. 3.12 (default: this interpreter's)")
@click.option("--platform", "platform_tag", metavar="TAG",
              help="the offline machine's wheel platform tag, as pip download takes it, e.g. manylinux_2_28_x86_64 "
                   "(Linux x86-64 with glibc 2.28 or newer) or manylinux_2_28_aarch64 (default: this machine's)")
@click.option("--with-torch", is_flag=True,
              help="also bundle PyTorch, the version this interpreter runs (PyPI's Linux x86-64 build of it is the "
                   "CUDA one: several GB). By default torch and the packages only it needs are left out: a GPU box "
                   "brings its own CUDA build")
@click.option("--model", "models", multiple=True, metavar="SPEC",
              help="a model folder to bundle (repeatable): gemma-3-270m (the embedded model, converted: no conversion "
                   "on the machine), hf:<local transformers folder>, or a hub model already in the local Hugging "
                   "Face cache (hf:<hub id> or an alias such as llama-3.2-3b); nothing is downloaded")
@click.option("--force", is_flag=True, help="replace OUT_DIR if it exists and is not empty")
def bundle_command(out_dir, python_version, platform_tag, with_torch, models, force):
    """Pack smelt for an offline machine into OUT_DIR: the wheels of smelt and its dependencies for the target Python
    and platform, the --model folders, and install.sh (pip install --no-index from the bundle, then it checks the
    imports and runs `smelt tasks`). Prints the bundle's size.

    Versions are those this interpreter runs (what was tested here). Run it from smelt's checkout, on a machine
    that reaches the package index."""
    from smelt.commands.bundle import BundleOptions, make_bundle  # lazy, as in every command body: --help is instant

    options = BundleOptions(out_dir=out_dir, python_version=python_version, platform=platform_tag,
                            with_torch=with_torch, models=tuple(models), force=force)
    echo(make_bundle(options, log=log).describe())


@click.command("export")
@click.argument("run_dir", type=click.Path())
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--format", "fmt", type=click.Choice(["hf", "peft", "gguf", "ollama"]), default="hf", show_default=True,
              help="hf: one merged model folder (transformers, vLLM, TGI); peft: the adapter as vLLM's --enable-lora "
                   "takes it; gguf: one merged GGUF file (llama.cpp); ollama: that GGUF and a Modelfile writing the "
                   "program's prompt")
@click.option("--quant", type=click.Choice(["f16", "q8_0", "q4_k_m"]), default="f16", show_default=True,
              help="gguf and ollama: the weights' type (q4_k_m keeps the shipped Q4_K_M weights the adapter leaves "
                   "alone)")
@click.option("--force", is_flag=True, help="replace OUT if it exists and is not empty (never a run, or a folder "
                                            "holding one)")
@click.option("--device", default="cpu", show_default=True, help="where to merge the adapter: cpu, cuda, cuda:N or mps")
@click.option("--task", help="the run's TASK, as elsewhere; required when it is Python code (path.py:task), which a "
                             "run directory never runs by itself")
def export_command(run_dir, out, fmt, quant, force, device, task):
    """Export a distill run's student (RUN_DIR, or a sweep's best trial) to OUT, for the servers users run.

    Every format also writes prompt.json, the exact prompt the program sends (fields, template, stop strings,
    max_tokens), and README.txt, how to serve it."""
    from smelt.commands.export import ExportOptions, export_run  # lazy, as in every command body: --help is instant

    options = ExportOptions(run_dir=run_dir, out=out, format=fmt, quant=quant, force=force, device=device, task=task)
    echo(export_run(options, log=log).describe())
