"""The commands as library functions, one module each: compile, distill (its teacher in teacher.py), eval
(evaluate_run), run (answer), report, sweep (its options, trials and workers), and --resume (resume.py). Each
returns a ``smelt.lifecycle.RunOutcome``; cli.py only parses, calls one of these and prints."""

__all__ = [
    "answer", "common", "compile", "distill", "evaluate_run", "report", "resume", "sweep", "sweep_options",
    "sweep_trials", "sweep_worker", "teacher",
]
