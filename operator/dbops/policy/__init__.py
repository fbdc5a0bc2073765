"""Tenancy: the DBPolicy rules that a namespace's DBRestores and DBAttaches must meet.

- `request` and `rules` are pure: what a request asks for, in terms that no kind's spec shape leaks into,
  and the verdict of the policies that select its namespace (the webhook and the reconcile core ask the
  same functions, so admission and reconcile can never disagree);
- `select` says which policies select a namespace, `quota` counts what a namespace holds;
- `store.Tenancy` is the process' cache of policies and namespaces (kept by kopf's watch), the quota
  reservations and the AWS identity of each namespace.

Each kind turns its spec into a `Request` (restore/tenancy.py, attach/tenancy.py).
"""
