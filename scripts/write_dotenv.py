"""Writes a development `.env`: DEBUG on and freshly generated secrets. Standard library only.

Run by `make` before the virtualenv exists; never overwrites an existing file.
"""

import secrets
import sys
from pathlib import Path


def main() -> int:
    path = Path(sys.argv[1] if len(sys.argv) > 1 else ".env")
    if path.exists():
        return 0
    path.write_text(
        "# Written by `make` for local development; not committed (.gitignore). See README.md, Configuration.\n"
        "DEBUG=True\n"
        f"SECRET_KEY={secrets.token_urlsafe(50)}\n"
        f"OTP_HASH_KEY={secrets.token_urlsafe(50)}\n",
        encoding="utf-8",
    )
    path.chmod(0o600)
    print(f"wrote {path} (DEBUG=True, fresh SECRET_KEY and OTP_HASH_KEY)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
