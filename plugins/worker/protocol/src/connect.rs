//! Connecting to NATS with credentials, the same way on both sides.

use async_nats::{Client, ConnectErrorKind, ConnectOptions, ServerAddr};
use std::{path::PathBuf, time::Duration};

/// How to authenticate to NATS. At least one credential is required unless
/// `insecure` says otherwise: a worker runs whatever tasks reach it, so an
/// open server would let anyone on the network run node types on it.
///
/// Written once for both ends: the `worker` backend's settings (serde, with
/// the JSON Schema derived) and `backplane worker`'s flags (clap, with the
/// `cli` feature), so a credential added here reaches both.
#[derive(Debug, Clone, Default, serde::Deserialize, schemars::JsonSchema)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
#[serde(default)]
pub struct NatsAuth {
    /// NATS user (with password).
    #[cfg_attr(feature = "cli", arg(long, env = "BACKPLANE_NATS_USER"))]
    pub user: Option<String>,
    /// NATS password.
    #[cfg_attr(feature = "cli", arg(long, env = "BACKPLANE_NATS_PASSWORD", hide_env_values = true))]
    pub password: Option<String>,
    /// NATS token.
    #[cfg_attr(feature = "cli", arg(long, env = "BACKPLANE_NATS_TOKEN", hide_env_values = true))]
    pub token: Option<String>,
    /// NATS .creds file (JWT and nkey seed).
    #[cfg_attr(feature = "cli", arg(long = "creds", value_name = "FILE"))]
    pub creds_file: Option<PathBuf>,
    /// CA certificate to trust for TLS.
    #[cfg_attr(feature = "cli", arg(long, value_name = "FILE"))]
    pub tls_ca: Option<PathBuf>,
    /// Client certificate for mutual TLS (with the client key).
    #[cfg_attr(feature = "cli", arg(long, value_name = "FILE"))]
    pub tls_cert: Option<PathBuf>,
    /// Client key for mutual TLS.
    #[cfg_attr(feature = "cli", arg(long, value_name = "FILE"))]
    pub tls_key: Option<PathBuf>,
    /// Refuse a connection without TLS.
    #[cfg_attr(feature = "cli", arg(long))]
    pub require_tls: bool,
    /// Allow a NATS server without authentication (anyone who can publish to
    /// it can run node types on the workers).
    #[cfg_attr(feature = "cli", arg(long))]
    pub insecure: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(
        "no NATS credentials given: set a user and password, a token or a creds file \
         (or allow an unauthenticated server explicitly with `insecure`)"
    )]
    NoCredentials,
    #[error("{0}")]
    BadOptions(String),
    #[error("invalid NATS server address `{url}`: {message}")]
    BadUrl { url: String, message: String },
    #[error(
        "NATS at {urls} rejected the credentials (authorization violation): check the user and password, token or creds file"
    )]
    Rejected { urls: String },
    #[error("cannot reach NATS at {urls}: {message} (is nats-server running with JetStream, `nats-server -js`?)")]
    Unreachable { urls: String, message: String },
    #[error("TLS with NATS at {urls} failed: {message}")]
    Tls { urls: String, message: String },
    #[error("cannot read the NATS creds file {path}: {message}")]
    Creds { path: String, message: String },
}

/// Connects to the first reachable server of `urls`. After a successful
/// connection the client reconnects by itself, forever, when it loses the
/// server; the first connection fails fast so a wrong address or credential
/// is reported at once.
pub async fn connect(
    urls: &[String],
    auth: &NatsAuth,
    client_name: &str,
    timeout: Duration,
) -> Result<Client, ConnectError> {
    let shown = urls.join(",");
    if urls.is_empty() {
        return Err(ConnectError::BadOptions("no NATS server address given".into()));
    }
    let addrs = urls
        .iter()
        .map(|url| {
            url.parse::<ServerAddr>().map_err(|e| ConnectError::BadUrl { url: url.clone(), message: e.to_string() })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut options = ConnectOptions::new().name(client_name).connection_timeout(timeout);
    let mut has_credential = false;
    match (&auth.user, &auth.password) {
        (Some(user), Some(password)) => {
            options = options.user_and_password(user.clone(), password.clone());
            has_credential = true;
        }
        (Some(_), None) => return Err(ConnectError::BadOptions("a NATS user needs a password".into())),
        (None, Some(_)) => return Err(ConnectError::BadOptions("a NATS password needs a user".into())),
        (None, None) => {}
    }
    if let Some(token) = &auth.token {
        options = options.token(token.clone());
        has_credential = true;
    }
    if let Some(path) = &auth.creds_file {
        options = options
            .credentials_file(path)
            .await
            .map_err(|e| ConnectError::Creds { path: path.display().to_string(), message: e.to_string() })?;
        has_credential = true;
    }
    if !has_credential && !auth.insecure {
        return Err(ConnectError::NoCredentials);
    }
    if let Some(ca) = &auth.tls_ca {
        options = options.add_root_certificates(ca.clone());
    }
    match (&auth.tls_cert, &auth.tls_key) {
        (Some(cert), Some(key)) => options = options.add_client_certificate(cert.clone(), key.clone()),
        (None, None) => {}
        _ => {
            return Err(ConnectError::BadOptions(
                "a TLS client certificate needs its key, and the key its certificate".into(),
            ));
        }
    }
    if auth.require_tls {
        options = options.require_tls(true);
    }
    options.connect(addrs).await.map_err(|e| match e.kind() {
        ConnectErrorKind::AuthorizationViolation | ConnectErrorKind::Authentication => {
            ConnectError::Rejected { urls: shown }
        }
        ConnectErrorKind::Tls => ConnectError::Tls { urls: shown, message: e.to_string() },
        _ => ConnectError::Unreachable { urls: shown, message: e.to_string() },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connect_now(auth: NatsAuth) -> Result<Client, ConnectError> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(connect(&["nats://127.0.0.1:1".into()], &auth, "test", Duration::from_millis(200)))
    }

    #[test]
    fn credentials_are_required_unless_insecure() {
        assert!(matches!(connect_now(NatsAuth::default()), Err(ConnectError::NoCredentials)));
        // With `insecure` it gets as far as the (closed) port.
        let insecure = connect_now(NatsAuth { insecure: true, ..NatsAuth::default() });
        assert!(matches!(insecure, Err(ConnectError::Unreachable { .. })), "{insecure:?}");
    }

    #[test]
    fn half_credentials_are_rejected_before_connecting() {
        let user_only = NatsAuth { user: Some("u".into()), ..NatsAuth::default() };
        assert!(matches!(connect_now(user_only), Err(ConnectError::BadOptions(_))));
        let cert_only = NatsAuth { token: Some("t".into()), tls_cert: Some("c.pem".into()), ..NatsAuth::default() };
        assert!(matches!(connect_now(cert_only), Err(ConnectError::BadOptions(_))));
    }
}
