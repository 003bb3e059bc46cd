"""The chapters' labs: chapter NN's experiments and widgets live in ``nncourse/labs/chNN.py``.

Every chapter notebook imports its lab as ``lab`` (``from nncourse.labs import ch03 as lab``).
A lab builds on the course's from-scratch modules (``nncourse.init``, ``nncourse.activations``,
...) and core helpers (``nncourse.models``, ``nncourse.training``, ``nncourse.widgets``); nothing
outside its chapter imports it, except the exercise checks that compare with its reference code.
"""
