"""The circulation report as a table, CSV, JSON or an HTML page with charts.

Charts are SVG drawn by pygal and inlined in the page: no script, no CDN, so a saved
page opens offline years later exactly as it was published.
"""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pygal
from jinja2 import Environment, FileSystemLoader, select_autoescape
from pygal.style import Style

from ledger.jsonout import to_json
from ledger.reports.circulation import METRICS

#: The flow matrix shows the libraries with most returns; 249 × 249 dots say nothing.
FLOW_LIBRARIES = 15

_STYLE = Style(
    background="white",
    plot_background="white",
    font_family="system-ui, 'Noto Sans CJK SC', sans-serif",
    colors=("#2f6fb3", "#d9822b", "#3a8f3a", "#a33b6b", "#6b5aa6", "#888888"),
)


def as_json(result: dict[str, Any]) -> str:
    return to_json(result)


def as_csv(result: dict[str, Any]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    columns = result["columns"]
    writer.writerow(columns)
    for row in result["rows"]:
        writer.writerow([row[c] for c in columns])
    if result["by"] != "flow":
        writer.writerow(["consortium total", *(result["totals"][m] for m in METRICS)])
    return out.getvalue()


def as_table(result: dict[str, Any]) -> str:
    columns = result["columns"]
    header = [c.replace("_", " ") for c in columns]
    body = [[str(row[c]) for c in columns] for row in result["rows"]]
    if result["by"] != "flow":
        body.append(["consortium total", *(str(result["totals"][m]) for m in METRICS)])
    widths = [
        max(len(h), *(len(r[i]) for r in body)) if body else len(h) for i, h in enumerate(header)
    ]
    lines = [
        f"circulation {result['from']} … {result['to']} by {result['by']}"
        f" ({result['scope']}; log position {result['position']}"
        + (f", as recorded at {result['as_recorded_at']}" if result["as_recorded_at"] else "")
        + ")",
        "  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True)),
    ]
    lines += ["  ".join(v.rjust(w) for v, w in zip(r, widths, strict=True)) for r in body]
    if not result["rows"]:
        lines.append("(no rows: nothing happened at this scope in this period)")
    for flow in result.get("region_flows") or []:
        lines.append(f"{flow['flow']}: {flow['from']} → {flow['to']}  {flow['n']}")
    return "\n".join(lines)


_SCRIPT = re.compile(r"<script\b.*?</script>", re.DOTALL)


def _svg(chart: Any) -> str:
    """The chart's SVG, without pygal's inline config script: it only feeds pygal's
    tooltip script, which is never loaded (``js=[]``), so the page stays script-free."""
    return _SCRIPT.sub("", chart.render(is_unicode=True))


def monthly_chart(monthly: dict[str, Any]) -> str:
    chart = pygal.Bar(
        style=_STYLE,
        js=[],
        disable_xml_declaration=True,
        height=360,
        width=900,
        x_label_rotation=30,
        legend_at_bottom=True,
        title="Loans and returns",
    )
    rows = monthly["rows"]
    chart.x_labels = [r["month"] for r in rows]
    for metric in ("loans", "returns", "cross_library_loans", "cross_library_returns"):
        chart.add(metric.replace("_", " "), [r[metric] for r in rows])
    line = pygal.Line(
        style=_STYLE,
        js=[],
        disable_xml_declaration=True,
        height=300,
        width=900,
        x_label_rotation=30,
        legend_at_bottom=True,
        title="Reader-visits and re-circulation",
    )
    line.x_labels = [r["month"] for r in rows]
    for metric in ("borrowing_visits", "returning_visits", "recirculated", "transfers_overdue"):
        line.add(metric.replace("_", " "), [r[metric] for r in rows])
    return _svg(chart) + _svg(line)


def flow_chart(flow: dict[str, Any]) -> str:
    """Cross-library returns only: the diagonal (returned where borrowed) would drown them."""
    cells = {
        (r["borrowed_at"], r["returned_at"]): r["returns"]
        for r in flow["rows"]
        if r["borrowed_at"] != r["returned_at"]
    }
    volume: dict[str, int] = {}
    for (borrowed, returned), n in cells.items():
        volume[borrowed] = volume.get(borrowed, 0) + n
        volume[returned] = volume.get(returned, 0) + n
    top = sorted(volume, key=lambda code: (-volume[code], code or ""))[:FLOW_LIBRARIES]
    chart = pygal.Dot(
        style=_STYLE,
        js=[],
        disable_xml_declaration=True,
        height=140 + 28 * len(top),
        width=900,
        x_label_rotation=45,
        show_legend=False,
        title=f"Cross-library returns: borrowed at (rows) × returned at (columns), "
        f"the {len(top)} busiest libraries",
    )
    chart.x_labels = top
    for borrowed in top:
        chart.add(borrowed, [cells.get((borrowed, returned)) or None for returned in top])
    return _svg(chart)


_TEMPLATES = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


def as_html(result: dict[str, Any], monthly: dict[str, Any], flow: dict[str, Any]) -> str:
    """The page: the requested table, the monthly series and the flow matrix as charts."""
    from markupsafe import Markup

    return _TEMPLATES.get_template("circulation.html").render(
        r=result,
        metrics=METRICS,
        monthly_svg=Markup(monthly_chart(monthly)) if monthly["rows"] else None,
        flow_svg=Markup(flow_chart(flow))
        if any(r["borrowed_at"] != r["returned_at"] for r in flow["rows"])
        else None,
        generated_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
