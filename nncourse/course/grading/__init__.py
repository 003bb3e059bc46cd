"""``python -m nncourse grade SUBMISSIONS_DIR --exercise NN``: batch-grade a class, safely.

For instructors; the guide is ``docs/grading.md``. Every ``*.ipynb`` under ``SUBMISSIONS_DIR`` is
graded against the master ``solutions/NN_*.ipynb``:

1. its bytes are read once and hashed (the file itself is never written, moved or executed);
2. the notebook that runs is the master with only the student's *answer* cells put in (by cell
   id, falling back to tags, then order), every other cell restored from the master, no outputs,
   and a guard before each check cell (:mod:`.rebuild`);
3. it runs in a locked-down kernel (:mod:`.sandbox`) with a per-cell timeout,
   a per-notebook deadline and resource limits;
4. each check runs in the grader's own (trusted) worker process, calling the student's functions
   in the kernel through :mod:`.proxy` (JSON, no pickle); a check that cannot be proxied runs in
   the kernel and counts when its *execute reply* is ``ok``. Printed text never counts. An
   answer that hangs or kills the kernel loses that exercise and the notebook is run again
   without it, so the other exercises are still graded;
5. a gradebook CSV, a feedback file per student and a JSON record are written to ``--out``, and a
   class summary is printed. A submission that cannot be read or run gets a row saying why; the
   batch always finishes.

One module per concern: :mod:`.batch` (finding and grading submissions), :mod:`.rebuild` (the
notebook that runs), :mod:`.sandbox` (the kernel's jail and the worker, run by path),
:mod:`.proxy` (calls across the sandbox boundary), :mod:`.reports` (gradebook, feedback,
summary), :mod:`.classroom` (``--pattern`` for GitHub Classroom clones, ``--gradescope``
results) and :mod:`.cli` (the command).
"""

from nncourse.course.grading.batch import (
                                           ERROR,
                                           FLAGGED,
                                           OK,
                                           UNREADABLE,
                                           ExerciseGrade,
                                           Grade,
                                           Limits,
                                           find_master,
                                           find_submissions,
                                           grade_batch,
                                           grade_submission,
)
from nncourse.course.grading.cli import add_arguments, run
from nncourse.course.grading.reports import feedback_text, format_summary, write_reports

__all__ = ["Limits", "ExerciseGrade", "Grade", "find_master", "find_submissions",
           "grade_submission", "grade_batch", "feedback_text", "write_reports", "format_summary",
           "add_arguments", "run", "OK", "FLAGGED", "UNREADABLE", "ERROR"]
