#!/usr/bin/env python3
"""Generates the Grafana dashboards in dashboards/ (run after editing panels here).

Every panel's PromQL is checked against a real Prometheus scraping a demo run by
tests/prometheus.rs (and the Kafka, invalid-input and delivery panels, without
their `or on () vector(0)` fallback, against `crisiswatch run` on Kafka by
tests/prometheus_run.rs), so keep expressions here and in the JSON in sync by
re-running this script.

Every metric selector is scoped to the dashboard's `job` and `instance`
variables by `scoped()`, so the expressions below name only what they are about;
joins between series match on `job, instance` as well.
"""
import json
import os
import re

DS = {"type": "prometheus", "uid": "${datasource}"}
SCOPE = 'job=~"$job", instance=~"$instance"'


def scoped(expr):
    """Adds the job and instance matchers to every crisiswatch_* selector."""
    def add(m):
        name, labels = m.group(1), m.group(3)
        return "%s{%s%s}" % (name, SCOPE, ", " + labels if labels else "")
    return re.sub(r"\b(crisiswatch_[a-zA-Z0-9_]+)(\{([^}]*)\})?", add, expr)


def panel(pid, title, exprs, x, y, w=12, h=8, kind="timeseries", unit=None, desc="", legend=None, overrides=None, repeat=None):
    targets = []
    for i, e in enumerate(exprs):
        expr, fmt = e if isinstance(e, tuple) else (e, None)
        t = {"refId": chr(ord("A") + i), "expr": scoped(expr), "datasource": DS}
        if fmt:
            t["legendFormat"] = fmt
        if kind == "table":
            t["format"] = "table"
            t["instant"] = True
        targets.append(t)
    p = {
        "id": pid,
        "type": kind,
        "title": title,
        "description": desc,
        "datasource": DS,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "targets": targets,
        "fieldConfig": {"defaults": {}, "overrides": overrides or []},
        "options": {},
    }
    if unit:
        p["fieldConfig"]["defaults"]["unit"] = unit
    if legend:
        p["options"]["legend"] = legend
    if repeat:
        # One copy of the panel per selected value of the variable.
        p.update({"repeat": repeat, "repeatDirection": "h", "maxPerRow": 3})
    return p


def row(pid, title, y):
    return {"id": pid, "type": "row", "title": title, "collapsed": False, "gridPos": {"x": 0, "y": y, "w": 24, "h": 1}, "panels": []}


def dashboard(uid, title, desc, panels, templating):
    return {
        "uid": uid,
        "title": title,
        "description": desc,
        "tags": ["crisiswatch"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "30s",
        "time": {"from": "now-24h", "to": "now"},
        "templating": {"list": templating},
        "annotations": {"list": []},
        "panels": panels,
    }


DATASOURCE_VAR = {
    "name": "datasource",
    "label": "Prometheus",
    "type": "datasource",
    "query": "prometheus",
    "current": {},
    "hide": 0,
}


def query_var(name, label, query):
    """A multi-value variable from a label_values() query, "All" by default."""
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DS,
        "query": {"query": query, "refId": name},
        "definition": query,
        "refresh": 2,
        "includeAll": True,
        "multi": True,
        "allValue": ".*",
        "current": {"text": "All", "value": "$__all"},
        "hide": 0,
    }


# crisiswatch_ready is exported by every crisiswatch process (demo and run).
JOB_VAR = query_var("job", "Job", "label_values(crisiswatch_ready, job)")
INSTANCE_VAR = query_var("instance", "Instance", 'label_values(crisiswatch_ready{job=~"$job"}, instance)')
RULE_VAR = query_var("rule", "Rule", 'label_values(crisiswatch_rule_info{job=~"$job", instance=~"$instance"}, rule)')

# Slices are named by whatever attributes the rules group by: Grafana's "Auto"
# legend shows the labels that tell the series apart (no attribute named here,
# so the dashboards fit any configuration).
AUTO = "__auto"

# The slices nearest to paging come first: highest for `above` rules, lowest
# for `below` ones (`crisiswatch_rule_info{condition}`).
ABOVE = 'on (job, instance, rule) crisiswatch_rule_info{condition="above"}'
BELOW = 'on (job, instance, rule) crisiswatch_rule_info{condition="below"}'
VALUE = 'crisiswatch_indicator_value{rule=~"$rule"}'
# The rule's first (lowest-severity) threshold: the lowest for `above`, the
# highest for `below`.
FIRST_ABOVE = 'min by (job, instance, rule) (crisiswatch_indicator_threshold{severity!="clear"})'
FIRST_BELOW = 'max by (job, instance, rule) (crisiswatch_indicator_threshold{severity!="clear"})'

