"""DBAttach: reader instances added to an Aurora cluster (observe in controller.py, decide in plan.py)."""
