"""What one sweep trial does, per stage. Each trial is a compile or distill run directory of its own, which
``eval``, ``run`` and ``distill --teacher`` accept like any other run.

compile: sample an optimizer, its demo counts and the task's program options -> compile on train -> dev.
distill: the teacher's SFT set is built once (``DistillStage.prepare``) -> each trial trains a LoRA adapter
with sampled r, alpha, dropout, learning rate, epochs and target modules -> the student on dev (with
``then_compile``, its compiled prompt too, the better of the two on dev kept: ``commands.then_compile``).
Test is never touched here: ``commands.sweep`` scores the best and the default configuration on it at the end.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from functools import cached_property
from pathlib import Path

from smelt.commands.common import describe_judge, save_program
from smelt.commands.compile import compile_into
from smelt.commands.distill import DistillOptions, student_record, zero_shot_options
from smelt.commands.teacher import build_sft_set, load_teacher, resolve_teacher, sft_set_account, sft_set_lines
from smelt.commands.then_compile import compile_distilled
from smelt.commands.workbench import prepare
from smelt.errors import SmeltError
from smelt.eval.evaluate import evaluate
from smelt.files import write_json
from smelt.lifecycle import Run, build_manifest, read_manifest
from smelt.lm import lm_for_spec, parse_spec
from smelt.lm.devices import resolve_device
from smelt.lm.loading import check_weights_available, unload_models
from smelt.optimizers.distill.adapter import train_adapter
from smelt.optimizers.distill.lora_config import LoraTrainingConfig, default_config
from smelt.optimizers.distill.sft_data import read_sft_jsonl
from smelt.optimizers.prompt import COMPILE_DEFAULTS, CompileSettings, check_task_defaults
from smelt.programs.program_file import load_program_file
from smelt.programs.registry import get_task

# A trial's optimizer knobs and their values in the default trial.
KNOB_DEFAULTS = {**COMPILE_DEFAULTS, "num_candidates": CompileSettings.num_candidates}


class CompileStage:
    """Trials that compile the task's program with sampled optimizer settings and program options."""

    name = "compile"

    def __init__(self, options, *, cache: bool, log=print):
        self.options, self.log, self.cache = options, log, cache
        self.task = get_task(options.task)
        check_task_defaults(self.task)
        self.bench = prepare(replace(options, cache=cache), self.task, check=False,  # checked by the sweep
                             prompt_lm=options.prompt_lm)
        self.splits = self.bench.splits

    # The models load on first use: a sweep's coordinating process needs none while its workers run.
    @cached_property
    def lm(self):
        o = self.options
        return lm_for_spec(o.lm, device=o.device, api_base=o.api_base, cache=self.cache)

    @property
    def judge(self):
        return self.bench.judge

    @property
    def metric(self):
        return self.bench.metric

    def warm_up(self) -> None:
        """Load the models now, so that a model that cannot load stops the worker with its own error."""
        _ = self.lm, self.metric, self.bench.prompt_model

    @cached_property
    def knob_defaults(self) -> dict:
        """The optimizer settings ``compile`` would use: a task file's ``[compile]`` table, else smelt's."""
        return {**KNOB_DEFAULTS, **self.task.compile_defaults}

    def default_params(self) -> dict:
        return {**self.knob_defaults, **self.program_defaults()}

    def program_defaults(self) -> dict:
        """The task's default program options, with --constrain/--no-constrain, which holds for every trial."""
        given = {} if self.options.constrain is None else {"constrain": self.options.constrain}
        return {**self.task.default_options(), **given}

    def _split_params(self, params: dict) -> tuple[dict, dict]:
        knobs = {k: v for k, v in params.items() if k in KNOB_DEFAULTS}
        program_options = {**self.program_defaults(), **{k: v for k, v in params.items() if k not in knobs}}
        if self.options.constrain is not None:
            program_options["constrain"] = self.options.constrain
        return {**self.knob_defaults, **knobs}, program_options

    def run(self, params: dict, run_dir: Path, *, progress=None, trial_number: int | None = None) -> dict:
        knobs, program_options = self._split_params(params)
        prompt_lm = self.bench.prompt_model
        models = {"program": self.lm.describe(), **({"judge": describe_judge(self.judge)} if self.judge else {}),
                  **({"prompt": prompt_lm.describe()} if prompt_lm else {})}
        run = Run.in_folder(run_dir, "compile", self.task, threads=self.options.threads, log=self.log,
                            manifest=lambda: build_manifest(
                                command="compile", task=self.task, options={"sweep_params": params},
                                seed=self.options.seed, models=models, data_sources=self.splits.sources,
                                program_options=program_options,
                                extra={"metric": self.metric.name, "optimizer": knobs["optimizer"],
                                       "sweep_trial": trial_number}))
        # A sweep pays for every random_search candidate: 16 train examples rank demo sets well enough.
        settings = CompileSettings(self.options.seed, self.options.threads, knobs["max_demos"],
                                   knobs["max_labeled_demos"], knobs["num_candidates"], candidate_eval_size=16)
        program = compile_into(run_dir, self.task, program_options, knobs["optimizer"], settings, self.splits.train,
                               metric=self.metric, lm=self.lm, log=self.log, prompt_lm=prompt_lm)
        dev = run.score(program, self.splits.dev, name="dev", metric=self.metric, lm=self.lm,
                        desc=f"trial {trial_number} dev", progress=progress)
        run.finish({"task": self.task.name, "command": "compile", "optimizer": knobs["optimizer"],
                    "metric": self.metric.name, "lm": self.options.lm, "compiled": {"dev": dev.summary},
                    "demos": sum(len(p.demos) for p in program.predictors())})
        return dev.summary

    def load(self, run_dir: Path):
        """(program, lm) of a finished trial, to score it on test."""
        program = self.task.program(read_manifest(run_dir)["program_options"])
        load_program_file(program, run_dir / "program.json", task_name=self.task.name)
        return program, self.lm

    def release(self, run_dir: Path) -> None:
        pass


