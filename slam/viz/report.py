"""One self-contained HTML page per run: plots embedded as base64 PNG, metrics table (from metrics.json),
timing, sequence info, settings, software versions and the list of problems. No external CSS, scripts or
fonts, so it opens offline and can be mailed as one file.

Every metric cell carries ``data-metric`` (its path in metrics.json, e.g. ``rpe.0.trans.rmse``) and
``data-value`` (the exact JSON value). A small inline script counts, on ``load``, the images that decoded
(``<body data-images-loaded>`` against ``data-images-total``), so a headless browser can check the page.
"""

from __future__ import annotations

import base64
import datetime
import html
import json
import platform
from pathlib import Path

from slam.viz.run_data import RunData

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1250px; color: #222; padding: 0 1em; }
h1 { margin-bottom: 0.1em; } .sub { color: #666; margin-top: 0; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; } th, td { padding: 0.25em 0.8em; text-align: left; }
th { background: #f0f0f0; } tr:nth-child(even) td { background: #fafafa; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 1em 0 2em; } figure img { max-width: 100%; border: 1px solid #ddd; } figcaption { color: #555; }
pre { background: #f6f6f6; padding: 1em; overflow-x: auto; } .problems li { color: #a04000; }
"""

SCRIPT = """
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var loaded = images.filter(function (img) { return img.complete && img.naturalWidth > 0; });
  document.body.setAttribute("data-images-loaded", String(loaded.length));
});
"""

SUMMARY_KEYS = (("sequence", "sequence"), ("mode", "mode"), ("duration_s", "duration [s]"), ("frames", "frames"),
                ("frames_tracked", "frames tracked"), ("keyframes", "keyframes"), ("map_points", "map points"),
                ("resets", "resets"), ("gaps", "gaps [ns]"), ("interrupted", "interrupted"),
                ("path_length_m", "path length [m]"), ("n_matched", "poses matched to ground truth"),
                ("ate_4dof_rmse", "ATE RMSE, 4-DoF aligned [m]"), ("ground_truth", "ground truth"))
ATE_KEYS = ("rmse", "mean", "median", "std", "min", "max", "rot_rmse_deg", "n")
STATS = ("rmse", "mean", "median", "std", "min", "max")
VERSION_PACKAGES = (("slam", ("slam",)), ("numpy", ("numpy",)), ("gtsam", ("gtsam",)),
                    ("opencv", ("opencv-python-headless", "opencv-python", "opencv-contrib-python")),
                    ("matplotlib", ("matplotlib",)), ("open3d", ("open3d-cpu", "open3d")),
                    ("rerun-sdk", ("rerun-sdk",)), ("torch", ("torch",)))


def _text(value) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list) and all(isinstance(v, float) for v in value):
        return "[" + ", ".join(f"{v:.6g}" for v in value) + "]"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


def _cell(path: str, value) -> str:
    css = ' class="num"' if isinstance(value, (int, float)) and not isinstance(value, bool) else ""
    return (f'<td{css} data-metric="{html.escape(path)}" data-value="{html.escape(json.dumps(value))}">'
            f"{html.escape(_text(value))}</td>")


def _table(header: list[str], rows: list[str], table_id: str) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    return f'<table id="{table_id}"><tr>{head}</tr>{"".join(rows)}</table>'


def metrics_tables(metrics: dict) -> str:
    """Run summary, ATE, RPE and alignment tables; every value cell is tagged with its metrics.json path."""
    parts = []
    rows = [f"<tr><th>{html.escape(label)}</th>{_cell(key, metrics[key])}</tr>"
            for key, label in SUMMARY_KEYS if key in metrics]
    parts.append("<h2>Run</h2>" + _table(["", "value"], rows, "summary"))
    if isinstance(metrics.get("ate"), dict):
        ate = metrics["ate"]
        rows = [f"<tr><th>{k}</th>{_cell(f'ate.{k}', ate[k])}</tr>" for k in ATE_KEYS if k in ate]
        parts.append("<h2>Absolute trajectory error (SE3-aligned) [m, deg]</h2>" + _table(["", "value"], rows, "ate"))
    if metrics.get("rpe"):
        rows = []
        for i, r in enumerate(metrics["rpe"]):
            for part, name, unit in (("trans", "translation", "m"), ("rot_deg", "rotation", "deg")):
                label = f"{r.get('delta', '?'):g} {r.get('unit', '')}, {name} [{unit}]"
                stats = r.get(part)
                pairs = _cell(f"rpe.{i}.n_pairs", r.get("n_pairs", 0))
                cells = "".join(_cell(f"rpe.{i}.{part}.{s}", stats[s]) if stats else "<td>-</td>" for s in STATS)
                rows.append(f"<tr><th>{html.escape(label)}</th>{pairs}{cells}</tr>")
        parts.append("<h2>Relative pose error</h2>" + _table(["delta", "pairs", *STATS], rows, "rpe"))
    if isinstance(metrics.get("alignment"), dict):
        a = metrics["alignment"]
        rows = [f"<tr><th>{k}</th>{_cell(f'alignment.{k}', a[k])}</tr>"
                for k in ("mode", "yaw_deg", "s", "t") if k in a]
        parts.append("<h2>Alignment onto ground truth</h2>" + _table(["", "value"], rows, "alignment"))
    return "\n".join(parts)


def _timing_table(timing: dict) -> str:
    rows = [f"<tr><th>{html.escape(stage)}</th><td class='num'>{ms:.3f}</td></tr>"
            for stage, ms in timing.get("stages_ms_per_frame", {}).items()]
    for key, label in (("ms_per_frame", "total [ms/frame]"), ("real_time_factor", "real-time factor"),
                       ("wall_s", "wall time [s]"), ("machine", "machine"), ("python", "python")):
        if timing.get(key) is not None:
            rows.append(f"<tr><th>{label}</th><td class='num'>{html.escape(_text(timing[key]))}</td></tr>")
    return "<h2>Timing (mean per frame)</h2>" + _table(["stage", "ms"], rows, "timing")


def versions() -> dict[str, str]:
    """Installed versions from package metadata (fast: imports none of the packages)."""
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version()}
    for label, distributions in VERSION_PACKAGES:
        for name in distributions:
            try:
                found[label] = version(name)
                break
            except PackageNotFoundError:
                continue
        else:
            found[label] = "not installed"
    return found


def _image(path: Path, caption: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def write_report(run: RunData, images: list[tuple[Path, str]], files: list[Path], path: Path) -> Path:
    """Write ``path``: the run's tables, the ``images`` (PNG path, caption) embedded, links to ``files``."""
    from slam.trajectory_io import atomic_write_text

    metrics = run.metrics or {}
    sub = " · ".join(html.escape(str(x)) for x in (metrics.get("sequence"), run.mode) if x)
    body = [f"<h1>{html.escape(run.name)}</h1>",
            f'<p class="sub">{sub} · report written {datetime.datetime.now().isoformat(timespec="seconds")}</p>']
    if run.problems:
        items = "".join(f"<li>{html.escape(p)}</li>" for p in run.problems)
        body.append(f'<h2>Problems</h2><ul class="problems" id="problems">{items}</ul>')
    body.append(metrics_tables(metrics) if metrics else "<p>metrics.json missing: no metrics.</p>")
    if run.timing:
        body.append(_timing_table(run.timing))
    body.append("<h2>Plots</h2>")
    body += [_image(p, caption) for p, caption in images]
    if files:
        links = "".join(f'<li><a href="{html.escape(f.name)}">{html.escape(f.name)}</a></li>' for f in files)
        body.append(f"<h2>Files</h2><ul>{links}</ul>")
    if run.config_text:
        body.append(f"<h2>Settings (config.yaml)</h2><pre id='config'>{html.escape(run.config_text)}</pre>")
    rows = [f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in versions().items()]
    body.append("<h2>Software</h2>" + _table(["package", "version"], rows, "versions"))
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>slam run {html.escape(run.name)}</title><style>{STYLE}</style></head>\n"
            f'<body data-images-total="{len(images)}" data-images-loaded="0">\n' + "\n".join(body)
            + f"\n<script>{SCRIPT}</script>\n</body></html>\n")
    return atomic_write_text(path, page)
