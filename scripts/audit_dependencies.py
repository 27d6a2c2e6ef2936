"""`make audit`: pip-audit over the project's virtualenv, honest about what it could not check.

pip-audit asks PyPI's JSON API (or OSV) about each installed package. Where those services cannot be
reached (a machine that sees only a package mirror), every package comes back "could not be audited"
and pip-audit still says "No known vulnerabilities found"; this script says plainly that nothing was
checked instead, and passes. Anything else that goes wrong fails the target with its reason: a
vulnerability found, pip-audit missing, crashing or timing out.
"""

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

VENV_BIN = Path(sys.executable).parent
TIMEOUT_SECONDS = 600
# What pip-audit prints when the vulnerability service cannot be reached at all.
UNREACHABLE_SIGNS = (
    "could not be audited",
    "ConnectionError",
    "Failed to establish a new connection",
    "Max retries exceeded",
    "Name or service not known",
    "Temporary failure in name resolution",
)


@dataclass(frozen=True)
class Verdict:
    exit_code: int
    message: str


def judge(returncode: int, output: str) -> Verdict:
    """Pass, pass with a warning that nothing could be checked, or fail with the reason."""
    skipped = output.count("could not be audited")
    if returncode == 0:
        if skipped:
            return Verdict(
                0,
                f"audit: {skipped} package(s) could not be checked: no vulnerability database was "
                "reachable from this machine; run `make audit` where PyPI's JSON API or OSV "
                "is reachable.",
            )
        return Verdict(0, "audit: no known vulnerabilities")
    if "Found" in output and "vulnerabilit" in output and "No known vulnerabilities" not in output:
        return Verdict(returncode, "audit failed: known vulnerabilities in the installed packages (listed above)")
    if any(sign in output for sign in UNREACHABLE_SIGNS):
        return Verdict(
            0,
            "audit: nothing could be checked: no vulnerability database was reachable from this "
            "machine; run `make audit` where PyPI's JSON API or OSV is reachable.",
        )
    last = next((line for line in reversed(output.strip().splitlines()) if line.strip()), "no output")
    return Verdict(returncode or 1, f"audit failed: pip-audit exited with status {returncode}: {last.strip()}")


def main() -> int:
    try:
        result = subprocess.run(
            [str(VENV_BIN / "pip-audit"), "--progress-spinner", "off", "--skip-editable"],
            capture_output=True,
            text=True,
            timeout=TIMEOUT_SECONDS,
        )
    except FileNotFoundError:
        print(f"audit failed: pip-audit is not installed in {VENV_BIN} (pip install -r requirements-dev.txt)")
        return 1
    except subprocess.TimeoutExpired:
        print(f"audit failed: pip-audit did not finish within {TIMEOUT_SECONDS} s")
        return 1
    output = result.stdout + result.stderr
    print(output.strip())
    verdict = judge(result.returncode, output)
    print(verdict.message)
    return verdict.exit_code


if __name__ == "__main__":
    sys.exit(main())
