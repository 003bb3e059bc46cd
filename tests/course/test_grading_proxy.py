"""The wire format of issue 26's item 1: real checks run unchanged in this (trusted) process while
the function they check is called through a :class:`Proxy` -- here over an in-process JSON
transport standing in for the sandboxed kernel."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from nncourse.checks import ExerciseError, NotAttempted, ch00, ch03, ch10
from nncourse.course.grading.proxy import CannotProxy, Proxy, decode, encode, serve


def proxies(**functions):
    """Proxies whose calls cross a JSON boundary both ways, as they would to a kernel."""
    calls = []

    def transport(name, payload, on_callback):
        calls.append(name)
        reply = serve(functions[name], json.loads(json.dumps(payload)), channel=on_callback)
        return json.loads(json.dumps(reply))

    return [Proxy(name, transport) for name in functions], calls


def test_values_round_trip_exactly():
    gen = torch.Generator().manual_seed(4)
    value = {"a": [1, 2.5, None, True, "x", float("nan")], "t": (np.arange(6.0).reshape(2, 3),
             np.float32(1.5), torch.randn(3, 4, generator=gen).requires_grad_())}
    back = decode(json.loads(json.dumps(encode(value))))
    assert back["a"][:5] == [1, 2.5, None, True, "x"] and np.isnan(back["a"][5])
    assert np.array_equal(back["t"][0], value["t"][0]) and back["t"][1].dtype == np.float32
    assert torch.equal(back["t"][2], value["t"][2]) and back["t"][2].requires_grad
    g2 = decode(json.loads(json.dumps(encode(gen))))
    assert torch.equal(torch.rand(5, generator=g2), torch.rand(5, generator=gen))
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    copy = decode(json.loads(json.dumps(encode(model))))
    x = torch.randn(5, 3)
    assert torch.equal(copy(x), model(x))


def test_what_cannot_cross_is_named():
    with pytest.raises(CannotProxy, match="function"):
        encode(lambda x: x)
    with pytest.raises(CannotProxy, match="MyNet"):
        class MyNet(torch.nn.Module):
            pass
        encode(MyNet())
    with pytest.raises(CannotProxy, match="data does not match"):
        decode({"$ndarray": {"dtype": "float64", "shape": [10**6], "data": ""}})
    with pytest.raises(CannotProxy):
        decode({"$module": "os.system", "init": {}})


def test_warmup_checks_pass_and_fail_through_the_proxy():
    (relu, mse, acc), calls = proxies(
        relu=lambda x: np.maximum(x, 0.0),
        mse=lambda a, b: float(np.mean((a - b) ** 2)),
        accuracy=lambda lo, la: (lo.argmax(dim=1) == la).float().mean().item())
    ch00.ex0_1_relu(relu)
    ch00.ex0_2_mse(mse)
    ch00.ex0_3_accuracy(acc)
    assert calls.count("relu") == 2 and calls.count("accuracy") == 2
    (wrong,), _ = proxies(mse=lambda a, b: 0.0)
    with pytest.raises(ExerciseError, match="mse\\(y_pred, y_true\\) is wrong"):
        ch00.ex0_2_mse(wrong)

    def stub(x):
        raise NotImplementedError

    (stub,), _ = proxies(relu=stub)
    with pytest.raises(NotAttempted):
        ch00.ex0_1_relu(stub)


def _fans(t):
    if t.dim() < 2:
        raise ValueError("needs 2 dimensions")
    rf = int(np.prod(t.shape[2:]))
    return t.shape[1] * rf, t.shape[0] * rf


def _kaiming(t, a=0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    if mode not in ("fan_in", "fan_out"):
        raise ValueError("mode must be fan_in or fan_out")
    return torch.nn.init.kaiming_normal_(t, a=a, mode=mode, nonlinearity=nonlinearity,
                                         generator=generator)


def test_in_place_generator_and_module_checks_run_unchanged():
    # chapter 03 checks `out is tensor`, seeded generators and unchanged layers
    (fans, xavier, kaiming, distinct), _ = proxies(
        calculate_fans=_fans,
        xavier_uniform_=lambda t, gain=1.0, generator=None: torch.nn.init.xavier_uniform_(
            t, gain=gain, generator=generator),
        kaiming_normal_=_kaiming, count_distinct_units=ch03.distinct_units_reference)
    ch03.ex3_1_fans(fans)
    ch03.ex3_2_xavier_uniform(xavier)
    ch03.ex3_3_kaiming_normal(kaiming)
    ch03.ex3_4_distinct_units(distinct)
    # chapter 10 gets a new nn.Sequential back and runs it
    (remove,), _ = proxies(remove_weakest_neurons=ch10._reference_remove)
    ch10.ex10_3_remove_weakest_neurons(remove)


def test_in_place_faults_are_still_seen():
    (copying,), _ = proxies(xavier_uniform_=lambda t, gain=1.0, generator=None: torch.nn.init.
                            xavier_uniform_(t.clone(), gain=gain, generator=generator))
    with pytest.raises(ExerciseError, match="returned a new tensor"):
        ch03.ex3_2_xavier_uniform(copying)

    def vandal(layer, tol=1e-6):
        with torch.no_grad():
            layer.weight.zero_()
        return 1

    (vandal,), _ = proxies(count_distinct_units=vandal)
    with pytest.raises(ExerciseError, match="changed the layer's parameters"):
        ch03.ex3_4_distinct_units(vandal)


def test_a_call_that_cannot_cross_is_marked_for_the_kernel():
    # an argument of a type the grader neither copies nor lends: such a check would run in the
    # kernel instead, and the proxy says why
    class Opaque:
        pass

    (search,), calls = proxies(random_search=lambda thing: 1)
    with pytest.raises(CannotProxy, match="Opaque"):
        search(Opaque())
    assert search.cannot and "Opaque" in search.cannot and calls == []


def master_functions(chapter):
    from nncourse.course import notebooks as nbs
    from nncourse.course.grading import withhold

    root = Path(__file__).resolve().parents[2]
    return withhold._master_functions(nbs.read(root / "solutions" / f"{chapter}.ipynb"))


@pytest.mark.parametrize("chapter, check, names", [
    # a function lent to the student's code, which perturbs x in place and then calls it
    ("01_backprop_from_scratch", "ex1_4_gradient_checker", ["numerical_gradient",
                                                            "relative_error"]),
    # an optuna trial lent (suggest_*, report, should_prune) and a Dataset copied
    ("11_hyperparameter_tuning", "ex11_1_objective", ["objective"]),
    # a scoring function that records every configuration it is called with
    ("11_hyperparameter_tuning", "ex11_2_random_search", ["random_search"]),
    # models of the check's own class that count test-split calls in the trusted process
    ("11_hyperparameter_tuning", "ex11_3_select_and_test", ["select_and_test"]),
])
def test_checks_that_lend_objects_run_in_the_trusted_process(chapter, check, names, capsys):
    from nncourse.checks import ch01, ch11

    functions = master_functions(chapter)
    fns, calls = proxies(**{n: functions[n] for n in names})
    getattr({"01": ch01, "11": ch11}[chapter[:2]], check)(*fns)
    assert "passed" in capsys.readouterr().out
    assert all(f.cannot is None for f in fns) and calls


def test_a_lent_scoring_function_keeps_the_checks_verdict():
    # the check's scoring function fails the check when called with a non-dict; the student's
    # code catching that exception must not save it
    from nncourse.checks import ch11

    def sneaky(score, space, n_trials, seed):
        for _ in range(n_trials):
            try:
                score([1, 2])
            except Exception:  # noqa: BLE001
                pass
        return {}, 0.0

    (fn,), _ = proxies(random_search=sneaky)
    with pytest.raises(ExerciseError, match="dict config"):
        ch11.ex11_2_random_search(fn)


def test_a_lent_object_offers_only_what_the_check_allows():
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study()
    trial = study.ask()

    def nosy(t):
        t.suggest_float("x", 0.0, 1.0)
        for attempt in (lambda: t.study, lambda: setattr(t, "number", 5),
                        lambda: t._trial_id):
            try:
                attempt()
            except AttributeError:
                continue
            return "reached"
        return "refused"

    (fn,), _ = proxies(nosy=nosy)
    assert fn(trial) == "refused" and "x" in trial.params


def test_what_the_student_side_says_never_moves_the_check_into_the_kernel():
    # a student can make the sandbox reply "CannotProxy" (return an object it cannot encode, or
    # patch the kernel's end): that must fail the call, not send the check to the kernel, where
    # the student controls everything
    (relu,), _ = proxies(relu=lambda x: object())
    with pytest.raises(ExerciseError, match="0.1"):
        ch00.ex0_1_relu(relu)
    assert relu.cannot is None
