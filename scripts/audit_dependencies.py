"""`make audit`: pip-audit over the project's virtualenv, honest about what it could not check.

pip-audit asks PyPI's JSON API (or OSV) about each installed package. Where those services cannot be
reached (a machine that sees only a package mirror), every package comes back "could not be audited"
and pip-audit still says "No known vulnerabilities found"; this script says plainly that nothing was
checked instead. A vulnerability that was found fails the target.
"""

import subprocess
import sys
from pathlib import Path

VENV_BIN = Path(sys.executable).parent


def main() -> int:
    result = subprocess.run(
        [str(VENV_BIN / "pip-audit"), "--progress-spinner", "off", "--skip-editable"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = result.stdout + result.stderr
    skipped = output.count("could not be audited")
    print(output.strip())
    if result.returncode != 0 and "Found" in output and "vulnerabilit" in output:
        return result.returncode
    if skipped:
        print(f"audit: {skipped} package(s) could not be checked: no vulnerability database was reachable "
              "from this machine; run `make audit` where PyPI's JSON API or OSV is reachable.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
