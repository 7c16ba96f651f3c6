"""Reusable Pulumi ComponentResources for the Meterplane data plane.

``aws/``, ``gcp/`` and ``azure/`` build the cloud foundation (network, cluster, key,
bucket, workload identities) from raw provider resources; ``k8s/`` builds everything that
runs on the cluster, the same for every cloud. ``versions`` pins every chart and image.
"""
