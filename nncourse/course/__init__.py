"""Authoring, instructor and set-up tools of the course (not needed inside a chapter)."""
