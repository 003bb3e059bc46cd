"""Call a student's function across the sandbox boundary, without pickle (issue 26, item 1).

The plan: the grader's trusted process imports the course's checks and runs each check function
itself, passing for the student's function a :class:`Proxy`. Calling the proxy sends the
arguments -- serialized to JSON by :func:`encode` -- to the sandboxed kernel, where
:func:`serve` decodes them, calls the student's function and encodes the result *and the
arguments after the call*. Back in the trusted process :meth:`Proxy.__call__` copies what the
function changed in place into the check's own objects and returns the result; a result that *is*
one of the arguments comes back as that very object. So checks that look at in-place updates
(``xavier_uniform_(w) is w``), seeded generators or returned modules run unchanged, while the
expected values, the comparison and the points never exist in the student's process.

This module is the wire format and the call semantics; ``sandbox.py`` carries the calls to the
kernel. What it copies: ``None``, ``bool``, ``int``, ``float``, ``str``, lists, tuples, dicts with
string keys, NumPy arrays and scalars, torch tensors (with ``requires_grad`` and ``.grad``),
``torch.Generator`` state, modules built from :data:`MODULES`, ``nncourse.data.Dataset`` and
``SimpleNamespace`` records, optuna distributions. What it *lends* (the trusted side only): plain
functions, optuna trials and modules of other classes -- the kernel gets a :class:`_Remote`
whose uses are calls back (:func:`answer`). Anything else raises :class:`CannotProxy`, naming it.
"""

from __future__ import annotations

import base64
import json
import math
from types import SimpleNamespace

import numpy as np

__all__ = ["CannotProxy", "encode", "decode", "serve", "Proxy", "MODULES", "MAX_BYTES"]

MAX_BYTES = 64 * 2**20  # one message's raw array data
DTYPES = {"float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "bool",
          "complex64", "complex128"}
# torch.nn modules a proxy can rebuild: name -> constructor arguments read from an instance
MODULES = {
    "Linear": lambda m: {"in_features": m.in_features, "out_features": m.out_features,
                         "bias": m.bias is not None},
    "Conv1d": None, "Conv2d": None,  # filled in below
    "ReLU": lambda m: {}, "Tanh": lambda m: {}, "Sigmoid": lambda m: {}, "Identity": lambda m: {},
    "GELU": lambda m: {}, "SELU": lambda m: {}, "Softplus": lambda m: {},
    "LeakyReLU": lambda m: {"negative_slope": m.negative_slope},
    "ELU": lambda m: {"alpha": m.alpha},
    "Dropout": lambda m: {"p": m.p},
    "Flatten": lambda m: {"start_dim": m.start_dim, "end_dim": m.end_dim},
    "BatchNorm1d": lambda m: {"num_features": m.num_features, "eps": m.eps,
                              "momentum": m.momentum, "affine": m.affine},
    "Sequential": lambda m: {},
}


def _conv(m):
    return {"in_channels": m.in_channels, "out_channels": m.out_channels,
            "kernel_size": list(m.kernel_size), "stride": list(m.stride),
            "padding": list(m.padding) if not isinstance(m.padding, str) else m.padding,
            "dilation": list(m.dilation), "groups": m.groups, "bias": m.bias is not None}


MODULES["Conv1d"] = MODULES["Conv2d"] = _conv


class CannotProxy(TypeError):
    """A value that cannot cross the sandbox boundary; the message names it."""


def _torch():
    import torch

    return torch


def _array(arr: np.ndarray, budget: list[int]) -> dict:
    if arr.dtype.name not in DTYPES:
        raise CannotProxy(f"an array of dtype {arr.dtype} cannot be sent")
    budget[0] -= arr.nbytes
    if budget[0] < 0:
        raise CannotProxy(f"more than {MAX_BYTES // 2**20} MB of array data")
    return {"dtype": arr.dtype.name, "shape": list(arr.shape),
            "data": base64.b64encode(np.ascontiguousarray(arr).tobytes()).decode("ascii")}


