"""``python -m meterplane_flink [job options]``: run the aggregation job.

The job's classes must live in an importable module (``meterplane_flink.job``), not in
``__main__``: Flink pickles the operator, and only importable classes pickle by reference.
"""

from meterplane_flink.job import main

raise SystemExit(main())
