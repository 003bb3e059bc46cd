"""Helpers shared by the tests of the chapters' exercise checks (tests/test_checks_chNN.py)."""

import pytest

from nncourse.checks import ExerciseError


def check_fails(chapter: int, check, *args, match: str) -> str:
    """Run ``check(*args)``; require an ExerciseError matching ``match`` that is one sentence naming
    an exercise of ``chapter`` (no newline, no traceback). Returns the message."""
    with pytest.raises(ExerciseError, match=match) as info:
        check(*args)
    message = str(info.value)
    assert message.startswith(f"Exercise {chapter}.") and "\n" not in message, message
    assert "Traceback" not in message
    return message


def stub(*args, **kwargs):
    """A released answer: it still raises the stub's NotImplementedError."""
    raise NotImplementedError("Exercise: replace this line with your code")
