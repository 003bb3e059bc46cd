"""The course's own tools for authors and instructors; learners never import these."""
