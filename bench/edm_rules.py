"""What the EDM-REQ business rules cost a consumer gateway per request.

``python -m bench.edm_rules [FOLDER]`` (default: the material beside the repository) prints, for
the official birth certificate request:

- the one-off cost of compiling the rules (Saxon-HE, ``exchange.evidence.edm.rules``);
- per request, the median wall time of 500 runs (and the process's CPU time per run) of: the EDM
  schemas (parse and validate, as before), the business rules as the gateway runs them, and, for
  comparison, the least a Python checker of the same rules would pay: finding each rule's
  context nodes with lxml's XPath 1.0 (those contexts it can express), before testing anything.

The figures of the last run are in docs/oots.md.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

from lxml import etree

from exchange.evidence.edm import NS
from exchange.evidence.edm.rules import SCH, BusinessRules
from exchange.evidence.edm.schemaset import EdmSchemas

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = (
    "samples/evidence-exchange/4.5.4 - OOTS-EDM XML Examples of the Evidence Exchange/"
    "2 Example for requesting a Birth Certificate - natural person/"
    "2.1 Step 1  Evidence Request - Birth - full example.xml"
)
RUNS = 500


def median_ms(work: Callable[[], object]) -> str:
    """The median wall time of ``work`` and the CPU time of this process (all its threads)
    per run: on a shared machine the second is the steadier figure."""
    work()
    times = []
    cpu = time.process_time()
    for _ in range(RUNS):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    used = (time.process_time() - cpu) / RUNS * 1000
    return f"{statistics.median(times) * 1000:.2f} ms (CPU {used:.2f} ms)"


def xpath_contexts(folder: Path) -> list[etree.XPath]:
    found = []
    for part in ("S", "C"):
        schema = etree.parse(str(folder / "sch" / f"EDM-REQ-{part}.sch"))
        for rule in schema.iter(f"{{{SCH}}}rule"):
            try:
                found.append(etree.XPath(f"//{rule.get('context')}", namespaces=NS))
            except etree.XPathSyntaxError:
                continue  # XPath 2 only
    return found


def main() -> None:
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared" / "oots-edm"
    document = (folder / SAMPLE).read_bytes()
    schemas = EdmSchemas.load(folder)
    start = time.perf_counter()
    rules = BusinessRules("REQ", folder)
    compiled = (time.perf_counter() - start) * 1000
    root = schemas.parse(document, what="the request")
    contexts = xpath_contexts(folder)
    print(f"compile the EDM-REQ rules once: {compiled:.0f} ms ({len(rules.words)} rules)")
    print(f"per request, median of {RUNS}:")
    validated = median_ms(lambda: schemas.parse(document, what="the request"))
    print(f"  EDM schemas (parse, validate):   {validated}")
    print(f"  EDM-REQ rules (Saxon-HE):        {median_ms(lambda: rules.failures(root))}")
    print(
        f"  lxml XPath, contexts only ({len(contexts)}):  "
        f"{median_ms(lambda: [find(root) for find in contexts])}"
    )


if __name__ == "__main__":
    main()
