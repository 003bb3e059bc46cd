"""The check machinery and the warm-up checks: every check passes the right answer and fails,
with a one-sentence message naming the exercise, on wrong answers and bad input."""

import re

import numpy as np
import pytest
import torch

from nncourse.checks import ExerciseError, NotAttempted, ch00, exercise, passed_line


def test_pass_line(capsys):
    with exercise("3.2", points=2, name="x"):
        pass
    assert capsys.readouterr().out == "Exercise 3.2 passed (2 points)\n"
    assert passed_line("0.1", 1) == "Exercise 0.1 passed (1 point)"


def message(check, answer):
    with pytest.raises(ExerciseError) as err:
        check(answer)
    text = str(err.value)
    assert text.startswith("Exercise ") and "\n" not in text
    return text


def test_relu_check(capsys):
    ch00.ex0_1_relu(lambda x: np.maximum(x, 0))
    ch00.ex0_1_relu(lambda x: torch.relu(torch.as_tensor(x)))  # a tensor answer is fine too
    assert capsys.readouterr().out.count("Exercise 0.1 passed (1 point)") == 2
    assert "relu(x) is wrong" in message(ch00.ex0_1_relu, np.abs)
    assert "relu(x) returned None" in message(ch00.ex0_1_relu, lambda x: None)
    assert "shape (5,), got shape (1, 5)" in message(ch00.ex0_1_relu, lambda x: x[None] * 0)
    assert "NaN" in message(ch00.ex0_1_relu, lambda x: x * np.nan)
    assert "to hold float values, got dtype int64" in message(
        ch00.ex0_1_relu, lambda x: (x > 0).astype(np.int64))
    assert "expected a function, got int 3" in message(ch00.ex0_1_relu, 3)
    assert "got str" in message(ch00.ex0_1_relu, lambda x: "relu")


def test_student_errors_become_messages():
    def broken(x):
        return x.nonexistent

    text = message(ch00.ex0_1_relu, broken)
    assert "relu(x) raised AttributeError" in text and "Hint:" in text

    def stub(x):
        raise NotImplementedError("Exercise 0.1: replace this line with your code")

    with pytest.raises(NotAttempted, match="not attempted yet"):
        ch00.ex0_1_relu(stub)


def test_mse_check(capsys):
    ch00.ex0_2_mse(lambda p, t: ((p - t) ** 2).mean())
    assert "Exercise 0.2 passed" in capsys.readouterr().out
    assert "is wrong" in message(ch00.ex0_2_mse, lambda p, t: ((p - t) ** 2).sum())
    assert "single number" in message(ch00.ex0_2_mse, lambda p, t: (p - t) ** 2)


def test_accuracy_check(capsys):
    ch00.ex0_3_accuracy(lambda lo, y: (lo.argmax(1) == y).float().mean())
    assert "Exercise 0.3 passed" in capsys.readouterr().out
    assert "fraction in [0, 1]" in message(ch00.ex0_3_accuracy,
                                           lambda lo, y: (lo.argmax(1) == y).sum())
    assert "is wrong" in message(ch00.ex0_3_accuracy,
                                 lambda lo, y: (lo.argmin(1) == y).float().mean())


def test_unexpected_errors_inside_a_check_name_the_exercise():
    with pytest.raises(ExerciseError, match=r"Exercise 9.9 \(demo\): the check could not use your "
                                            r"answer \(KeyError"):
        with exercise("9.9", points=1, name="demo"):
            {}["missing"]


def test_exercise_error_is_shown_without_traceback_in_ipython():
    from IPython.testing.globalipapp import start_ipython

    shell = start_ipython()
    import nncourse.checks as checks

    checks._install_ipython_handler()
    assert ExerciseError in shell.custom_exceptions


def test_scalar_mismatch_message_has_no_empty_index():
    with pytest.raises(ExerciseError) as err:
        with exercise("9.1", points=1, name="demo") as ex:
            ex.close(0.5, 0.25, "loss")
    assert str(err.value) == "Exercise 9.1 (demo): loss is wrong: expected 0.25, got 0.5."


def test_messages_end_with_one_stop():
    text = message(ch00.ex0_1_relu, lambda x: None)
    assert text.endswith("did you forget a `return` statement?") and "?." not in text


def test_matches_runs_call_array_and_close(capsys):
    with exercise("9.2", points=1, name="demo") as ex:
        got = ex.matches(lambda x: x * 2, np.ones(3), expected=np.full(3, 2.0), call="double(x)")
    assert got.tolist() == [2.0, 2.0, 2.0]
    for answer, fragment in ((lambda x: x, "double(x) is wrong"),
                             (lambda x: x[:2] * 2, "to have shape (3,), got shape (2,)"),
                             (lambda x: (x * 2).astype(int), "to hold float values"),
                             (lambda x: None, "double(x) returned None")):
        with pytest.raises(ExerciseError, match=re.escape(fragment)):
            with exercise("9.2", points=1, name="demo") as ex:
                ex.matches(answer, np.ones(3), expected=np.full(3, 2.0), call="double(x)")
