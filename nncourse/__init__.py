"""nncourse: the support package of the course on training deep neural networks.

Import what a chapter needs from its module (``from nncourse import data, models, training``);
the first code cell of every notebook calls :func:`setup`.
"""

__version__ = "0.1.0"
__all__ = ["setup", "seed_everything", "environment_report", "__version__"]


def __getattr__(name: str):
    # Lazy, so that `import nncourse` (and the command line) does not import torch until needed.
    if name in ("setup", "seed_everything", "environment_report"):
        from nncourse import env

        return getattr(env, name)
    raise AttributeError(f"module 'nncourse' has no attribute {name!r}")
