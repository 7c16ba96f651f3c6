"""AWS foundation: VPC over the stack's zones, EKS, KMS key, S3 archive bucket, pod identities."""
