"""The checks of each exercise: `checks/exNN.py` holds `CHECKS`, the list `grading` runs for exNN.

What they share (`Fail`, a worker run) is in `checks/common.py`.
"""
