import pytest

from fraud import services


@pytest.fixture
def forgotten(monkeypatch) -> list[dict]:
    """The calls the lift makes to `fraud.guard.block_forget`, the guard's Redis side, which has its own tests:
    here only whether, when and with what the lift calls it."""
    calls: list[dict] = []
    monkeypatch.setattr(services, "block_forget", lambda **target: calls.append(target))
    return calls
