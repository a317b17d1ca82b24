"""``python -m stream_app.dashboards``: regenerate deploy/grafana/dashboards/*.json."""

from stream_app.dashboards import write

for path in write():
    print(f"dashboards: wrote {path}")
