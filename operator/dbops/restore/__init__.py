"""DBRestore: AWS reads in observe.py, pure decisions in source.py, plan.py, progress.py and removal.py,
the pass in controller.py."""
