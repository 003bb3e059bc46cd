"""The wire format of issue 26's item 1: real checks run unchanged in this (trusted) process while
the function they check is called through a :class:`Proxy` -- here over an in-process JSON
transport standing in for the sandboxed kernel."""

import json

import numpy as np
import pytest
import torch

from nncourse.checks import ExerciseError, NotAttempted, ch00, ch03, ch10
from nncourse.course.grading.proxy import CannotProxy, Proxy, decode, encode, serve


def proxies(**functions):
    """Proxies whose calls cross a JSON boundary both ways, as they would to a kernel."""
    calls = []

    def transport(name, payload):
        calls.append(name)
        reply = serve(functions[name], json.loads(json.dumps(payload)))
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
    # chapter 11 passes objectives (functions) to the student's code: such a check must run in
    # the kernel instead, and the proxy says why
    (search,), calls = proxies(random_search=lambda objective, n: objective(n))
    with pytest.raises(CannotProxy, match="function"):
        search(lambda n: n, 3)
    assert search.cannot and "function" in search.cannot and calls == []


def test_what_the_student_side_says_never_moves_the_check_into_the_kernel():
    # a student can make the sandbox reply "CannotProxy" (return an object it cannot encode, or
    # patch the kernel's end): that must fail the call, not send the check to the kernel, where
    # the student controls everything
    (relu,), _ = proxies(relu=lambda x: object())
    with pytest.raises(ExerciseError, match="0.1"):
        ch00.ex0_1_relu(relu)
    assert relu.cannot is None
