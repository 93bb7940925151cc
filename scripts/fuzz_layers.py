"""Count how layer arguments and input shapes drawn at random fail: clear, unclear, or not at all.

The same cases as the fuzz test in tests/test_bad_input.py (which asserts there are no unclear
ones), drawn with Python's seeded generator so a run can be repeated and compared:

    python scripts/fuzz_layers.py 3000 2      # cases, seed  ->  {'ok': ..., 'clear': ..., 'unclear': ...}

Each distinct unclear failure is printed once with the arguments that caused it.
"""
from __future__ import annotations

import collections
import random
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.test_bad_input import (EXTRA_ARGUMENTS, FUZZED_LAYERS, INTERNAL_ERRORS, ODD_VALUES,  # noqa: E402
                                  _names_what_is_wrong, run_fuzzed_call)


def main(cases: int, seed: int) -> int:
    rng = random.Random(seed)
    counts: collections.Counter = collections.Counter()
    unclear: dict = {}
    for _ in range(cases):
        name = rng.choice(sorted(FUZZED_LAYERS))
        kwargs, shape = FUZZED_LAYERS[name]
        kwargs = dict(kwargs)
        arguments = sorted({*kwargs, *EXTRA_ARGUMENTS[name]})
        changed = rng.sample(arguments, k=min(len(arguments), rng.randint(0, 2))) if arguments else []
        for argument in changed:
            kwargs[argument] = rng.choice(ODD_VALUES)
        if rng.random() < 0.5:
            shape = tuple(rng.randint(0, 6) for _ in range(rng.randint(1, 4)))
        data_shape = tuple(rng.randint(0, 6) for _ in range(rng.randint(0, 4))) if rng.random() < 0.5 else shape
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                run_fuzzed_call(name, kwargs, shape, data_shape)
            counts["ok"] += 1
        except Exception as exc:
            clear = (not isinstance(exc, INTERNAL_ERRORS) and isinstance(exc, (ValueError, TypeError))
                     and _names_what_is_wrong(str(exc), name, changed))
            counts["clear" if clear else "unclear"] += 1
            if not clear:
                unclear.setdefault((name, type(exc).__name__, str(exc)[:60]), (kwargs, shape, str(exc)[:200]))
    print(dict(counts))
    for (name, kind, _), (kwargs, shape, message) in sorted(unclear.items()):
        print(f"{name}({kwargs}) on {shape}: {kind}: {message}")
    return 1 if unclear else 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000, int(sys.argv[2]) if len(sys.argv) > 2 else 0))
