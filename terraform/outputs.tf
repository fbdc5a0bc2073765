output "role_arn" {
  description = "ARN of the operator's role: the eks overlay's eks.amazonaws.com/role-arn annotation, or AWS_ROLE_ARN in the gke/aks overlays."
  value       = aws_iam_role.operator.arn
}

output "role_name" {
  description = "Name of the operator's role."
  value       = aws_iam_role.operator.name
}

output "policy_arn" {
  description = "ARN of the operator's permissions policy."
  value       = aws_iam_policy.operator.arn
}

output "policy_json" {
  description = "The permissions policy document as deployed."
  value       = jsonencode(local.policy)
}

output "external_oidc_provider_arn" {
  description = "ARN of the IAM OIDC provider of the external (GKE/AKS) issuer, if any."
  value       = local.external_oidc_provider_arn
}
