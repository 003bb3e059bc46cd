"""The course's own tools, for authors and instructors; learners never import them.

``notebooks`` (reading, classifying and executing the notebooks), ``release`` (exercises from
solutions), ``execute`` (store outputs), ``bench`` (time each chapter), ``scoreboard`` (a student's
self-check), ``tune`` (the Optuna worker command) and the grader. Each command of
``python -m nncourse`` is one of these modules.
"""
