"""The closing lines every reliability bench prints: each problem, then PASS or FAIL, as an exit code."""

from __future__ import annotations


def verdict(problems: list[str]) -> int:
    for problem in problems:
        print(f"FAILED: {problem}")
    print("result:", "FAIL" if problems else "PASS")
    return 1 if problems else 0