def _from_array(d: dict, budget: list[int]) -> np.ndarray:
    dtype, shape = d.get("dtype"), d.get("shape")
    if dtype not in DTYPES or not isinstance(shape, list) or not all(
            isinstance(n, int) and 0 <= n < 2**31 for n in shape):
        raise CannotProxy("a malformed array")
    raw = base64.b64decode(d.get("data", ""), validate=True)
    budget[0] -= len(raw)
    if budget[0] < 0 or len(raw) != math.prod(shape) * np.dtype(dtype).itemsize:
        raise CannotProxy("an array whose data does not match its shape")
    return np.frombuffer(raw, dtype=dtype).reshape(shape).copy()


def encode(obj, refs: list | None = None, _budget: list[int] | None = None, _depth: int = 0,
           remotes: list | None = None):
    """``obj`` as JSON-able data. ``refs``: objects sent as ``{"$ref": i}`` (identity).

    ``remotes`` (the trusted side only): a list that receives the objects that are *lent* rather
    than copied -- a function the check passes, an optuna trial, a model class of the check's
    own -- sent as ``{"$remote": i}``. The sandbox gets a stand-in whose calls come back here
    (:func:`answer`), so the object never leaves the trusted process.
    """
    budget = _budget if _budget is not None else [MAX_BYTES]
    if _depth > 20:
        raise CannotProxy("a value nested more than 20 levels deep")
    if refs is not None:
        for i, r in enumerate(refs):
            if obj is r and not isinstance(obj, (bool, int, float, str, type(None))):
                return {"$ref": i}
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, int) and not isinstance(obj, bool):
        return obj if abs(obj) < 2**63 else {"$bigint": str(obj)}
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else {"$float": repr(obj)}
    if isinstance(obj, np.generic):
        return {"$npscalar": _array(np.asarray(obj), budget)}
    if isinstance(obj, np.ndarray):
        return {"$ndarray": _array(obj, budget)}
    enc = lambda x: encode(x, refs, budget, _depth + 1, remotes)  # noqa: E731
    if isinstance(obj, (list, tuple)):
        return {"$list" if isinstance(obj, list) else "$tuple": [enc(x) for x in obj]}
    if isinstance(obj, dict):
        if not all(isinstance(k, str) for k in obj):
            raise CannotProxy("a dict with keys that are not strings")
        return {"$dict": {k: enc(v) for k, v in obj.items()}}
    torch = _torch()
    if isinstance(obj, torch.Generator):
        return {"$generator": base64.b64encode(obj.get_state().numpy().tobytes()).decode()}
    if isinstance(obj, torch.Tensor):
        if obj.layout != torch.strided:
            raise CannotProxy(f"a {obj.layout} tensor cannot be sent")
        t = obj.detach().cpu()
        out = {"$tensor": _array(t.numpy() if t.dtype != torch.bfloat16 else
                                 t.float().numpy(), budget),
               "requires_grad": bool(obj.requires_grad),
               "parameter": isinstance(obj, torch.nn.Parameter)}
        if obj.grad is not None:
            out["grad"] = enc(obj.grad)
        return out
    if type(obj).__module__.startswith("optuna.distributions"):
        from optuna.distributions import distribution_to_json

        return {"$distribution": distribution_to_json(obj)}
    if isinstance(obj, _namespaces()):
        return {"$namespace": type(obj).__name__, "fields": {k: enc(v) for k, v in _fields(obj)}}
    lent = _lendable(obj) if remotes is not None else None
    if lent is not None:
        remotes.append(obj)
        methods, attrs, call = lent
        return {"$remote": len(remotes) - 1, "methods": sorted(methods), "attrs": sorted(attrs),
                "call": call, "type": type(obj).__name__}
    if isinstance(obj, torch.nn.Module):
        name = type(obj).__name__
        if type(obj).__module__.split(".")[0] != "torch" or name not in MODULES:
            raise CannotProxy(f"a module of type {type(obj).__qualname__} (only torch.nn's "
                              f"{', '.join(sorted(MODULES))} can be sent)")
        children = {k: enc(m) for k, m in obj.named_children()}
        params = {k: enc(p) for k, p in obj.named_parameters(recurse=False)}
        buffers = {k: enc(b) for k, b in obj.named_buffers(recurse=False) if b is not None}
        return {"$module": name, "init": MODULES[name](obj), "training": obj.training,
                "children": children, "params": params, "buffers": buffers}
    raise CannotProxy(f"a value of type {type(obj).__qualname__} cannot be sent")


