"""Defaults that parts of the operator read before the settings exist: the first /healthz is served
before pydantic is imported (a quarter of a second), so its port's default cannot live only in
dbops.settings. Standard library only; both the settings and core.health take it from here."""

LIVENESS_PORT = 8080
