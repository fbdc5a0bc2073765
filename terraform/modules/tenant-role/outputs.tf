output "role_arn" {
  description = "ARN of the tenant role: the DBPolicy's spec.aws.roleArn, and an entry of the root module's tenant_role_arns."
  value       = aws_iam_role.tenant.arn
}

output "policy_json" {
  description = "The role's permissions as deployed."
  value       = jsonencode(local.policy)
}