class DistillStage:
    """Trials that train a LoRA adapter with sampled settings on one shared SFT set and score the student."""

    name = "distill"

    def __init__(self, options, *, cache: bool, log=print):
        self.options, self.log, self.cache = options, log, cache
        if not options.student:
            raise SmeltError("--stage distill needs --student (the model to train adapters on)")
        self.student_spec = parse_spec(options.student, "--student")
        if not self.student_spec.in_process:
            raise SmeltError(f"--student {options.student}: the student must be an in-process model to train an "
                             "adapter")
        check_weights_available(self.student_spec, "--student")  # before the teacher answers all of train
        self.distill = resolve_teacher(DistillOptions(
            student=options.student, teacher=options.teacher, task=options.task, min_score=options.min_score,
            use_labels=options.use_labels, synthetic=options.synthetic, teacher_attempts=options.teacher_attempts,
            teacher_temperature=options.teacher_temperature, seed=options.seed, threads=options.threads,
            device=options.device, api_base=options.api_base, data=options.data, runs_root=options.runs_root,
            cache=cache, judge=options.judge, metric=options.metric, student_instructions=options.student_instructions,
            program_options={} if options.constrain is None else {"constrain": options.constrain},
        ), log=log)
        self.task = get_task(self.distill.task)
        self.device = resolve_device(options.device)
        bench = prepare(replace(options, cache=cache), self.task, check=False)  # checked by the sweep
        self.splits = bench.splits
        if not self.splits.train:
            raise SmeltError("the train split is empty: the teacher needs train inputs to answer")
        self.judge, self.metric = bench.judge, bench.metric
        self.teacher_source = self.distill.teacher
        self.rows: list[dict] | None = None

    def warm_up(self) -> None:
        pass  # the student loads per trial, the teacher and judge in prepare()

    def student_options(self) -> dict:
        return zero_shot_options(self.teacher_program_options)

    def prepare(self, sweep_dir: Path) -> list[dict]:
        """The shared SFT set, ``sweep_dir/sft.jsonl``: built by the teacher once, read by every worker."""
        if (sweep_dir / "sft.jsonl").is_file() and (sweep_dir / "teacher.json").is_file():  # a resumed sweep
            self.use_shared(sweep_dir)
            return self.rows

        teacher = load_teacher(self.distill, self.task, log=self.log)
        self.teacher_program_options = teacher.program_options
        student_program = self.task.program(self.student_options())

        def score(program, lm, examples, name):
            return evaluate(program, examples, metric=self.metric, lm=lm, threads=self.options.threads,
                            out_path=sweep_dir / "eval" / f"{name}.jsonl", desc=name.replace(".", " "))

        (sweep_dir / "eval").mkdir(exist_ok=True)
        self.rows = build_sft_set(sweep_dir / "sft.jsonl", self.task, teacher, student_program, self.splits.train,
                                  self.judge, self.distill, score=score, log=self.log)
        account = sft_set_account(self.rows, len(self.splits.train), student_program, self.distill)
        for line in sft_set_lines(account):
            self.log(f"[smelt] {line}")
        write_json(sweep_dir / "teacher.json", {"source": teacher.source, "program_options": teacher.program_options,
                                                "sft_set": account})
        unload_models()  # the teacher's weights are not needed again
        return self.rows

    def use_shared(self, sweep_dir: Path) -> None:
        """A worker process: read the SFT set and the teacher's program options that ``prepare`` wrote."""
        import json

        self.rows = read_sft_jsonl(sweep_dir / "sft.jsonl")
        self.teacher_program_options = json.loads((sweep_dir / "teacher.json").read_text())["program_options"]

    def default_params(self) -> dict:
        config = default_config(self.device)
        targets = config.target_modules if config.all_linear else ",".join(config.target_modules)
        return {"r": config.r, "alpha_ratio": round(config.alpha / config.r, 4), "dropout": config.dropout,
                "learning_rate": config.learning_rate, "epochs": config.epochs, "target_modules": targets,
                "then_compile": False}

    def config(self, params: dict):
        lora = {k: v for k, v in params.items() if k not in ("alpha_ratio", "then_compile")}
        if "r" in params or "alpha_ratio" in params:
            base = default_config(self.device)
            r = params.get("r", base.r)
            lora["alpha"] = float(params.get("alpha_ratio", base.alpha / base.r)) * r
        return LoraTrainingConfig(**{**asdict(default_config(self.device)), "seed": self.options.seed, **lora})

    def run(self, params: dict, run_dir: Path, *, progress=None, trial_number: int | None = None) -> dict:
        config = self.config(params)
        student_program = self.task.program(self.student_options())
        run = Run.in_folder(run_dir, "distill", self.task, threads=self.options.threads, log=self.log,
                            manifest=lambda: build_manifest(
                                command="distill", task=self.task, options={"sweep_params": params},
                                seed=self.options.seed,
                                models={"program": student_record(self.options.student, self.student_spec,
                                                                  self.options.student_instructions),
                                        "teacher": {"source": self.teacher_source}},
                                data_sources=self.splits.sources, program_options=self.student_options(),
                                extra={"metric": self.metric.name, "lora": config.to_dict(),
                                       "sweep_trial": trial_number}))
        training = train_adapter(self.student_spec, config, self.device, self.rows, run_dir, log=self.log)
        unload_models()
        lm = self._distilled_lm(run_dir)
        save_program(student_program, run_dir)
        try:
            dev = run.score(student_program, self.splits.dev, name="dev", metric=self.metric, lm=lm,
                            desc=f"trial {trial_number} dev", progress=progress).summary
            then = None
            if params.get("then_compile"):  # pruned on the distilled student's dev score alone, above
                then = compile_distilled(run, self.task, student_program, self.student_options(), lm,
                                         self.splits.train, self.splits.dev, dev, metric=self.metric,
                                         seed=self.options.seed, threads=self.options.threads, log=self.log)
                self.log(f"[smelt] trial {trial_number} {then.line(self.metric.name)}")
                save_program(then.program, run_dir)
                dev = then.dev[then.kept]
        finally:
            lm.engine.close()
            unload_models()
        run.finish({"task": self.task.name, "command": "distill", "student": self.options.student,
                    "teacher": self.teacher_source, "metric": self.metric.name, "training": training,
                    "dev": dev, **({"then_compile": then.record()} if then else {})})
        return dev

    def _distilled_lm(self, run_dir: Path):
        """The student with the adapter trained in ``run_dir``, prompted as it was trained."""
        o = self.options
        return lm_for_spec(o.student, option="--student", device=o.device, adapter=run_dir / "adapter",
                           cache=self.cache, instructions=o.student_instructions)

    def load(self, run_dir: Path):
        program = self.task.program(self.student_options())
        load_program_file(program, run_dir / "program.json", task_name=self.task.name)
        return program, self._distilled_lm(run_dir)

    def release(self, run_dir: Path) -> None:
        unload_models()


def make_stage(options, *, cache: bool, log=print):
    if options.stage == "compile":
        return CompileStage(options, cache=cache, log=log)
    if options.stage == "distill":
        return DistillStage(options, cache=cache, log=log)
    raise SmeltError(f"--stage {options.stage!r}: use compile or distill")
