"""GCP foundation: VPC, regional private GKE, Cloud KMS key, GCS archive, Workload Identity."""
