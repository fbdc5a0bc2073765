"""DBRestoreSchedule: restore drills on a schedule. Pure decisions in cron.py (when runs are due), plan.py
(what a pass does about them) and runs.py (each run's result and evidence, from its DBRestore); the pass in
controller.py."""
