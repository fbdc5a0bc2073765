"""dbops: a Kubernetes operator that restores and extends AWS RDS databases."""
