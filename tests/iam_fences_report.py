"""Print the cross-environment IAM table (tests/test_iam_fences.py records it) at the end of every run, xdist or
not, so the README's test command shows it."""

from __future__ import annotations


def pytest_terminal_summary(terminalreporter) -> None:
    tables = {value for reports in terminalreporter.stats.values() for report in reports
              if getattr(report, "when", None) == "call"
              for name, value in getattr(report, "user_properties", ()) if name == "iam_fences"}  # fmt: skip
    for table in sorted(tables):
        terminalreporter.write_sep("-", "IAM fences between environments (iam-simulate, docs/security.md)")
        for line in table.splitlines():
            terminalreporter.write_line(line)
