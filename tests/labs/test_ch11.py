"""Tests for nncourse/labs/ch11.py: workers sharing one study."""

from nncourse import search
from nncourse.labs import ch11 as lab

search.quiet()


def test_two_worker_processes_share_one_sqlite_study():
    messages, study = lab.run_workers(n_workers=2, n_trials=2, epochs=2, dataset="moons")
    assert len(messages) == 2
    assert all("worker done: 2 trials run" in m for m in messages), messages
    assert len(study.trials) == 4
    assert all(t.state.is_finished() for t in study.trials)
    assert len({t.number for t in study.trials}) == 4
    assert sorted(n for numbers in lab.trials_by_worker(study) for n in numbers) == [0, 1, 2, 3]
    assert len(lab.trials_by_worker(study)) == 2
