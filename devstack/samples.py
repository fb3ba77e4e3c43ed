"""The sample bundles (`samples/`), built from source reproducibly, and their task payloads.

- whale-alert: a custom runtime in bash + curl; queries the Query Service itself, writes its
  output object to S3 with its scoped credentials (SigV4 by curl), answers with a summary.
- transfer-decoder: a Node handler bundled with esbuild; decodes ERC-20 Transfer logs with ethers
  v6, from the event or from an input query the runner runs first.

`events/*.json` pin the SHA-256 of these builds: `python -m devstack.samples` re-pins them, and
`tests/integration/devstack/test_cli.py` fails when they are out of step.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from devstack.bundles import zip_files, zip_folder

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
ESBUILD = SAMPLES / "node_modules" / ".bin" / "esbuild"
BUNDLES_PREFIX = "s3://udf-bundles/samples/"


@dataclass(frozen=True)
class Sample:
    """A sample bundle and where the local stack keeps it."""

    name: str
    runtime: str
    handler: str | None

    @property
    def uri(self) -> str:
        """Its S3 URI in the local stack."""
        return f"{BUNDLES_PREFIX}{self.name}.zip"


WHALE_ALERT = Sample("whale-alert", "provided", None)
TRANSFER_DECODER = Sample("transfer-decoder", "nodejs", "index.handler")
ALL = (WHALE_ALERT, TRANSFER_DECODER)


def build(sample: Sample) -> bytes:
    """The sample's zip, identical on every build of the same sources."""
    if sample is TRANSFER_DECODER:
        return _build_node(SAMPLES / sample.name / "src" / "index.mjs")
    return zip_folder(SAMPLES / sample.name)


def _build_node(entry: Path) -> bytes:
    if not ESBUILD.exists():
        raise FileNotFoundError(f"{ESBUILD} is missing: run `make setup` (npm ci in samples/)")
    with tempfile.TemporaryDirectory() as out:
        bundled = Path(out) / "index.mjs"
        subprocess.run(
            [str(ESBUILD), str(entry.relative_to(SAMPLES)), "--bundle", "--platform=node",
             "--format=esm", "--target=node24", "--legal-comments=none", "--minify",
             "--log-level=warning", f"--outfile={bundled}"],
            cwd=SAMPLES, check=True)
        return zip_files({"index.mjs": (bundled.read_bytes(), 0o644)})


EVENTS = SAMPLES.parent / "events"
#: The one event that pins on purpose a hash no sample has.
MISPINNED = "integrity-mismatch.json"


def pinned_events() -> dict[str, str]:
    """Event file → the SHA-256 it should pin: its sample's current build (the events that
    name a sample's URI; `integrity-mismatch.json` and unparseable payloads excepted)."""
    hashes = {sample.uri: hashlib.sha256(build(sample)).hexdigest() for sample in ALL}
    pins = {}
    for path in sorted(EVENTS.glob("*.json")):
        bundle = json.loads(path.read_text()).get("bundle", {})
        if path.name != MISPINNED and bundle.get("uri") in hashes and \
                bundle.get("sha256", "").islower():
            pins[path.name] = hashes[bundle["uri"]]
    return pins


def main() -> int:
    """`python -m devstack.samples`: re-pin events/ after a sample's sources change."""
    for name, sha256 in pinned_events().items():
        path = EVENTS / name
        payload = json.loads(path.read_text())
        payload["bundle"]["sha256"] = sha256
        path.write_text(json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
