"""Time from the last received instance to the SR stored in a real Orthanc, for the bundled
200-frame phantom (500 A-lines x 1000 samples, ~100 MB as one IVOCT instance).

Run ``python bench/bench_hospital.py [--frames N]`` from a source checkout with Orthanc installed
(.ci/install-orthanc.sh). It runs the end-to-end path of tests/engine/hospital/e2e.py (C-STORE
to ``octguide listen`` -> engine -> SR + key images -> C-STORE to Orthanc) and splits the time
with the audit rows' timestamps: received -> analysed (the engine), analysed -> first report
stored (SR and key images written, queued, C-STORE), and the SR's arrival as Orthanc lists it.
The engine share is the baseline the hospital side's overhead is set against (same run).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.engine.hospital.e2e import numbers_match, run_end_to_end
from tests.engine.hospital.orthanc import Orthanc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--alines", type=int, default=500)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--scenario", default="calcified")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        pacs = Orthanc(folder / "orthanc", calling_aes=("OCTGUIDE",))
        pacs.start()
        try:
            outcome = run_end_to_end(folder, pacs, args.frames, args.alines, args.samples,
                                     scenario=args.scenario)
        finally:
            pacs.stop()
        got, expected = numbers_match(outcome)
        rows = outcome.audit
        received = min(r["time_unix"] for r in rows if r["event"] == "receive")
        analysed = min(r["time_unix"] for r in rows if r["event"] == "analysis")
        sr_sent = min(r["time_unix"] for r in rows if r["event"] == "send"
                      and outcome.sr_rest.SOPInstanceUID in r["what"])
        result = {
            "frames": args.frames, "alines": args.alines, "samples": args.samples,
            "last_instance_received_to_sr_in_orthanc_s": round(outcome.store_to_sr_s, 2),
            "received_to_analysed_s (engine: replay through octguide serve)": round(analysed - received, 2),
            "analysed_to_sr_stored_s (SR + key images built, queued, C-STORE)": round(sr_sent - analysed, 2),
            "hospital_share_of_total": round((sr_sent - analysed) / max(sr_sent - received, 1e-9), 3),
            "sr_numbers": len(got), "numbers_equal_pullback_json": got == expected,
            "key_images": len(outcome.key_images),
            "load_average_1_5_15": os.getloadavg(), "cpus": os.cpu_count(),
        }
    print(json.dumps(result, indent=2))
    return 0 if result["numbers_equal_pullback_json"] else 1


if __name__ == "__main__":
    sys.exit(main())
