# A tenant role: what the dbops operator assumes for the namespaces of one team (a DBPolicy's
# spec.aws.roleArn), in the team's account. It trusts only the operator's role, only with the ExternalId,
# and only for sessions tagged with one of the team's namespaces (dbops tags each session with
# dbops.dev/namespace, dbops.dev/name, dbops.dev/kind and dbops.dev/requester). Its permissions are the
# operator's RDS permissions (the root module's policy.json.tftpl, so the two cannot drift): restores and
# creates tagged dbops.dev/managed-by=dbops, modifies and deletes only what carries that tag.
#
# Give the operator's role the right to assume it: the root module's tenant_role_arns.

terraform {
  required_version = ">= 1.6"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.40, < 7.0"
    }
  }
}

data "aws_partition" "current" {}

data "aws_caller_identity" "current" {}

locals {
  rds_statements = ["ReadRds", "RestoreAndCreateOnlyTaggedAsDbops", "TagOnCreateOnlyAsDbops", "ModifyAndDeleteOnlyWhatDbopsCreated", "FinalSnapshotOfADelete", "RdsManagedMasterPassword", "ReadRdsManagedMasterPasswordToVerify"]
  operator_policy = jsondecode(templatefile("${path.module}/../../policy.json.tftpl", {
    partition          = data.aws_partition.current.partition
    account_id         = data.aws_caller_identity.current.account_id
    regions            = jsonencode(length(var.regions) > 0 ? var.regions : ["*"])
    ses_from_addresses = jsonencode([])
    tenant_role_arns   = jsonencode([])
  }))
  policy = merge(local.operator_policy, {
    Statement = [for s in local.operator_policy.Statement : s if contains(local.rds_statements, s.Sid)]
  })
}

data "aws_iam_policy_document" "trust" {
  statement {
    sid     = "DbopsOperator"
    effect  = "Allow"
    actions = ["sts:AssumeRole", "sts:TagSession"]
    principals {
      type        = "AWS"
      identifiers = [var.operator_role_arn]
    }
    condition {
      test     = "StringEquals"
      variable = "sts:ExternalId"
      values   = [var.external_id]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:RequestTag/dbops.dev/namespace"
      values   = var.namespaces
    }
  }
}

resource "aws_iam_role" "tenant" {
  name                 = var.name
  path                 = var.path
  description          = "dbops restores for the namespaces ${join(", ", var.namespaces)}"
  assume_role_policy   = data.aws_iam_policy_document.trust.json
  max_session_duration = 3600
  permissions_boundary = var.permissions_boundary_arn
  tags                 = var.tags
}

resource "aws_iam_role_policy" "tenant" {
  name   = "dbops-restores"
  role   = aws_iam_role.tenant.id
  policy = jsonencode(local.policy)
}