def decode(data, refs: list | None = None, _budget: list[int] | None = None, _depth: int = 0,
           callback=None):
    """The object :func:`encode` described; never runs code named by the data.

    ``callback(remote, attr, args, kwargs)`` (the sandbox side): how a lent object's stand-in
    calls back; without one, lent objects cannot be decoded.
    """
    budget = _budget if _budget is not None else [MAX_BYTES]
    if _depth > 20:
        raise CannotProxy("a value nested more than 20 levels deep")
    if data is None or isinstance(data, (bool, int, float, str)):
        return data
    dec = lambda x: decode(x, refs, budget, _depth + 1, callback)  # noqa: E731
    if not isinstance(data, dict) or len(data) == 0:
        raise CannotProxy("malformed data")
    if "$ref" in data:
        i = data["$ref"]
        if refs is None or not isinstance(i, int) or not 0 <= i < len(refs):
            raise CannotProxy("a reference to an unknown argument")
        return refs[i]
    if "$bigint" in data:
        return int(str(data["$bigint"])[:100])
    if "$float" in data:
        return float({"nan": "nan", "inf": "inf", "-inf": "-inf"}.get(data["$float"], "nan"))
    if "$npscalar" in data:
        return _from_array(data["$npscalar"], budget)[()]
    if "$ndarray" in data:
        return _from_array(data["$ndarray"], budget)
    if "$list" in data:
        return [dec(x) for x in data["$list"]]
    if "$tuple" in data:
        return tuple(dec(x) for x in data["$tuple"])
    if "$dict" in data:
        return {str(k): dec(v) for k, v in data["$dict"].items()}
    if "$distribution" in data:
        from optuna.distributions import json_to_distribution

        try:
            return json_to_distribution(str(data["$distribution"]))
        except Exception as exc:  # noqa: BLE001
            raise CannotProxy("a malformed optuna distribution") from exc
    if "$namespace" in data:
        fields = {str(k): dec(v) for k, v in dict(data.get("fields") or {}).items()}
        if data["$namespace"] == "Dataset":
            from nncourse.data import Dataset

            return Dataset(**fields)
        return SimpleNamespace(**fields)
    if "$remote" in data:
        if callback is None or not isinstance(data["$remote"], int):
            raise CannotProxy("an object lent by the grader, with no way to call it back")
        return _Remote(data["$remote"], [str(m) for m in data.get("methods", [])],
                       [str(a) for a in data.get("attrs", [])], bool(data.get("call")),
                       str(data.get("type", "object")), callback)
    torch = _torch()
    if "$generator" in data:
        g = torch.Generator()
        state = np.frombuffer(base64.b64decode(data["$generator"], validate=True), np.uint8)
        g.set_state(torch.from_numpy(state.copy()))
        return g
    if "$tensor" in data:
        t = torch.from_numpy(_from_array(data["$tensor"], budget))
        if data.get("parameter"):
            t = torch.nn.Parameter(t, requires_grad=bool(data.get("requires_grad")))
        elif data.get("requires_grad"):
            t.requires_grad_(True)
        if "grad" in data:
            t.grad = dec(data["grad"])
        return t
    if "$module" in data:
        name = data["$module"]
        if name not in MODULES:
            raise CannotProxy(f"a module of type {name!r}")
        init = data.get("init", {})
        if not isinstance(init, dict):
            raise CannotProxy("malformed module")
        if name == "Sequential":
            m = torch.nn.Sequential()
        else:
            init = {k: tuple(v) if isinstance(v, list) else v for k, v in init.items()}
            m = getattr(torch.nn, name)(**init)
        for k, child in data.get("children", {}).items():
            m.add_module(str(k), dec(child))
        with torch.no_grad():
            for k, p in data.get("params", {}).items():
                value = dec(p)
                if not isinstance(value, torch.Tensor):
                    raise CannotProxy("malformed module parameter")
                m.register_parameter(str(k), value if isinstance(value, torch.nn.Parameter)
                                     else torch.nn.Parameter(value))
            for k, b in data.get("buffers", {}).items():
                m.register_buffer(str(k), dec(b))
        m.train(bool(data.get("training", True)))
        return m
    raise CannotProxy("malformed data")


