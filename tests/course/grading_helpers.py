"""Shared by the grader's tests: the warm-up's solution and exercise, students made of them."""

import json
import os
from pathlib import Path

from nncourse.course.grading import rebuild as rb

ROOT = Path(__file__).resolve().parents[2]
SOLUTION = ROOT / "solutions" / "00_warmup.ipynb"
EXERCISE = ROOT / "exercises" / "00_warmup.ipynb"
AS_ROOT = os.geteuid() == 0

RELU = "def relu(x):\n    return np.maximum(x, 0.0)"
MSE = "def mse(y_pred, y_true):\n    return float(np.mean((y_pred - y_true) ** 2))"
ACC = ("def accuracy(logits, labels):\n"
       "    return (logits.argmax(dim=1) == labels).float().mean().item()")
RIGHT = {"0.1": RELU, "0.2": MSE, "0.3": ACC}


def student(answers=None, edit=None):
    """The released exercise with some answers filled in (a dict of JSON, as saved by Jupyter)."""
    nb = json.loads(EXERCISE.read_text())
    for cell in nb["cells"]:
        if isinstance(cell["source"], list):
            cell["source"] = "".join(cell["source"])
        ex = cell["metadata"].get("nncourse", {}).get("exercise")
        if "answer" in cell["metadata"].get("tags", []) and ex in (answers or {}):
            cell["source"] = answers[ex]
    if edit:
        edit(nb)
    return nb


def cells_of(nb_dict):
    return rb.load_submission(json.dumps(nb_dict).encode())
