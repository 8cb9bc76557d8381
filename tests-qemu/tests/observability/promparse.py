#!/usr/bin/env python3
"""Parses a Prometheus text exposition (format 0.0.4) from stdin with the
`prometheus_client` package's parser, the one Python exporters and tools use,
and prints what it understood as JSON for tests-qemu/tests/observability.rs:

  [{"name": family, "type": "counter"|"gauge"|..., "help": text,
    "samples": [{"name": n, "labels": {k: v}, "value": float}]}]

Exit status 2 (with the parser's message on stderr) if it does not parse, 3 if
prometheus_client is not installed.
"""
import json
import sys

try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError as e:
    print(f"prometheus_client is not installed: {e}", file=sys.stderr)
    sys.exit(3)


def main():
    text = sys.stdin.read()
    try:
        families = [{
            "name": f.name,
            "type": f.type,
            "help": f.documentation,
            "samples": [{"name": s.name, "labels": s.labels, "value": s.value} for s in f.samples],
        } for f in text_string_to_metric_families(text)]
    except Exception as e:  # the parser raises ValueError and friends
        print(f"not a valid exposition: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(2)
    json.dump(families, sys.stdout)
    print()


if __name__ == "__main__":
    main()
