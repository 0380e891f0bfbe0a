"""The course's own tooling, not the library learners use.

    labs.py          generate labs/ and the check manifest from solutions/
    grading.py       `gencourse grade`: score lab notebooks check by check
    grade_plugin.py  the pytest plugin (on top of nbval) that grading.py runs
    cli.py           the `gencourse` command line
    templates/       the GitHub Actions workflow printed by `gencourse workflow`

The library itself (data, nn, train, models, evaluation, plots, checks) is the
rest of the gencourse package.
"""
