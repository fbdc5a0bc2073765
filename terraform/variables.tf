variable "name" {
  description = "Name of the IAM role and policy."
  type        = string
  default     = "dbops-operator"
}

variable "path" {
  description = "IAM path of the role and policy."
  type        = string
  default     = "/"
}

variable "namespace" {
  description = "Kubernetes namespace of the operator's ServiceAccount (manifests/base: dbops-system)."
  type        = string
  default     = "dbops-system"
}

variable "service_account" {
  description = "Name of the operator's ServiceAccount (manifests/base: dbops)."
  type        = string
  default     = "dbops"
}

variable "regions" {
  description = "AWS regions the operator may act in (aws:RequestedRegion). Empty: any region."
  type        = list(string)
  default     = []
}

variable "eks_oidc_provider_arn" {
  description = "EKS IRSA: ARN of the cluster's IAM OIDC provider (arn:aws:iam::ACCOUNT:oidc-provider/oidc.eks.REGION.amazonaws.com/id/ID). Null: no IRSA trust."
  type        = string
  default     = null

  validation {
    condition     = var.eks_oidc_provider_arn == null || can(regex("^arn:[^:]+:iam::[0-9]{12}:oidc-provider/.+", var.eks_oidc_provider_arn))
    error_message = "eks_oidc_provider_arn must be an IAM OIDC provider ARN."
  }
}

variable "eks_pod_identity_cluster_name" {
  description = "EKS Pod Identity: name of the EKS cluster. Set, the role trusts pods.eks.amazonaws.com for this cluster and a pod identity association binds it to the ServiceAccount. Null: no Pod Identity."
  type        = string
  default     = null
}

variable "external_oidc_issuer_url" {
  description = "GKE/AKS (AWS web identity federation): the cluster's service account issuer URL, e.g. https://container.googleapis.com/v1/projects/P/locations/L/clusters/C or https://REGION.oic.prod-aks.azure.com/TENANT/ID/. Null: no external trust."
  type        = string
  default     = null

  validation {
    condition     = var.external_oidc_issuer_url == null || can(regex("^https://", var.external_oidc_issuer_url))
    error_message = "external_oidc_issuer_url must be an https:// URL."
  }
}

variable "create_external_oidc_provider" {
  description = "Create the IAM OIDC provider for external_oidc_issuer_url (false: it exists already in the account)."
  type        = bool
  default     = true
}

variable "ses_from_addresses" {
  description = "Sender addresses the operator may send notification e-mail from (ses:FromAddress; DBOPS_SES_SENDER). Empty: no SES permission at all."
  type        = list(string)
  default     = []
}

variable "tenant_role_arns" {
  description = "Roles the operator may assume for namespaces (the DBPolicies' spec.aws.roleArn, made with modules/tenant-role, in this account or others): only sts:AssumeRole and sts:TagSession on them. Empty: no tenant roles."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for arn in var.tenant_role_arns : can(regex("^arn:[^:]+:iam::[0-9]{12}:role/.+", arn))])
    error_message = "tenant_role_arns must be IAM role ARNs."
  }
}

variable "permissions_boundary_arn" {
  description = "Permissions boundary for the role, if your organisation requires one."
  type        = string
  default     = null
}

variable "max_session_duration" {
  description = "Maximum session duration of the role, in seconds."
  type        = number
  default     = 3600
}

variable "tags" {
  description = "Tags for the IAM role and policy."
  type        = map(string)
  default     = {}
}