def right(pattern, unit):
    """Series whose legend matches `pattern` on a right axis in `unit`
    (a panel that shows two kinds of figure: a count and an age, bytes and
    failures)."""
    return [{"matcher": {"id": "byRegexp", "options": pattern},
             "properties": [{"id": "unit", "value": unit}, {"id": "custom.axisPlacement", "value": "right"}]}]


firing_red = [{"matcher": {"id": "byRegexp", "options": ".*threshold.*"}, "properties": [{"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [10, 10]}}]}]

overview = dashboard(
    "crisiswatch-overview",
    "crisiswatch — Crisis overview",
    "Every indicator against its thresholds by slice, current and recent incidents, the top slices of every rule.",
    [
        panel(1, "Alerts firing", [("count(crisiswatch_alert_state == 2) or vector(0)", "firing")], 0, 0, 4, 5, kind="stat",
              desc="Alert instances (rule × slice) firing now."),
        panel(2, "Alerts pending", [("count(crisiswatch_alert_state == 1) or vector(0)", "pending")], 4, 0, 4, 5, kind="stat",
              desc="Breaching, waiting for the rule's `for` duration."),
        panel(3, "Incidents opened (24h)", [("sum(increase(crisiswatch_incident_notifications_total{action=\"open\"}[24h]))", "opened")], 8, 0, 4, 5, kind="stat"),
        panel(4, "Transitions by rule and state", [("sum by (rule, state) (increase(crisiswatch_alert_transitions_total[5m]))", "{{rule}} {{state}}")], 12, 0, 12, 5,
              desc="Pending, firing, escalated and resolved transitions per 5 minutes."),
        row(5, "Indicators against thresholds", 5),
        panel(6, "Indicator by slice vs thresholds ($rule)",
              [("crisiswatch_indicator_value{rule=~\"$rule\"}", AUTO),
               ("crisiswatch_indicator_threshold{rule=~\"$rule\", severity!=\"clear\"}", "{{rule}} {{severity}} threshold"),
               # Guarded rules judge a confidence bound (the value above); this is the point estimate beside it.
               # A label of its own tells it from the value of the same slice
               # in the Auto legend (which may leave metric names out).
               ("label_replace(crisiswatch_indicator_estimate{rule=~\"$rule\"}, \"shown\", \"point estimate\", \"\", \"\")", AUTO)],
              0, 6, 24, 10, desc="Each slice's indicator value; dashed lines are the rule's thresholds.", overrides=firing_red),
        panel(7, "Margin past the first threshold by slice ($rule)",
              [("(%s - on (job, instance, rule) group_left () %s and %s) or (%s - on (job, instance, rule) group_right () %s and %s)"
                % (VALUE, FIRST_ABOVE, ABOVE, FIRST_BELOW, VALUE, BELOW), AUTO)],
              0, 16, 12, 9, desc="How far each slice is past its rule's first threshold, in the rule's own units: above 0 means past it, whichever side the rule pages on (value − threshold for `above` rules, threshold − value for `below` ones)."),
        panel(8, "Alert state by slice ($rule)",
              [("crisiswatch_alert_state{rule=~\"$rule\"} > 0", AUTO)],
              12, 16, 12, 9, kind="state-timeline", desc="1 pending, 2 firing: the shaded periods are the incidents."),
        row(9, "Incidents", 25),
        panel(10, "Firing now", [("crisiswatch_alert_state == 2", None)], 0, 26, 24, 8, kind="table",
              desc="Every firing rule × slice (details: /api/v1/alerts)."),
        panel(11, "Top slices: $rule",
              [("topk(10, %s and %s) or bottomk(10, %s and %s)" % (VALUE, ABOVE, VALUE, BELOW), AUTO),
               ("crisiswatch_indicator_threshold{rule=~\"$rule\", severity!=\"clear\"}", "{{severity}} threshold")],
              0, 34, 8, 8, overrides=firing_red, repeat="rule",
              desc="The ten slices of each selected rule nearest to paging — the highest for an `above` rule, the lowest for a `below` one — against its thresholds (one panel per rule)."),
    ],
    [DATASOURCE_VAR, JOB_VAR, INSTANCE_VAR, RULE_VAR],
)

operations = dashboard(
    "crisiswatch-operations",
    "crisiswatch — Operations",
    "Health of the monitor itself: throughput, lag, invalid and late events, window groups, latency quantiles, delivery.",
    [
        panel(1, "Ready", [("crisiswatch_ready", "ready")], 0, 0, 4, 5, kind="stat", desc="1 when sources are healthy and the configuration is loaded."),
        panel(2, "Last config reload OK", [("crisiswatch_config_last_reload_successful", "ok")], 4, 0, 4, 5, kind="stat"),
        panel(3, "Events by outcome", [("sum by (outcome) (rate(crisiswatch_events_total[5m]))", "{{outcome}}")], 8, 0, 16, 5, unit="ops"),
        row(4, "Input", 5),
        panel(5, "Received by source and type", [("sum by (source, type) (rate(crisiswatch_events_received_total[5m]))", "{{source}} {{type}}")], 0, 6, 12, 8, unit="ops"),
        panel(6, "Invalid by reason", [("sum by (reason) (rate(crisiswatch_events_invalid_total[5m]))", "{{reason}}")], 12, 6, 12, 8, unit="ops",
              desc="Rejected inputs; with Kafka they are in the dead-letter topic."),
        panel(7, "Late events by rule", [("sum by (rule) (rate(crisiswatch_rule_events_late_total[5m]))", "{{rule}}")], 0, 14, 12, 8, unit="ops"),
        panel(8, "Watermark delay", [("crisiswatch_watermark_delay_seconds", "delay {{instance}}")], 12, 14, 12, 8, unit="s",
              desc="Wall clock minus the event-time watermark."),
        panel(9, "Kafka consumer lag by topic", [("sum by (topic) (crisiswatch_kafka_consumer_lag_messages) or on () vector(0)", "{{topic}}")], 0, 22, 12, 8, unit="short",
              desc="Messages behind the partitions' high watermark. 0 also when no Kafka source runs and while no partition is assigned (a broker outage, a rebalance): the lag is then unknown, not 0 — see Ready and the alerts CrisiswatchConsumerStalled and CrisiswatchNoEvents."),
        panel(10, "Kafka messages and rebalances", [("sum by (topic) (rate(crisiswatch_kafka_messages_total[5m])) or on () vector(0)", "{{topic}}"),
                                                   ("sum(increase(crisiswatch_kafka_rebalances_total[5m])) or on () vector(0)", "rebalances")], 12, 22, 12, 8,
              unit="ops", overrides=right("^rebalances$", "short"),
              desc="Messages consumed per second by topic; rebalances in the last 5 minutes (right axis)."),
        row(11, "Engine", 30),
        panel(12, "Live window groups by rule", [("crisiswatch_window_groups", "{{rule}}")], 0, 31, 8, 8),
        panel(13, "Group and series overflow", [("sum by (rule) (rate(crisiswatch_window_group_overflow_total[5m]))", "groups {{rule}}"),
                                               ("crisiswatch_indicator_series_dropped", "series {{rule}}")], 8, 31, 8, 8,
              unit="ops", overrides=right("^series.*", "short"),
              desc="Events refused per second because a rule reached max_groups_per_rule; slices not exported because a rule has more than server.max_series_per_rule (right axis, a count)."),
        panel(14, "Dedup ids remembered", [("crisiswatch_dedup_ids", "ids {{instance}}"),
                                           ("rate(crisiswatch_dedup_evicted_total[5m])", "forgotten early /s {{instance}}")], 16, 31, 8, 8, overrides=right("^forgotten.*", "ops"),
              desc="Event ids held for deduplication; forgotten early: the memory was full (engine.dedup_max_ids), so a redelivery of one counts again. Raise dedup_max_ids above events per second x dedup_horizon."),
        panel(15, "Processing lag quantiles", [("crisiswatch_processing_lag_seconds", "p{{quantile}} {{instance}}")], 0, 39, 12, 8, unit="s",
              desc="Wall clock minus event time when events are applied (hdrhistogram)."),
        panel(16, "Event-to-incident latency quantiles", [("crisiswatch_event_to_incident_seconds", "p{{quantile}} {{instance}}")], 12, 39, 12, 8, unit="s",
              desc="From the event that crossed a threshold to the incident transition (hdrhistogram)."),
        row(17, "Delivery", 47),
        panel(18, "Delivery attempts and failures", [("sum by (receiver) (rate(crisiswatch_notification_attempts_total[5m])) or on () vector(0)", "attempts {{receiver}}"),
                                                    ("sum by (receiver, reason) (rate(crisiswatch_notification_failures_total[5m])) or on () vector(0)", "failures {{receiver}} {{reason}}")],
              0, 48, 8, 8, unit="reqps", desc="Webhook deliveries per receiver; failures by reason (timeout, connect, rate_limited, server_error, rejected)."),
        panel(19, "Outbox depth and oldest undelivered", [("sum by (receiver) (crisiswatch_outbox_depth) or on () vector(0)", "depth {{receiver}}"),
                                                         ("max by (receiver) (crisiswatch_outbox_oldest_age_seconds) or on () vector(0)", "oldest {{receiver}}")],
              8, 48, 8, 8, unit="short", overrides=right("^oldest.*", "s"),
              desc="Notifications persisted and not yet delivered; the age of the oldest (right axis)."),
        panel(21, "Delivery latency", [("crisiswatch_notification_latency_seconds or on () vector(0)", "{{receiver}} p{{quantile}}"),
                                      ("sum by (receiver) (rate(crisiswatch_notification_latency_seconds_sum[5m])) / sum by (receiver) (rate(crisiswatch_notification_latency_seconds_count[5m])) or on () vector(0)", "{{receiver}} mean")],
              16, 48, 8, 8, unit="s", desc="From persisted to 2xx, retries included: quantiles over the last 1-2 minutes (hdrhistogram) and the 5-minute mean."),
        panel(20, "Config reloads", [("sum by (result) (increase(crisiswatch_config_reloads_total[1h]))", "{{result}}")], 0, 56, 12, 6),
        panel(22, "Open incidents, dead letters, alerts no route takes", [("crisiswatch_incidents_open or on () vector(0)", "open incidents"),
                                                     ("sum by (receiver) (crisiswatch_outbox_dead_letters) or on () vector(0)", "dead letters {{receiver}}"),
                                                     ("sum by (rule) (increase(crisiswatch_alerts_unrouted_total[1h]))", "unrouted {{rule}} (1h)")], 12, 56, 12, 6,
              desc="Alerts that fired or escalated while no [[incidents.routes]] takes them are counted, not paged: a route typo (`crisiswatch check` warns) silently loses crises."),
        row(23, "Durable state", 62),
        panel(24, "Checkpoint age", [("time() - max by (instance) (crisiswatch_checkpoint_last_success_timestamp_seconds) or on () vector(0)", "age {{instance}}")],
              0, 63, 8, 7, unit="s",
              desc="Since the last checkpoint was written (every state.checkpoint_interval; 0 where none is written: the demo, checkpoint_interval 0). A line that keeps rising: checkpoints stopped — Kafka commits wait for the next one, and a restart re-reads everything since (alert CrisiswatchCheckpointStale)."),
        panel(25, "Checkpoint time and ingestion stall", [("max by (instance) (crisiswatch_checkpoint_duration_seconds) or on () vector(0)", "snapshot to written {{instance}}"),
                                                          ("max by (instance) (crisiswatch_checkpoint_stall_seconds) or on () vector(0)", "engine stalled {{instance}}"),
                                                          ("max by (instance) (crisiswatch_restore_duration_seconds) or on () vector(0)", "last restore {{instance}}")],
              8, 63, 8, 7, unit="s",
              desc="The last checkpoint: total time to the fsynced write, and the part that held up the engine task (the snapshot; the write runs beside it). The restore time at the last start."),
        panel(26, "Checkpoint size and failures", [("max by (instance) (crisiswatch_checkpoint_bytes) or on () vector(0)", "bytes {{instance}}"),
                                                   ("sum by (instance) (increase(crisiswatch_checkpoint_failures_total[10m])) or on () vector(0)", "failures in 10m {{instance}}")],
              16, 63, 8, 7, unit="bytes", overrides=right("^failures.*", "short"),
              desc="Engine snapshot bytes of the last checkpoint; writes that failed (disk full, read-only directory) in the last 10 minutes (alert CrisiswatchCheckpointFailing)."),
    ],
    [DATASOURCE_VAR, JOB_VAR, INSTANCE_VAR],
)

here = os.path.dirname(os.path.abspath(__file__))
out = os.path.join(here, "..", "dashboards")
for name, d in [("crisiswatch-overview.json", overview), ("crisiswatch-operations.json", operations)]:
    with open(os.path.join(out, name), "w") as f:
        json.dump(d, f, indent=2, ensure_ascii=False)
        f.write("\n")
print("wrote", out)
