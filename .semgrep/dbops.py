# Test cases for dbops.yml (`semgrep --test .semgrep`, run by `make security`): each `ruleid:` line must be
# found by that rule, each `ok:` line must not. Never imported or run.
import logging
import ssl
import subprocess

import boto3
import requests
import yaml

log = logging.getLogger(__name__)

# ruleid: dbops-aws-client-outside-rds
client = boto3.client("rds")

# ruleid: dbops-secret-value-logged
log.info("connecting with %s", settings.audit_url.get_secret_value())
# ok: dbops-secret-value-logged
log.info("connecting to the audit database")

# ruleid: dbops-password-in-message
message = f"master password {password}"
# ok: dbops-password-in-message
message = f"master password set from Secret {ref_name}"

# ruleid: dbops-yaml-unsafe-load
data = yaml.load(text)
# ok: dbops-yaml-unsafe-load
data = yaml.safe_load(text)

# ruleid: dbops-requests-without-timeout
requests.post(url, json=body)
# ok: dbops-requests-without-timeout
requests.post(url, json=body, timeout=10)

# ruleid: dbops-tls-verification-off
requests.get(url, verify=False, timeout=5)
# ruleid: dbops-tls-verification-off
context = ssl._create_unverified_context()

# ruleid: dbops-subprocess-shell
subprocess.run("kubectl get pods", shell=True)
# ok: dbops-subprocess-shell
subprocess.run(["kubectl", "get", "pods"], check=True)
