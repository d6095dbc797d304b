"""Turn objects passed to ``ctx.report`` into JSON-ready reportables."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

__all__ = ["to_reportable"]


def to_reportable(name: str, obj: Any) -> dict[str, Any]:
    """Convert a reportable object; unknown objects are reported by their ``repr``."""
    module = type(obj).__module__.split(".", 1)[0]
    if isinstance(obj, str):
        return {"name": name, "kind": "markdown", "text": obj}
    if isinstance(obj, dict):
        try:
            return {"name": name, "kind": "metrics", "values": json.loads(json.dumps(obj, default=float))}
        except (TypeError, ValueError):
            return {"name": name, "kind": "text", "text": repr(obj)}
    if module == "pandas" and type(obj).__name__ in ("DataFrame", "Series"):
        frame = obj.to_frame() if type(obj).__name__ == "Series" else obj
        return {"name": name, "kind": "table", "html": frame.head(200).to_html(border=0, classes="table")}
    if module == "matplotlib" and hasattr(obj, "savefig"):
        buffer = io.BytesIO()
        obj.savefig(buffer, format="png", bbox_inches="tight", dpi=100)
        return {"name": name, "kind": "image", "png": base64.b64encode(buffer.getvalue()).decode()}
    return {"name": name, "kind": "text", "text": repr(obj)}
