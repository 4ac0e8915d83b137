"""Train the zstd dictionary that stored states are compressed with (`state/encoding.py`).

The samples are the compact states of the demo's simulated traffic (`leadscore.simulate`,
not the benchmark's workload) scored with the default model, taken at several moments of
weeks of event time, so that young and old states, categories, caps and histories are all
in them. A shipped dictionary is never changed: write a new one under the next id and make
it `DICTIONARY` in `state/encoding.py`. `decode_state` reads only `DICTIONARY`: once a
release has written states with a dictionary, a new one needs the old one read too.

    python bench/state_dictionary.py --id 3
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import zstandard

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from leadscore.events import ProfileKey
from leadscore.model import default_model
from leadscore.scoring.score import advance
from leadscore.scoring.state import LeadState
from leadscore.simulate import simulated_states
from leadscore.state import encoding

DAY_S = 86_400
TARGET = Path(__file__).resolve().parents[1] / "src/leadscore/state/dictionaries"


def samples(events: int, leads: int, seed: int) -> list[bytes]:
    """Compact states of simulated leads, a snapshot of every lead every tenth of the run."""
    model = default_model()
    taken: list[bytes] = []

    def snapshot(sent: int, states: dict[ProfileKey, LeadState]) -> None:
        if sent % (events // 10) == 0:
            taken.extend(encoding.encode_compact(s) for s in states.values())

    states, now = simulated_states(
        model, events=events, leads=leads, seed=seed, step=100, step_s=60, after_step=snapshot
    )
    at = int(now * 1000)
    taken += [encoding.encode_compact(advance(p, s, model, at).state) for p, s in states.items()]
    return taken


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--id", type=int, required=True, help="the new dictionary's id (1-255)")
    parser.add_argument("--size", type=int, default=16_384, help="dictionary size in bytes")
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--leads", type=int, default=5_000)
    args = parser.parse_args()
    target = TARGET / f"states-{args.id}.zdict"
    if target.exists():
        sys.exit(f"{target} exists: a shipped dictionary is never changed, pick a new id")
    found = samples(args.events, args.leads, seed=args.id)
    random.Random(args.id).shuffle(found)
    training, check = found[: len(found) * 9 // 10], found[len(found) * 9 // 10 :]
    dictionary = zstandard.train_dictionary(args.size, training, level=encoding.ZSTD_LEVEL)
    compressor = zstandard.ZstdCompressor(
        level=encoding.ZSTD_LEVEL, dict_data=dictionary, write_checksum=False
    )
    before = sum(map(len, check)) / len(check)
    after = sum(len(compressor.compress(s)) for s in check) / len(check)
    target.write_bytes(dictionary.as_bytes())
    print(f"{target}: {len(dictionary.as_bytes()):,} B from {len(training):,} states")
    print(f"held-out states: {before:.0f} B compact -> {after:.0f} B compressed")


if __name__ == "__main__":
    main()
