"""nncourse: the support package of the course on training deep neural networks.

Import what a chapter needs from its module (``from nncourse import data, models, training``);
the first code cell of every notebook calls :func:`setup`.
"""

from nncourse.env import environment_report, seed_everything, setup

__version__ = "0.1.0"
__all__ = ["setup", "seed_everything", "environment_report", "__version__"]
