"""What a person reads: tables for the terminal and report.md, report.html, plots."""

__all__ = ["chart_data", "html", "plots", "run_records", "sweep", "tables"]