def _flat_args(args: tuple, kwargs: dict) -> list:
    return [*args, *kwargs.values()]


# --- objects lent to the student's code (calls come back to the trusted process) ---------------

CALLBACK_MARK = "\x00nncourse-callback "  # the prompt of a call-back sent through input()
# what a stand-in may do with a lent object, by type (name as type(obj).__module__ + qualname)
LENT_METHODS = {
    "optuna.trial._trial.Trial": ({"suggest_float", "suggest_int", "suggest_categorical",
                                   "report", "should_prune", "set_user_attr"},
                                  {"number", "params", "distributions", "user_attrs"}),
}
_MODULE_METHODS = ({"forward", "eval", "train"}, {"training"})


def _namespaces():
    from nncourse.data import Dataset

    return (Dataset, SimpleNamespace)


def _fields(obj):
    return list(vars(obj).items()) if isinstance(obj, SimpleNamespace) else [
        (f, getattr(obj, f)) for f in obj.__dataclass_fields__]


def _lendable(obj):
    """``(methods, attributes, callable)`` a stand-in for ``obj`` offers, or None."""
    import types

    kind = f"{type(obj).__module__}.{type(obj).__qualname__}"
    if kind in LENT_METHODS:
        methods, attrs = LENT_METHODS[kind]
        return methods, attrs, False
    torch = _torch()
    if isinstance(obj, torch.nn.Module) and (
            type(obj).__module__.split(".")[0] != "torch" or type(obj).__name__ not in MODULES):
        return (*_MODULE_METHODS, True)  # a model class of the check's own: call it, no more
    if isinstance(obj, (types.FunctionType, types.MethodType, types.BuiltinFunctionType)):
        return set(), set(), True
    return None


class _Remote:
    """In the sandbox: stands for an object the grader lent; every use is a call back."""

    def __init__(self, rid, methods, attrs, call, kind, callback):
        object.__setattr__(self, "_r", (rid, frozenset(methods), frozenset(attrs), call, kind,
                                        callback))

    def __call__(self, *args, **kwargs):
        rid, _, _, call, kind, callback = self._r
        if not call:
            raise TypeError(f"the grader's {kind} cannot be called")
        return callback(rid, None, args, kwargs)

    def __getattr__(self, name):
        rid, methods, attrs, _, kind, callback = object.__getattribute__(self, "_r")
        if name in methods:
            return lambda *args, **kwargs: callback(rid, name, args, kwargs)
        if name in attrs:
            return callback(rid, name, None, None)
        raise AttributeError(f"the grader's {kind} offers only "
                             f"{', '.join(sorted(methods | attrs)) or 'calls'} here, not {name!r}")

    def __setattr__(self, name, value):
        raise AttributeError(f"the grader's {self._r[4]} cannot be changed here")

    def __repr__(self):
        return f"<the grader's {self._r[4]}>"


def _encode_each(values) -> list:
    out = []
    for v in values:
        try:
            out.append(encode(v))
        except CannotProxy:
            out.append(None)
    return out


