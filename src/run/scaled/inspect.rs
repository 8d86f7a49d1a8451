//! `crisiswatch state inspect` for a scaled group: the engine state lives in
//! the changelog topics, not in `state.dir`, so this reads the latest
//! checkpoint of every shard and incident partition from the broker and
//! says what each holds (read-only: nothing is written, no group is joined).

use serde_json::{json, Value};

use super::internal::read_latest;
use super::wire::{decode, IncidentCheckpoint, ShardCheckpoint};
use super::{ScaledError, Topics};
use crate::config::Config;
use crate::event::format_ts;
use crate::repartition::Owner;

/// What the changelogs of `cfg`'s scaled group hold, as one JSON document:
/// `shard_partitions` (per partition: offset, clock, release point, held
/// events, groups per rule, active alerts) and `incident_partitions` (per
/// partition: offset, release point, held transitions, open incidents).
pub(crate) fn inspect(cfg: &Config) -> Result<Value, ScaledError> {
    let k = cfg
        .sources
        .kafka
        .as_ref()
        .ok_or(ScaledError::NotConfigured)?;
    let so = k.scale_out.clone().unwrap_or_default();
    let topics = Topics::new(k, &so);
    let mut shards = Vec::new();
    for p in 0..topics.shard_partitions {
        let Some(bytes) = read_latest(k, &topics.shards_changelog, p as i32)? else {
            shards.push(json!({ "partition": p, "checkpoint": null }));
            continue;
        };
        let cp: ShardCheckpoint = decode(&bytes)
            .map_err(|e| ScaledError::Checkpoint(format!("shard partition {p}: {e}")))?;
        let owner = Owner::restore(
            cfg,
            cfg.engine.shards,
            topics.shard_partitions,
            [p],
            Vec::new(),
            &cp.owner,
        )
        .map_err(|e| ScaledError::Checkpoint(format!("shard partition {p}: {e}")))?;
        let engine = owner.engine();
        shards.push(json!({
            "partition": p,
            "checkpoint_bytes": bytes.len(),
            "next_offset": cp.next_offset,
            "engine_clock": engine.clock().map(format_ts),
            "released_below": owner.released_below().map(format_ts),
            "held_events": owner.held(),
            "groups": engine.groups_per_rule().iter().map(|(r, n)| json!({"rule": r, "groups": n})).collect::<Vec<_>>(),
            "alert_instances": engine.active_alert_keys(),
        }));
    }
    let mut incidents = Vec::new();
    for q in 0..topics.incident_partitions {
        let Some(bytes) = read_latest(k, &topics.incidents_changelog, q as i32)? else {
            incidents.push(json!({ "partition": q, "checkpoint": null }));
            continue;
        };
        let cp = IncidentCheckpoint::decode(&bytes)
            .map_err(|e| ScaledError::Checkpoint(format!("incident partition {q}: {e}")))?;
        let open: Vec<String> = cp
            .incidents
            .iter()
            .filter_map(|i| {
                serde_json::from_str::<Value>(&i.state)
                    .ok()
                    .and_then(|v| v["key"].as_str().map(str::to_owned))
            })
            .collect();
        incidents.push(json!({
            "partition": q,
            "checkpoint_bytes": bytes.len(),
            "next_offset": cp.next_offset,
            "released_below": cp.released.map(format_ts),
            "held_transitions": cp.held.len(),
            "open_incidents": open,
            // Notifications the partition's next owner sends first (`null`:
            // a checkpoint of a build before they travelled with it).
            "queued_notifications": cp.queued.as_ref().map(Vec::len),
        }));
    }
    Ok(json!({
        "shards_changelog": topics.shards_changelog,
        "incidents_changelog": topics.incidents_changelog,
        "shard_partitions": shards,
        "incident_partitions": incidents,
    }))
}
