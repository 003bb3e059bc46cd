"""One floating-point path on every x86-64 CPU, so a printed number is the same on every machine.

torch, its bundled MKL and oneDNN, and numpy each pick CPU kernels at run time: AVX-512 kernels on
an AVX-512 Intel machine, AVX2 ones on an AMD EPYC, an MKL code path per CPU vendor. Different
kernels add in a different order, so trained weights, losses and accuracies differ in the last
bits -- and a chaotic run (a diverging learning rate, a dying ReLU network) can differ in its
conclusion. Measured here (torch 2.13, numpy 2.4) and in CONTRIBUTING.md ("One floating-point
path"):

============================ ========================== ==========================================
variable                     pinned value               what it fixes
============================ ========================== ==========================================
``ATEN_CPU_CAPABILITY``      ``default``                torch's own kernels (sums, tanh, softmax,
                                                        optimizers): the baseline x86-64 build
                                                        instead of AVX2 / AVX-512 variants
``MKL_CBWR``                 ``COMPATIBLE``             MKL's matrix products (``nn.Linear``): the
                                                        SSE2 branch Intel documents as the one
                                                        that gives the same results on Intel and
                                                        non-Intel CPUs (its ``AVX2`` branch falls
                                                        back to AUTO on AMD)
``ONEDNN_MAX_CPU_ISA``       ``SSE41``                  oneDNN kernels torch uses for some
                                                        element-wise ops (GELU): its baseline ISA
``NPY_DISABLE_CPU_FEATURES`` ``X86_V3 X86_V4 AVX512_ICL numpy's exp/log/tanh/sum loops: the
                             AVX512_SPR``               x86-64-v2 baseline numpy 2.4 requires
============================ ========================== ==========================================

``MKL_ENABLE_INSTRUCTIONS`` is removed (``MKL_CBWR`` decides MKL's branch). Thread counts are fixed
by :func:`nncourse.setup` (``torch.set_num_threads``) and
:func:`nncourse.course.notebooks.kernel_env`.

These variables are read once, when torch or numpy is first imported, so :func:`pin` runs when
``nncourse`` is imported (the first line of every notebook), overriding whatever the environment
set. If torch or numpy was imported first, it prints a one-line warning instead of silently giving
different numbers. ``NNCOURSE_FP_PIN=0`` turns the pin off (used by
``python -m nncourse portability`` to see which outputs depend on the CPU).

Not pinned: OpenBLAS's choice of kernel for numpy's float64 matrix products
(``OPENBLAS_CORETYPE`` is left to the user's machine); the course prints those results with few
enough digits. glibc's ``exp`` or ``tanh`` also pick an FMA variant at run time, the same one on
every CPU since 2013 (Intel Haswell, AMD Zen and later).
"""

from __future__ import annotations

import os
import sys
from collections.abc import MutableMapping

__all__ = ["PIN", "UNSET", "OPT_OUT", "enabled", "pinned_env", "pin", "not_in_force"]

#: The environment of the course's one floating-point path.
PIN: dict[str, str] = {
    "ATEN_CPU_CAPABILITY": "default",
    "MKL_CBWR": "COMPATIBLE",
    "ONEDNN_MAX_CPU_ISA": "SSE41",
    "NPY_DISABLE_CPU_FEATURES": "X86_V3 X86_V4 AVX512_ICL AVX512_SPR",
}
#: Variables removed under the pin (MKL_CBWR decides MKL's code path).
UNSET: tuple[str, ...] = ("MKL_ENABLE_INSTRUCTIONS",)
#: ``NNCOURSE_FP_PIN=0`` turns the pin off.
OPT_OUT = "NNCOURSE_FP_PIN"
#: Which library reads which pinned variable when it is first imported.
_READ_BY = {"torch": ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "ONEDNN_MAX_CPU_ISA",
                      "MKL_ENABLE_INSTRUCTIONS"),
            "numpy": ("NPY_DISABLE_CPU_FEATURES",)}


def enabled(environ: MutableMapping[str, str] = os.environ) -> bool:
    """Whether the pin applies (anything but ``NNCOURSE_FP_PIN=0``)."""
    return environ.get(OPT_OUT, "1").strip() != "0"


def pinned_env(environ: MutableMapping[str, str]) -> MutableMapping[str, str]:
    """Put the pin into ``environ`` (in place, unless opted out) and return it."""
    if enabled(environ):
        environ.update(PIN)
        for name in UNSET:
            environ.pop(name, None)
    return environ


def not_in_force(environ: MutableMapping[str, str] = os.environ,
                 modules: dict | None = None) -> list[str]:
    """Libraries already imported with an environment other than the pin (e.g. ``["torch"]``)."""
    modules = sys.modules if modules is None else modules
    late = []
    for lib, names in _READ_BY.items():
        if lib in modules and any(environ.get(n) != PIN.get(n) for n in names):
            late.append(lib)
    return late


def pin() -> list[str]:
    """Pin this process's floating-point path; warn (one line, stderr) if it is too late for a
    library.

    Returns the libraries the pin came too late for (empty when it is in force or opted out).
    """
    if not enabled():
        return []
    late = not_in_force()
    pinned_env(os.environ)
    if late:
        verb = "was" if len(late) == 1 else "were"
        print(f"nncourse WARNING: {' and '.join(late)} {verb} imported before nncourse, so the "
              "course's floating-point pin is not in force and numbers may differ from the text; "
              "restart the kernel and run `import nncourse` first (before torch or numpy).",
              file=sys.stderr)
    return late
