//! Hot reload: the configuration file read again and applied to the engine
//! and the incident stage everywhere or nowhere, and the files refused
//! because they would switch the monitoring off.

use super::*;

/// Re-reads the configuration file and switches the engine — and, with
/// `incidents`, the incident stage: routes, rule metadata, receivers — to it
/// if valid. The incident receivers are readied first (secrets, TLS), so a
/// reload either applies everywhere or nowhere. Records the outcome in `admin`
/// and `metrics`; on failure the previous configuration keeps running.
pub(crate) fn reload(
    engine: &mut dyn Reconfigure,
    admin: &AdminState,
    metrics: &ReloadMetrics,
    env: &dyn Env,
    incidents: Option<&IncidentManager>,
) -> Result<(ReloadSummary, Config), String> {
    let mut receivers = None;
    let mut restart_needed = Vec::new();
    let result: Result<(ReloadSummary, Config), String> = (|| {
        let path = admin.config_path().ok_or_else(|| {
            "no configuration file to reload (started from the embedded example)".to_string()
        })?;
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let cfg = Config::from_toml_str(&text, env).map_err(|e| e.to_string())?;
        refuse_to_stop_watching(admin, &cfg)?;
        // The tokens are read now, so that one that cannot be read refuses
        // the reload (the running tokens stay) instead of locking everyone
        // out; a rotated admin token takes effect with the reload.
        let sv = &cfg.server;
        let admin_token = Secret::load(sv.admin_token_env.as_deref(), sv.admin_token_file.as_deref())
            .map_err(|e| format!("cannot read the admin token (server.admin_token_env / admin_token_file): {e}; the reload is refused, the running tokens stay"))?;
        Secret::load(sv.read_token_env.as_deref(), sv.read_token_file.as_deref())
            .map_err(|e| format!("cannot read the read token (server.read_token_env / read_token_file): {e}; the reload is refused, the running tokens stay"))?;
        restart_needed = admin.restart_needed(&cfg);
        let prepared = match incidents {
            Some(m) => Some(m.prepare(&cfg).map_err(|e| e.to_string())?),
            None => None,
        };
        let summary = engine.reconfigure(&cfg).map_err(|e| e.to_string())?;
        admin.set_config(Some(path), &text);
        admin.set_token(admin_token);
        if let (Some(m), Some(p)) = (incidents, prepared) {
            let changes = m.apply(p).map_err(|e| {
                format!("the rules were reloaded, but the incident stage could not store the change: {e}")
            })?;
            receivers = Some(changes);
        }
        Ok((summary, cfg))
    })();
    let now = chrono::Utc::now().timestamp_millis();
    let status = match &result {
        Ok((summary, _)) => {
            tracing::info!(
                kept = summary.kept.len(),
                added = summary.added.len(),
                changed = summary.changed.len(),
                removed = summary.removed.len(),
                "Configuration reloaded."
            );
            if !restart_needed.is_empty() {
                tracing::warn!(
                    settings = ?restart_needed,
                    "The reloaded file changes settings that keep their startup values until a restart: {}.",
                    restart_needed.join(", ")
                );
            }
            metrics.reloads.with_label_values(&["success"]).inc();
            metrics.last_ok.set(1);
            metrics.last_success_ts.set(unix_now());
            ReloadStatus {
                at: Some(format_ts(now)),
                ok: true,
                error: None,
                summary: Some(summary.clone()),
                receivers,
                restart_needed,
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "Configuration reload failed; the previous configuration keeps running.");
            metrics.reloads.with_label_values(&["failure"]).inc();
            metrics.last_ok.set(0);
            ReloadStatus {
                at: Some(format_ts(now)),
                ok: false,
                error: Some(e.clone()),
                summary: None,
                receivers: None,
                restart_needed: Vec::new(),
            }
        }
    };
    *lock(&admin.last_reload) = status;
    result
}

/// A file that is valid but would switch the service off: no rules (an
/// editor that truncates the file before writing it leaves an empty, valid
/// file: every alert would resolve, nothing would be watched), or no
/// `[sources.kafka]` where the service was started with one (it could not
/// start again from this file).
fn refuse_to_stop_watching(admin: &AdminState, cfg: &Config) -> Result<(), String> {
    if cfg.rules.is_empty() {
        return Err(
            "the file has no rules: reloading it would resolve every alert and watch nothing \
             (a file emptied by an editor that writes in place?); refused, the running \
             configuration stays — to stop monitoring, stop the service"
                .to_string(),
        );
    }
    if cfg.sources.kafka.is_none() && admin.started_with_kafka() {
        return Err(
            "the file has no [sources.kafka]: the service could not start from it; refused, \
             the running configuration stays"
                .to_string(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests;
