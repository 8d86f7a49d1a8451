//! Who may use the admin API: the loaded configuration (for
//! `/api/v1/status`, the listener's limits and the read token) and the admin
//! token. Every process serving the admin API sets them before it binds;
//! `run` and `demo` through [`super::set_up`] (with reloads), the scaled
//! `run` (which does not reload) directly.

use std::path::PathBuf;

use super::AdminState;
use crate::config::Config;
use crate::secret::Secret;

/// Sets the configuration and the admin token of `admin`.
pub(crate) fn set_access(
    admin: &AdminState,
    cfg: &Config,
    config_path: Option<PathBuf>,
    config_text: &str,
) {
    admin.set_config(config_path, config_text);
    match Secret::load(
        cfg.server.admin_token_env.as_deref(),
        cfg.server.admin_token_file.as_deref(),
    ) {
        Ok(token) => admin.set_token(token),
        Err(e) => {
            tracing::warn!(error = %e, "Admin token unavailable; admin endpoints (reload, silences) are refused.")
        }
    }
}
