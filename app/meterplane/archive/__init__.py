"""Cold tier: raw events older than the hot retention, as Parquet in the customer's bucket.

``exporter.Archiver`` moves day partitions out of the hot store (export, upload under the
customer's key, verify, and only then delete); ``stores`` holds the object-store adapters
(``s3://``, ``gs://``, ``az://``, ``file://``); ``cold`` reads the archive back as Arrow
tables with the ``events`` columns, for ``rebuild``; ``schedule`` runs the archiver inside
``meterplane serve``.
"""
