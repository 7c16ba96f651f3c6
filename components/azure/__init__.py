"""Azure foundation: VNet, zonal AKS, Key Vault key, ZRS storage archive, workload identities."""
