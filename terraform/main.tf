# The operator's IAM role: trusted by the operator's ServiceAccount only (EKS IRSA, EKS Pod Identity,
# and/or an external OIDC issuer for GKE/AKS), allowed exactly the AWS actions dbops calls.
#
# The permissions are in policy.json.tftpl, a plain IAM policy document: tests/unit/test_iam_policy.py
# reads that file and checks its actions against the AWS calls found in the operator's code, so the
# two cannot drift. Statements that do not apply (SES when no sender is configured, AssumeRole when no
# tenant role is) are dropped below. Tenant roles (DBPolicy spec.aws.roleArn) come from
# modules/tenant-role: the operator may only assume them and tag the session, they do the restores.

data "aws_partition" "current" {}

data "aws_caller_identity" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  subject    = "system:serviceaccount:${var.namespace}:${var.service_account}"

  eks_oidc_issuer      = var.eks_oidc_provider_arn == null ? null : element(split(":oidc-provider/", var.eks_oidc_provider_arn), 1)
  external_oidc_issuer = var.external_oidc_issuer_url == null ? null : trimsuffix(trimprefix(var.external_oidc_issuer_url, "https://"), "/")
  external_oidc_provider_arn = var.external_oidc_issuer_url == null ? null : (
    var.create_external_oidc_provider
    ? aws_iam_openid_connect_provider.external[0].arn
    : "arn:${local.partition}:iam::${local.account_id}:oidc-provider/${local.external_oidc_issuer}"
  )

  web_identity_trusts = concat(
    var.eks_oidc_provider_arn == null ? [] : [{ provider_arn = var.eks_oidc_provider_arn, issuer = local.eks_oidc_issuer }],
    var.external_oidc_issuer_url == null ? [] : [{ provider_arn = local.external_oidc_provider_arn, issuer = local.external_oidc_issuer }],
  )

  policy_document = jsondecode(templatefile("${path.module}/policy.json.tftpl", {
    partition          = local.partition
    account_id         = local.account_id
    regions            = jsonencode(length(var.regions) > 0 ? var.regions : ["*"])
    ses_from_addresses = jsonencode(var.ses_from_addresses)
    tenant_role_arns   = jsonencode(var.tenant_role_arns)
  }))
  policy = merge(local.policy_document, {
    Statement = [
      for s in local.policy_document.Statement : s
      if alltrue([
        s.Sid != "SendNotificationEmail" || length(var.ses_from_addresses) > 0,
        s.Sid != "AssumeTenantRoles" || length(var.tenant_role_arns) > 0,
      ])
    ]
  })
}

resource "aws_iam_openid_connect_provider" "external" {
  count = var.external_oidc_issuer_url != null && var.create_external_oidc_provider ? 1 : 0

  url            = var.external_oidc_issuer_url
  client_id_list = ["sts.amazonaws.com"]
  tags           = var.tags
}

data "aws_iam_policy_document" "trust" {
  # IRSA and external issuers: the projected ServiceAccount token (audience sts.amazonaws.com) of this
  # one ServiceAccount, exchanged with AssumeRoleWithWebIdentity.
  dynamic "statement" {
    for_each = local.web_identity_trusts
    content {
      sid     = "WebIdentity${statement.key}"
      effect  = "Allow"
      actions = ["sts:AssumeRoleWithWebIdentity"]
      principals {
        type        = "Federated"
        identifiers = [statement.value.provider_arn]
      }
      condition {
        test     = "StringEquals"
        variable = "${statement.value.issuer}:aud"
        values   = ["sts.amazonaws.com"]
      }
      condition {
        test     = "StringEquals"
        variable = "${statement.value.issuer}:sub"
        values   = [local.subject]
      }
    }
  }

  # EKS Pod Identity: the EKS Auth service assumes the role for pods of this account's cluster; which
  # ServiceAccount gets it is the pod identity association below.
  dynamic "statement" {
    for_each = var.eks_pod_identity_cluster_name == null ? [] : [var.eks_pod_identity_cluster_name]
    content {
      sid     = "EksPodIdentity"
      effect  = "Allow"
      actions = ["sts:AssumeRole", "sts:TagSession"]
      principals {
        type        = "Service"
        identifiers = ["pods.eks.amazonaws.com"]
      }
      condition {
        test     = "StringEquals"
        variable = "aws:SourceAccount"
        values   = [local.account_id]
      }
      condition {
        test     = "ArnLike"
        variable = "aws:SourceArn"
        values   = ["arn:${local.partition}:eks:*:${local.account_id}:cluster/${statement.value}"]
      }
    }
  }
}

resource "aws_iam_role" "operator" {
  name                 = var.name
  path                 = var.path
  description          = "dbops operator (ServiceAccount ${var.namespace}/${var.service_account})"
  assume_role_policy   = data.aws_iam_policy_document.trust.json
  max_session_duration = var.max_session_duration
  permissions_boundary = var.permissions_boundary_arn
  tags                 = var.tags

  lifecycle {
    precondition {
      condition     = length(local.web_identity_trusts) > 0 || var.eks_pod_identity_cluster_name != null
      error_message = "Set at least one of eks_oidc_provider_arn, eks_pod_identity_cluster_name, external_oidc_issuer_url."
    }
  }
}

resource "aws_iam_policy" "operator" {
  name        = var.name
  path        = var.path
  description = "What the dbops operator calls: RDS restores/creates tagged dbops.dev/managed-by=dbops, modifies and deletes only those, SES notifications"
  policy      = jsonencode(local.policy)
  tags        = var.tags
}

resource "aws_iam_role_policy_attachment" "operator" {
  role       = aws_iam_role.operator.name
  policy_arn = aws_iam_policy.operator.arn
}

resource "aws_eks_pod_identity_association" "operator" {
  count = var.eks_pod_identity_cluster_name == null ? 0 : 1

  cluster_name    = var.eks_pod_identity_cluster_name
  namespace       = var.namespace
  service_account = var.service_account
  role_arn        = aws_iam_role.operator.arn
  tags            = var.tags
}
