"""The benchmark harness (`medshield bench`): latency vs image size of the real pipeline through a real
mosquitto, side by side with its floors and the AES-GCM encrypt-and-forward alternative, in one run.

    from medshield_tools.bench import BenchConfig, run, write_all
    result = run(BenchConfig.quick())
    write_all(result, Path("out"))
"""

from medshield_tools.bench.harness import BenchConfig, BenchResult, Measurement, available_backends, run
from medshield_tools.bench.output import summary_lines, to_json, write_all
from medshield_tools.bench.stats import RepetitionRule, Summary, summarize

__all__ = [
    "BenchConfig",
    "BenchResult",
    "Measurement",
    "RepetitionRule",
    "Summary",
    "available_backends",
    "run",
    "summarize",
    "summary_lines",
    "to_json",
    "write_all",
]
