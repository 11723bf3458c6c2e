"""The child process the runtime starts to export a checkpoint whose model code is copyleft
(``export.formats.export(..., isolate=True)``): the code runs here, and only ONNX goes back.

Usage: ``python -m refsd_trt.export.child '<job as JSON>'``; the last line of stderr says why on failure.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from refsd_trt.export.formats import export
from refsd_trt.export.specs import AxisRange
from refsd_trt.io.errors import one_line


def main(argv: list[str]) -> int:
    job = json.loads(argv[0])
    try:
        export(job["ref"], job["component"], job["format"], root=Path(job["root"]), opset=job["opset"],
               validate=job["validate"], workspace_gib=job["workspace_gib"],
               axes={name: AxisRange(*r) for name, r in job["axes"].items()})
    except Exception as exc:  # noqa: BLE001 -- one line for the parent to report
        print(one_line(exc), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