def answer(remotes: list, originals: list, text: str, errors: list) -> str:
    """The trusted side of a call back: run ``remotes[i]`` (or its allowed method) on the call.

    ``originals``: the check's own arguments of the call in progress; the sandbox sends their
    current state first (a gradient checker perturbs ``x`` in place, then calls ``f``, which
    reads it). An exception the check's own code raises (its verdict, e.g. a failed
    expectation inside a scoring function) goes into ``errors``, so that the check ends with it
    whatever the student's code does with the exception it receives.
    """
    try:
        req = json.loads(text)
        rid, attr = req["remote"], req.get("attr")
        if not isinstance(rid, int) or not 0 <= rid < len(remotes):
            raise CannotProxy("a call back to an unknown object")
        target = remotes[rid]
        for original, data in zip(originals, req.get("state") or []):
            if data is not None:
                _copy_into(original, decode(data))
        methods, attrs, call = _lendable(target)
        if attr is None:
            if not call:
                raise TypeError("this object cannot be called")
            fn = target
        elif req.get("get"):
            if attr not in attrs:
                raise AttributeError(f"{attr!r} is not offered")
            return json.dumps({"result": encode(getattr(target, attr), remotes=remotes)})
        elif attr in methods:
            fn = getattr(target, attr)
        else:
            raise AttributeError(f"{attr!r} is not offered")
        args, kwargs = decode(req.get("args")), decode(req.get("kwargs"))
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - the check's own code failed: its verdict
            errors.append(exc)
            raise
        return json.dumps({"result": encode(result, remotes=remotes)})
    except Exception as exc:  # noqa: BLE001 - sent to the sandbox as the call's exception
        return json.dumps({"error": {"type": type(exc).__name__, "message": str(exc)[:2000]}})


def serve(fn, payload: dict, channel=None) -> dict:
    """In the sandbox: decode the call, run ``fn``, encode the outcome. Never raises.

    The reply holds the result (``$ref`` when it is an argument), every argument after the
    call (so in-place changes travel back), or the exception's type name and message.
    ``channel(text) -> text`` carries call-backs of lent objects to the trusted side.
    """
    flat: list = []

    def callback(rid, attr, args, kwargs):
        if channel is None:
            raise RuntimeError("no way to reach the grader")
        request = {"remote": rid, "attr": attr, "get": args is None,
                   "args": encode(tuple(args or ())), "kwargs": encode(dict(kwargs or {})),
                   "state": _encode_each(flat)}
        reply = json.loads(channel(json.dumps(request)))
        if "error" in reply:
            err = reply["error"] if isinstance(reply["error"], dict) else {}
            name, message = str(err.get("type", "Exception")), str(err.get("message", ""))
            raise _EXCEPTIONS.get(name, RuntimeError)(message)
        return decode(reply.get("result"), callback=callback)

    try:
        args = decode(payload["args"], callback=callback)
        kwargs = decode(payload["kwargs"], callback=callback)
    except Exception as exc:  # noqa: BLE001
        return {"error": {"type": "CannotProxy", "message": str(exc)}}
    flat[:] = _flat_args(args, kwargs)
    try:
        result = fn(*args, **kwargs)
    except BaseException as exc:  # noqa: BLE001 - the check decides what an exception means
        out = {"error": {"type": type(exc).__name__, "message": str(exc)[:2000]}}
    else:
        try:
            out = {"result": encode(result, refs=flat)}
        except CannotProxy as exc:
            out = {"error": {"type": "CannotProxy", "message": f"the function returned {exc}"}}
    out["after"] = _encode_each(flat)
    return out


def serve_named(name: str, text: str) -> str:
    """The kernel's end: call the notebook's function ``name`` on the JSON call ``text``.

    Call-backs travel as ``input()`` requests (the kernel's stdin channel), which the grader
    answers.
    """
    try:
        ns = get_ipython().user_ns  # noqa: F821 - inside IPython
    except NameError:
        ns = {}
    fn = ns.get(name)
    if not callable(fn):
        return json.dumps({"error": {"type": "NameError",
                                     "message": f"name {name!r} is not defined as a function"}})
    ask = __builtins__["input"] if isinstance(__builtins__, dict) else __builtins__.input
    return json.dumps(serve(fn, json.loads(text), channel=lambda t: ask(CALLBACK_MARK + t)))


