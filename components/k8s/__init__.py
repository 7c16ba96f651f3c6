"""What runs on the cluster, identical for every cloud: operators, engines and the services."""
