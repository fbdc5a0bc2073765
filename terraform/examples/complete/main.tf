# Two operator roles from the dbops module: one for an EKS cluster (IRSA), one for a GKE cluster
# (AWS web identity federation with the cluster's own OIDC issuer). Apply one, or both.
#
#   terraform init && terraform apply -var eks_oidc_provider_arn=... -var gke_issuer_url=...
#
# Then put role_arn into the overlay: manifests/overlays/eks (eks.amazonaws.com/role-arn) or
# manifests/overlays/gke (AWS_ROLE_ARN).

terraform {
  required_version = ">= 1.6"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.40, < 7.0"
    }
  }
}

provider "aws" {
  region = var.region
}

variable "region" {
  description = "Region of the provider, and the only region the operators may act in."
  type        = string
  default     = "us-east-1"
}

variable "eks_oidc_provider_arn" {
  description = "The EKS cluster's IAM OIDC provider ARN (aws eks describe-cluster ... identity.oidc.issuer)."
  type        = string
}

variable "gke_issuer_url" {
  description = "The GKE cluster's issuer: https://container.googleapis.com/v1/projects/P/locations/L/clusters/C"
  type        = string
}

data "aws_caller_identity" "current" {}

module "dbops_eks" {
  source = "../.."

  name                  = "dbops-operator-eks"
  eks_oidc_provider_arn = var.eks_oidc_provider_arn
  regions               = [var.region]
  ses_from_addresses    = ["dbops@example.com"]
  # Built from the name rather than taken from module.team_b: the tenant role trusts this one.
  tenant_role_arns = ["arn:aws:iam::${data.aws_caller_identity.current.account_id}:role/dbops-team-b"]
  tags             = { "app.kubernetes.io/name" = "dbops" }
}

# The role of team-b's namespaces (in this account here; usually the team's own): a DBPolicy selecting
# them names it in spec.aws, with the same ExternalId (examples/policy-team.yaml).
module "team_b" {
  source = "../../modules/tenant-role"

  name              = "dbops-team-b"
  operator_role_arn = module.dbops_eks.role_arn
  external_id       = "dbops-team-b"
  namespaces        = ["team-b", "team-b-preview"]
  regions           = [var.region]
  tags              = { "app.kubernetes.io/name" = "dbops" }
}

module "dbops_gke" {
  source = "../.."

  name                     = "dbops-operator-gke"
  external_oidc_issuer_url = var.gke_issuer_url
  regions                  = [var.region]
  tags                     = { "app.kubernetes.io/name" = "dbops" }
}

output "eks_role_arn" {
  description = "For manifests/overlays/eks."
  value       = module.dbops_eks.role_arn
}

output "gke_role_arn" {
  description = "For manifests/overlays/gke."
  value       = module.dbops_gke.role_arn
}

output "team_b_role_arn" {
  description = "For the DBPolicy of team-b's namespaces (spec.aws.roleArn)."
  value       = module.team_b.role_arn
}
