"""The service's Grafana dashboard, built with grafana-foundation-sdk (Grafana's own types).

    python docker/grafana/dashboard.py    # writes docker/grafana/dashboards/dne.json

Edit the panels here, not in the JSON; tests check that the JSON is this script's output
and run every panel's query against the Prometheus of a real compose stack.
"""

from __future__ import annotations

import json
from pathlib import Path

from grafana_foundation_sdk.builders import common, dashboard, prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.common import (
    BigValueGraphMode,
    LegendDisplayMode,
    LegendPlacement,
)
from grafana_foundation_sdk.models.dashboard import DataSourceRef

OUT = Path(__file__).parent / "dashboards" / "dne.json"
DATASOURCE = DataSourceRef(type_val="prometheus", uid="prometheus")  # provisioned with this uid
SERVED = 'route!~"/metrics|/healthz|/readyz"'  # the routes people call, not the probes
RATE = "[$__rate_interval]"


def query(expr: str, legend: str = "") -> prometheus.Dataquery:
    q = prometheus.Dataquery().expr(expr).datasource(DATASOURCE)
    return q.legend_format(legend) if legend else q


def quantile(q: float, histogram: str, selector: str = "") -> str:
    return f"histogram_quantile({q}, sum by (le) (rate({histogram}_bucket{selector}{RATE})))"


def panel(title: str, unit: str, *queries: prometheus.Dataquery) -> timeseries.Panel:
    legend = (
        common.VizLegendOptions()
        .show_legend(True)
        .display_mode(LegendDisplayMode.LIST)
        .placement(LegendPlacement.BOTTOM)
    )
    p = timeseries.Panel().title(title).unit(unit).datasource(DATASOURCE).legend(legend)
    p = p.height(8).span(12)
    for ref_id, q in zip("ABCDEFGH", queries, strict=False):
        p = p.with_target(q.ref_id(ref_id))
    return p


def build() -> dict:
    board = (
        dashboard.Dashboard("This X Does Not Exist")
        .uid("dne")
        .tags(["dne"])
        .refresh("10s")
        .time("now-1h", "now")
        .with_panel(
            stat.Panel()
            .title("Ready replicas")
            .description("api replicas passing /readyz, as the load balancer sees them")
            .datasource(DATASOURCE)
            .graph_mode(BigValueGraphMode.AREA)
            .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]))
            .height(4)
            .span(24)
            .with_target(query('sum(haproxy_backend_active_servers{proxy="api"})').ref_id("A"))
        )
        .with_panel(
            panel(
                "Requests by route and status",
                "reqps",
                query(
                    f"sum by (route, status) (rate(dne_requests_total{{{SERVED}}}{RATE}))",
                    "{{route}} {{status}}",
                ),
            )
        )
        .with_panel(
            panel(
                "Latency",
                "s",
                query(quantile(0.5, "dne_request_duration_seconds", f"{{{SERVED}}}"), "p50"),
                query(quantile(0.99, "dne_request_duration_seconds", f"{{{SERVED}}}"), "p99"),
            )
        )
        .with_panel(
            panel(
                "Batch size",
                "none",
                query(
                    f"sum(rate(dne_batch_size_sum{RATE})) / sum(rate(dne_batch_size_count{RATE}))",
                    "mean",
                ),
                query(quantile(0.99, "dne_batch_size"), "p99"),
            )
        )
        .with_panel(
            panel(
                "Queue depth",
                "none",
                # One queue per model version: two while a new version switches in.
                query(
                    "sum by (instance, model, version) (dne_queue_depth)",
                    "{{instance}} {{model}}/{{version}}",
                ),
            )
        )
        .with_panel(
            panel(
                "Queue wait",
                "s",
                query(quantile(0.5, "dne_queue_wait_seconds"), "p50"),
                query(quantile(0.99, "dne_queue_wait_seconds"), "p99"),
            )
        )
        .with_panel(
            panel(
                "Cache hit ratio",
                "percentunit",
                query(
                    f'sum(rate(dne_cache_lookups_total{{result="hit"}}{RATE}))'
                    f' / sum(rate(dne_cache_lookups_total{{result=~"hit|miss"}}{RATE}))',
                    "hits",
                ),
            )
        )
        .with_panel(
            panel(
                "Rejections (503) by reason",
                "reqps",
                query(f"sum by (reason) (rate(dne_rejections_total{RATE}))", "{{reason}}"),
            )
        )
        .with_panel(
            panel(
                "Images painted",
                "short",
                query(
                    f"sum by (instance) (rate(dne_images_generated_total{RATE}))",
                    "{{instance}}",
                ),
            )
        )
    )
    return json.loads(JSONEncoder(sort_keys=True, indent=2).encode(board.build()))


def render() -> str:
    return json.dumps(build(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    OUT.write_text(render())
    print(f"wrote {OUT}")
