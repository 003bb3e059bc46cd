"""Authoring and instructor tools of the course (not used by a learner's notebook)."""
