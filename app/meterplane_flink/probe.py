"""Environment probe: read a Kafka topic from the beginning to its current end with PyFlink.

``python -m meterplane_flink.probe --bootstrap HOST:PORT --topic T --connector-jar JAR``
prints every record value on its own line, passing each through a Python map so that the
Python worker (Beam/pemja), the Kafka connector and the local mini-cluster are all
exercised. An operator runs it to check a new Flink image or environment end to end.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="meterplane_flink.probe", description=__doc__)
    parser.add_argument("--bootstrap", required=True, help="Kafka bootstrap servers")
    parser.add_argument("--topic", required=True, help="topic to read (earliest to latest)")
    parser.add_argument("--connector-jar", required=True, type=Path, help="Flink Kafka SQL jar")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the probe job; prints ``PROBE <value>`` per record and ``PROBE-END <count>``."""
    args = _parse(sys.argv[1:] if argv is None else argv)
    from pyflink.common import Types, WatermarkStrategy  # noqa: PLC0415 - Flink env only
    from pyflink.common.serialization import SimpleStringSchema  # noqa: PLC0415
    from pyflink.datastream import StreamExecutionEnvironment  # noqa: PLC0415
    from pyflink.datastream.connectors.kafka import (  # noqa: PLC0415
        KafkaOffsetsInitializer,
        KafkaSource,
    )

    env = StreamExecutionEnvironment.get_execution_environment()
    env.add_jars(args.connector_jar.resolve().as_uri())
    # Python workers otherwise start whatever `python` is first on PATH.
    env.set_python_executable(sys.executable)
    env.set_parallelism(1)
    source = (
        KafkaSource.builder()
        .set_bootstrap_servers(args.bootstrap)
        .set_topics(args.topic)
        .set_group_id("meterplane-probe")
        .set_starting_offsets(KafkaOffsetsInitializer.earliest())
        .set_bounded(KafkaOffsetsInitializer.latest())
        .set_value_only_deserializer(SimpleStringSchema())
        .build()
    )
    stream = env.from_source(source, WatermarkStrategy.no_watermarks(), "probe-source")
    upper = stream.map(lambda value: value.upper(), output_type=Types.STRING())
    count = 0
    with upper.execute_and_collect("meterplane-probe") as results:
        for value in results:
            print(f"PROBE {value}", flush=True)
            count += 1
    print(f"PROBE-END {count}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
