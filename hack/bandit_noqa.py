"""Run bandit on operator/ and honour the suppressions ruff already carries for the same checks.

ruff runs bandit's rules too (flake8-bandit: S104 is bandit's B104, and so on), and the code suppresses a
false positive once, for ruff, with its reason: `# noqa: S104 - scraped from outside the pod`. bandit
itself only knows `# nosec`, so without this the same line would need a second, reason-less marker. Here a
bandit finding on a line whose `noqa` names the matching S-code is listed as suppressed (with the reason
given there), not hidden; B101 (assert) is skipped as in ruff's configuration (asserts narrow types for
mypy; the image never runs with -O). Anything else fails.

Usage: python hack/bandit_noqa.py [--sarif FILE] PATH...    (bandit from the scanner venv on PATH)
"""

from __future__ import annotations

import argparse
import json
import pathlib
import re
import subprocess
import sys
from typing import Any

SKIPPED = {"B101": "assert: skipped as in ruff's config (type narrowing; the image never runs python -O)"}
NOQA = re.compile(r"#\s*noqa:\s*(?P<codes>[A-Z]+[0-9]+(?:\s*,\s*[A-Z]+[0-9]+)*)(?P<reason>.*)$")


def suppression(result: dict[str, Any]) -> str | None:
    """The reason of a matching ruff noqa on the finding's line(s), or None."""
    path = pathlib.Path(result["filename"])
    lines = path.read_text().splitlines()
    code = "S" + result["test_id"][1:]
    for number in result.get("line_range") or [result["line_number"]]:
        match = NOQA.search(lines[number - 1]) if 0 < number <= len(lines) else None
        if match and code in re.split(r"\s*,\s*", match["codes"]):
            return match["reason"].strip(" -:") or "(noqa without a reason)"
    return None


def sarif(findings: list[dict[str, Any]]) -> dict[str, Any]:
    rules = sorted({f["test_id"]: f for f in findings}.items())
    return {
        "version": "2.1.0",
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "bandit",
                        "informationUri": "https://bandit.readthedocs.io/",
                        "rules": [
                            {"id": rid, "name": f["test_name"], "helpUri": f.get("more_info", "")} for rid, f in rules
                        ],
                    }
                },
                "results": [
                    {
                        "ruleId": f["test_id"],
                        "level": {"HIGH": "error", "MEDIUM": "warning"}.get(f["issue_severity"], "note"),
                        "message": {"text": f["issue_text"]},
                        "locations": [
                            {
                                "physicalLocation": {
                                    "artifactLocation": {"uri": f["filename"]},
                                    "region": {"startLine": f["line_number"], "startColumn": f["col_offset"] + 1},
                                }
                            }
                        ],
                    }
                    for f in findings
                ],
            }
        ],
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sarif", help="also write the unsuppressed findings as SARIF here")
    parser.add_argument("paths", nargs="+")
    args = parser.parse_args()
    proc = subprocess.run(
        ["bandit", "-q", "-r", "-f", "json", "-s", ",".join(SKIPPED), *args.paths],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode not in (0, 1) or not proc.stdout.strip():
        print(proc.stdout + proc.stderr, file=sys.stderr)
        return 2
    report = json.loads(proc.stdout)
    if report.get("errors"):
        print(json.dumps(report["errors"], indent=2), file=sys.stderr)
        return 2
    open_findings = []
    for result in report["results"]:
        where = f"{result['filename']}:{result['line_number']} {result['test_id']} {result['test_name']}"
        reason = suppression(result)
        if reason:
            print(f"suppressed {where}: {reason}")
        else:
            open_findings.append(result)
            print(f"FINDING {where} ({result['issue_severity']}): {result['issue_text']}")
    for test_id, why in SKIPPED.items():
        print(f"skipped {test_id}: {why}")
    if args.sarif:
        pathlib.Path(args.sarif).write_text(json.dumps(sarif(open_findings), indent=2))
    files = len(report["metrics"]) - 1  # minus "_totals"
    print(f"bandit: {files} files, {len(open_findings)} finding(s)")
    return 1 if open_findings else 0


if __name__ == "__main__":
    sys.exit(main())
