variable "name" {
  description = "Name of the tenant role (e.g. dbops-team-b)."
  type        = string
}

variable "path" {
  description = "IAM path of the role."
  type        = string
  default     = "/"
}

variable "operator_role_arn" {
  description = "The dbops operator's role (the root module's role_arn output), the only principal trusted."
  type        = string

  validation {
    condition     = can(regex("^arn:[^:]+:iam::[0-9]{12}:role/.+", var.operator_role_arn))
    error_message = "operator_role_arn must be an IAM role ARN."
  }
}

variable "external_id" {
  description = "The ExternalId the operator must present: the DBPolicy's spec.aws.externalId."
  type        = string

  validation {
    condition     = can(regex("^[-\\w+=,.@:/]{2,1224}$", var.external_id))
    error_message = "external_id must be 2 to 1224 of the characters IAM takes."
  }
}

variable "namespaces" {
  description = "Kubernetes namespaces whose requests may use this role (the dbops.dev/namespace session tag)."
  type        = list(string)

  validation {
    condition     = length(var.namespaces) > 0
    error_message = "namespaces must name at least one namespace."
  }
}

variable "regions" {
  description = "AWS regions the role may act in (aws:RequestedRegion). Empty: any region."
  type        = list(string)
  default     = []
}

variable "permissions_boundary_arn" {
  description = "Permissions boundary for the role, if your organisation requires one."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags for the role."
  type        = map(string)
  default     = {}
}
