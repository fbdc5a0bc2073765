"""The reconcile core shared by every kind: the work queue, one pass of observe -> decide -> act ->
write status, and the services a pass uses (AWS, the Kubernetes API, events and records).

Imports point down only: kinds (dbops.restore, dbops.attach) import the core, never the reverse.
"""
