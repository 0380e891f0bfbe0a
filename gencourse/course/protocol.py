"""What a graded kernel and the grader agree on: the names of the variables that tell a check where to
save its record and how far to move its inputs. A module of its own, without torch, so that the grader
can read notebooks before it has imported the checks (see gencourse/checks/__init__.py)."""

RECORDS_ENV = "GENCOURSE_CHECK_RECORDS"    # the folder a graded kernel saves its records to
SEED_ENV = "GENCOURSE_CHECK_SEED"          # the grading run's seed offset (0 outside grading)
SELFTEST_ENV = "GENCOURSE_CHECK_SELFTEST"  # "1": replay every record at once and compare (tests)