_EXCEPTIONS = {e.__name__: e for e in (
    ValueError, TypeError, IndexError, KeyError, RuntimeError, ZeroDivisionError, AttributeError,
    NotImplementedError, AssertionError, ArithmeticError, OverflowError, LookupError,
    NameError, RecursionError, MemoryError, StopIteration)}


class StudentError(Exception):
    """An exception the student's code raised that is not a built-in one (keeps its name)."""


def _copy_into(original, after) -> None:
    """Make ``original`` equal ``after`` in place (tensors, arrays, generators, lists, modules)."""
    torch = _torch()
    if isinstance(original, torch.Tensor) and isinstance(after, torch.Tensor):
        with torch.no_grad():
            if original.shape == after.shape:
                original.copy_(after.to(original.dtype))
            if isinstance(after, torch.Tensor) and after.grad is not None:
                original.grad = after.grad.to(original.dtype)
            elif original.grad is not None and after.grad is None:
                original.grad = None
    elif isinstance(original, np.ndarray) and isinstance(after, np.ndarray):
        if original.shape == after.shape and original.flags.writeable:
            original[...] = after
    elif isinstance(original, torch.Generator) and isinstance(after, torch.Generator):
        original.set_state(after.get_state())
    elif isinstance(original, list) and isinstance(after, list):
        for o, a in zip(original, after):
            _copy_into(o, a)
        if len(after) != len(original):
            original[:] = after
    elif isinstance(original, dict) and isinstance(after, dict):
        for k in after:
            if k in original:
                _copy_into(original[k], after[k])
    elif isinstance(original, torch.nn.Module) and isinstance(after, torch.nn.Module):
        mine = dict(original.named_parameters()) | dict(original.named_buffers())
        theirs = dict(after.named_parameters()) | dict(after.named_buffers())
        for k, t in theirs.items():
            if k in mine and t is not None:
                _copy_into(mine[k], t)
        original.train(after.training)


class Proxy:
    """Stands for the student's function ``name`` in a check run by the trusted process.

    ``transport(name, payload, on_callback) -> reply`` carries a call to the sandbox (and
    :func:`serve` there) and answers the call-backs of lent objects with ``on_callback(text)
    -> text``; in tests it can call :func:`serve` directly.
    """

    def __init__(self, name: str, transport):
        self.__name__ = self.__qualname__ = name
        self._transport = transport
        self.cannot: str | None = None  # why a call could not cross, if one could not

    def __repr__(self):
        return f"<the student's {self.__name__}>"

    def __call__(self, *args, **kwargs):
        flat = _flat_args(args, kwargs)
        remotes: list = []
        try:
            payload = {"args": encode(args, remotes=remotes),
                       "kwargs": encode(kwargs, remotes=remotes)}
        except CannotProxy as exc:
            self.cannot = f"the check passes {exc}"
            raise
        errors: list = []
        reply = self._transport(self.__name__, payload,
                                lambda text: answer(remotes, flat, text, errors))
        if errors:  # the check's own code (e.g. a scoring function it lent) failed: its verdict
            raise errors[0]
        if not isinstance(reply, dict):
            raise StudentError("the sandbox sent back a malformed reply")
        after = reply.get("after")
        if isinstance(after, list) and len(after) == len(flat):
            for original, data in zip(flat, after):
                if data is not None:
                    _copy_into(original, decode(data))
        if "error" in reply:
            err = reply["error"] if isinstance(reply["error"], dict) else {}
            name, message = str(err.get("type", "Exception")), str(err.get("message", ""))
            if name == "CannotProxy":
                # the other end is the student's process: what it says must never move the
                # check there (only this side's own encoding, above, can): a failed call
                raise TypeError(f"the grader could not read the answer back: {message}")
            raise _EXCEPTIONS.get(name, StudentError)(
                message if name in _EXCEPTIONS else f"{name}: {message}")
        return decode(reply.get("result"), refs=flat)
