"""Tests for nncourse/course/tune.py: the ``python -m nncourse tune`` worker command."""

import pytest

from nncourse import search
from nncourse.__main__ import main

search.quiet()


@pytest.mark.parametrize("storage, message", [
    ("study.db", "must be a database URL"),
    ("sqlite:////no/such/dir/x.db", "cannot open storage"),
    ("postgresql://me:secret@localhost/db", "cannot open storage postgresql://me:***@"),
])
def test_worker_rejects_bad_storage(storage, message, capsys):
    assert main(["tune", "--study", "s", "--storage", storage, "--create"]) == 2
    err = capsys.readouterr().err
    assert message in err and "secret" not in err


def test_worker_rejects_unknown_study(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'a.db'}"
    search.create_study("exists", url)
    assert main(["tune", "--study", "typo", "--storage", url]) == 2
    err = capsys.readouterr().err
    assert "no study named 'typo'" in err and "studies there: exists" in err
