"""The commands as library functions, one module each: compile, distill (its teacher in teacher.py), eval
(evaluate_run), run (answer), report, sweep (its options, trials and workers), and --resume (resume.py). Each
returns a ``smelt.lifecycle.RunOutcome``; cli.py only parses, calls one of these and prints."""
