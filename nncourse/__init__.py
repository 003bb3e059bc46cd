"""nncourse: the support package of the course on training deep neural networks.

Import what a chapter needs from its module (``from nncourse import data, models, training``);
the first code cell of every notebook calls :func:`setup`.

Importing ``nncourse`` pins one floating-point path (see :mod:`nncourse.fp_pin`): it must happen
before torch or numpy is imported, so it happens here and not in :func:`setup`.
"""

from nncourse import fp_pin as _fp_pin

_fp_pin.pin()

__version__ = "0.1.0"
__all__ = ["setup", "seed_everything", "environment_report", "progress", "__version__"]


def __getattr__(name: str):
    # Lazy, so that `import nncourse` (and the command line) does not import torch until needed.
    if name in ("setup", "seed_everything", "environment_report", "progress"):
        from nncourse import env

        return getattr(env, name)
    raise AttributeError(f"module 'nncourse' has no attribute {name!r}")
