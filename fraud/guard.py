"""The guard's Redis side (API.md section 13): fcore's module. Only what the lift calls is here."""

# placeholder until fcore lands


def block_forget(*, workspace_id: int, scope: str, value: str) -> None:  # placeholder until fcore lands
    """Deletes the mirrored block of this range or country and resets its counts (fcore writes it)."""
