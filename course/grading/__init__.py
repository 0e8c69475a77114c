"""Tools for instructors: synthetic submissions and grading runs (see README, "Instructor workflow")."""
