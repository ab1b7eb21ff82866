"""What a person reads: tables for the terminal and report.md, report.html, plots."""
