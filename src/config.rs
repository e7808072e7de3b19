//! Configuration: flags win over `TOKENMINT_*` variables, which win over an optional TOML file
//! (`--config`), which wins over defaults.

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Tokenmint: service users, API keys and short-lived JWTs for machines.
#[derive(Debug, Parser)]
#[command(name = "tokenmint", version, about)]
pub struct Cli {
    /// TOML file of settings named like the flags (`database_url = "postgres://…"`); flags and
    /// environment variables override it.
    #[arg(long, env = "TOKENMINT_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Log format on stderr.
    #[arg(long, env = "TOKENMINT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// Log filter, in `tracing` EnvFilter syntax (e.g. `info`, `tokenmint=debug`).
    #[arg(long, env = "TOKENMINT_LOG", default_value = "info", global = true)]
    pub log_level: String,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
// Parsed once per process; boxing the big variant would only add noise to every match.
#[allow(clippy::large_enum_variant)]
pub enum Command {
    /// Run the gRPC and HTTP servers (bootstrapping an empty database first).
    Serve(ServeArgs),
    /// Create the first organization, admin user and key on an empty database and print them.
    Bootstrap(BootstrapArgs),
    /// List the JWT signing keys, or publish the next one.
    #[command(subcommand)]
    SigningKeys(SigningKeysCommand),
    /// Check the audit trail.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// For load tests only: write many service users and keys straight into the database
    /// (bypassing quotas) and their key IDs and secrets to a private file, one `ID SECRET` per
    /// line, for `tokenmint-bench --keys-file`.
    BenchFixture(BenchFixtureArgs),
}

/// `tokenmint bench-fixture`.
#[derive(Clone, Debug, Args)]
pub struct BenchFixtureArgs {
    /// Shared settings.
    #[command(flatten)]
    pub core: CoreArgs,
    /// Organization that receives the users (`tokenmint bootstrap --json` prints the first).
    #[arg(long)]
    pub organization_id: String,
    /// Service users to create.
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    pub service_users: u32,
    /// Keys per service user.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub keys_per_user: u32,
    /// Where to write the key IDs and secrets (created readable by this user only).
    #[arg(long)]
    pub out: PathBuf,
}

/// `tokenmint audit …`.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check every organization's hash chain from its oldest event; name the first broken link.
    /// Exit code 0 when every chain holds, 1 when one is broken.
    Verify(AuditVerifyArgs),
}

/// `tokenmint audit verify`.
#[derive(Clone, Debug, Args)]
pub struct AuditVerifyArgs {
    /// Shared settings.
    #[command(flatten)]
    pub core: CoreArgs,
}

/// `tokenmint signing-keys …`.
#[derive(Debug, Subcommand)]
pub enum SigningKeysCommand {
    /// Every signing key with its state (PENDING, ACTIVE, RETIRED, EXPIRED) and times.
    List(SigningKeysArgs),
    /// Publish the next signing key now; it signs after the publication period (every replica
    /// follows within its refresh period).
    Rotate(RotateSigningKeyArgs),
}

/// `tokenmint signing-keys list`.
#[derive(Clone, Debug, Args)]
pub struct SigningKeysArgs {
    /// Shared settings.
    #[command(flatten)]
    pub core: CoreArgs,
    /// Print JSON lines instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `tokenmint signing-keys rotate`.
#[derive(Clone, Debug, Args)]
pub struct RotateSigningKeyArgs {
    /// Shared settings.
    #[command(flatten)]
    pub core: CoreArgs,
    /// Sign with the new key at once (an emergency): verifiers that cached the JWKS will not
    /// know it until they fetch it again.
    #[arg(long)]
    pub now: bool,
    /// Print the new key as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Settings shared by every command that opens the database.
#[derive(Clone, Debug, Args)]
pub struct CoreArgs {
    /// Database URL: `postgres://user@host/db` or `sqlite://path`. Default: SQLite in the data directory.
    /// A URL with a password is visible to every local user in the process list as a flag:
    /// prefer the environment or `--database-url-file`.
    #[arg(long, env = "TOKENMINT_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// File holding the database URL (for example a mounted Kubernetes Secret), instead of
    /// `--database-url`. Surrounding whitespace is ignored.
    #[arg(
        long,
        env = "TOKENMINT_DATABASE_URL_FILE",
        conflicts_with = "database_url"
    )]
    pub database_url_file: Option<PathBuf>,
    /// Directory for the SQLite database and the generated local secrets file.
    #[arg(long, env = "TOKENMINT_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,
    /// Token issuer (`iss`), and the audience Tokenmint's own APIs accept. Default: `http://<http-addr>`.
    #[arg(long, env = "TOKENMINT_ISSUER")]
    pub issuer: Option<String>,
    /// Base64 of 32 bytes that encrypt signing keys at rest. Every replica must share it.
    /// Default: generated into `<data-dir>/secrets.json` (mode 0600). As a flag it is visible
    /// to every local user in the process list: prefer the environment or the `-file` flag.
    #[arg(long, env = "TOKENMINT_KEY_ENCRYPTION_KEY", hide_env_values = true)]
    pub key_encryption_key: Option<String>,
    /// File holding the key-encryption key (base64), instead of `--key-encryption-key`.
    #[arg(
        long,
        env = "TOKENMINT_KEY_ENCRYPTION_KEY_FILE",
        conflicts_with = "key_encryption_key"
    )]
    pub key_encryption_key_file: Option<PathBuf>,
    /// Base64 of at least 32 bytes used as the HMAC key for API-key secrets. Every replica must
    /// share it. Default: generated into `<data-dir>/secrets.json` (mode 0600). As a flag it is
    /// visible to every local user in the process list: prefer the environment or the `-file` flag.
    #[arg(long, env = "TOKENMINT_SECRET_PEPPER", hide_env_values = true)]
    pub secret_pepper: Option<String>,
    /// File holding the secret pepper (base64), instead of `--secret-pepper`.
    #[arg(
        long,
        env = "TOKENMINT_SECRET_PEPPER_FILE",
        conflicts_with = "secret_pepper"
    )]
    pub secret_pepper_file: Option<PathBuf>,
    /// Lifetime of tokens minted by keys created without one (e.g. `1h`, `15m`).
    #[arg(long, env = "TOKENMINT_DEFAULT_TOKEN_LIFETIME", default_value = "1h", value_parser = parse_duration)]
    pub default_token_lifetime: Duration,
    /// How long a replica trusts its cached copy of a key (`0s` disables the cache). Changes
    /// reach every replica's cache at once (on PostgreSQL through notifications, and a replica
    /// that lost them flushes its cache on reconnecting), so this only bounds how stale a
    /// replica cut off from the database can be.
    #[arg(long, env = "TOKENMINT_KEY_CACHE_TTL", default_value = "60s", value_parser = parse_duration)]
    pub key_cache_ttl: Duration,
    /// Most active keys a replica keeps in memory (about: the bound is kept per shard, so give
    /// 10 % more than the keys it should hold); the same number again of key IDs known to be
    /// unusable is kept apart, so made-up IDs never push real keys out.
    #[arg(long, env = "TOKENMINT_KEY_CACHE_SIZE", default_value_t = 100_000)]
    pub key_cache_size: u64,
    /// Quota of service users of organizations created without one (and the first one).
    #[arg(long, env = "TOKENMINT_DEFAULT_MAX_SERVICE_USERS", default_value_t = 1000, value_parser = clap::value_parser!(i32).range(1..))]
    pub default_max_service_users: i32,
    /// Quota of active keys per service user in organizations created without one.
    #[arg(long, env = "TOKENMINT_DEFAULT_MAX_API_KEYS_PER_SERVICE_USER", default_value_t = 10, value_parser = clap::value_parser!(i32).range(1..))]
    pub default_max_api_keys_per_service_user: i32,
    /// Most pooled database connections.
    #[arg(long, env = "TOKENMINT_DATABASE_MAX_CONNECTIONS", default_value_t = 16)]
    pub database_max_connections: u32,
    /// How long a call waits for a database connection (a key not in the cache: for its key
    /// read, which it may share with others) before answering UNAVAILABLE.
    #[arg(long, env = "TOKENMINT_DATABASE_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub database_timeout: Duration,
    /// How long start-up keeps retrying while the database cannot be reached, as while it
    /// starts beside this process (compose, a Pod); each attempt waits up to
    /// `--database-timeout`, then a second passes. Wrong credentials, an unknown database or a
    /// malformed URL fail at once. `0s` tries once.
    #[arg(long, env = "TOKENMINT_DATABASE_STARTUP_WAIT", default_value = "30s", value_parser = parse_duration)]
    pub database_startup_wait: Duration,
    /// Algorithm of signing keys made from now on: EdDSA (Ed25519), ES256 or RS256 (for
    /// verifiers without EdDSA). Existing keys keep theirs until they rotate out.
    #[arg(long, env = "TOKENMINT_SIGNING_ALGORITHM", default_value = "EdDSA", value_parser = parse_algorithm)]
    pub signing_algorithm: tokenmint_token::SigningAlgorithm,
    /// How long a signing key signs before the next one takes over (`0s` turns scheduled
    /// rotation off).
    #[arg(long, env = "TOKENMINT_SIGNING_KEY_ROTATION_PERIOD", default_value = "30d", value_parser = parse_duration)]
    pub signing_key_rotation_period: Duration,
    /// How long a new signing key is published in the JWKS before it signs: at least as long
    /// as verifiers cache the JWKS.
    #[arg(long, env = "TOKENMINT_SIGNING_KEY_PUBLICATION_PERIOD", default_value = "1h", value_parser = parse_duration)]
    pub signing_key_publication_period: Duration,
    /// Audiences tokens may be minted for, besides the issuer (comma-separated). Unset means
    /// any well-formed audience.
    #[arg(long, env = "TOKENMINT_ALLOWED_AUDIENCES", value_delimiter = ',')]
    pub allowed_audiences: Vec<String>,
    /// Failed secret checks one address (IPv6: one /64) may make per throttle window before it
    /// is refused outright until the window ends (`0` turns throttling off).
    #[arg(
        long,
        env = "TOKENMINT_THROTTLE_FAILURES_PER_ADDRESS",
        default_value_t = 20
    )]
    pub throttle_failures_per_address: u32,
    /// Failed secret checks against one key ID per throttle window before addresses that have
    /// failed are refused for it; clean addresses (its owner) still get in.
    #[arg(
        long,
        env = "TOKENMINT_THROTTLE_FAILURES_PER_KEY",
        default_value_t = 10
    )]
    pub throttle_failures_per_key: u32,
    /// How long before a key expires its "expires soon" audit event (and notification) goes out.
    #[arg(long, env = "TOKENMINT_KEY_EXPIRY_WARNING", default_value = "7d", value_parser = parse_duration)]
    pub key_expiry_warning: Duration,
    /// Revoke active keys not exchanged for this long (never-used keys count from creation);
    /// `0s`, the default, never does.
    #[arg(long, env = "TOKENMINT_REVOKE_UNUSED_KEYS_AFTER", default_value = "0s", value_parser = parse_duration)]
    pub revoke_unused_keys_after: Duration,
    /// Remove audit events older than this (each chain stays verifiable from its oldest
    /// remaining event); `0s`, the default, keeps them all.
    #[arg(long, env = "TOKENMINT_AUDIT_RETENTION", default_value = "0s", value_parser = parse_duration)]
    pub audit_retention: Duration,
    /// Length of a throttle window.
    #[arg(long, env = "TOKENMINT_THROTTLE_WINDOW", default_value = "1m", value_parser = parse_duration)]
    pub throttle_window: Duration,
}

/// `tokenmint serve`.
#[derive(Clone, Debug, Args)]
pub struct ServeArgs {
    /// Shared settings.
    #[command(flatten)]
    pub core: CoreArgs,
    /// gRPC listen address.
    #[arg(long, env = "TOKENMINT_GRPC_ADDR", default_value = "127.0.0.1:50051")]
    pub grpc_addr: SocketAddr,
    /// HTTP listen address (JWKS, discovery, health).
    #[arg(long, env = "TOKENMINT_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,
    /// Largest request message accepted, in bytes.
    #[arg(long, env = "TOKENMINT_MAX_REQUEST_BYTES", default_value_t = 64 * 1024)]
    pub max_request_bytes: usize,
    /// How long shutdown may take in all, from SIGTERM to exit: the drain delay, the in-flight
    /// calls, and writing the exchanges counted since the last flush.
    #[arg(long, env = "TOKENMINT_SHUTDOWN_GRACE", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
    /// After SIGTERM, how long the server goes on accepting connections and calls while its
    /// health reports NOT_SERVING and `/readyz` 503, so load balancers notice and move away
    /// before it stops listening. Part of `--shutdown-grace`, so it must be shorter.
    #[arg(long, env = "TOKENMINT_DRAIN_DELAY", default_value = "0s", value_parser = parse_duration)]
    pub drain_delay: Duration,
    /// Most connections open at once on each of the gRPC and HTTP ports; further clients wait
    /// in the kernel's backlog until one closes.
    #[arg(long, env = "TOKENMINT_MAX_CONNECTIONS", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
    /// Most connections open at once from one IP address on each port; more are closed at once.
    #[arg(long, env = "TOKENMINT_MAX_CONNECTIONS_PER_IP", default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections_per_ip: u32,
    /// A gRPC connection with no call in flight for this long is closed (clients reconnect
    /// transparently), so connections that only answer pings cannot hold the slots.
    #[arg(long, env = "TOKENMINT_IDLE_TIMEOUT", default_value = "2m", value_parser = parse_duration)]
    pub idle_timeout: Duration,
    /// How long a new connection has to send its opening bytes (the HTTP/2 preface, or a
    /// complete HTTP/1 request head) before it is closed.
    #[arg(long, env = "TOKENMINT_HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub handshake_timeout: Duration,
    /// Most concurrent calls (HTTP/2 streams) on one gRPC connection; more are refused.
    #[arg(long, env = "TOKENMINT_MAX_CONCURRENT_STREAMS", default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_concurrent_streams: u32,
    /// Longest a unary gRPC call may run before it is answered CANCELLED (server-streaming
    /// calls are bounded by their own lifetime, not by this).
    #[arg(long, env = "TOKENMINT_REQUEST_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub request_timeout: Duration,
    /// Proxies (comma-separated CIDR blocks) whose `x-forwarded-for` names the real client,
    /// for throttling and key allowlists. Unset: the header is ignored.
    #[arg(long, env = "TOKENMINT_TRUSTED_PROXIES", value_delimiter = ',', value_parser = parse_cidr)]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// How often exchanges are written to the audit trail (one event per key, one per failing
    /// source) with keys' last-used times. A crash loses at most this much; a clean stop none.
    #[arg(long, env = "TOKENMINT_ACTIVITY_FLUSH_INTERVAL", default_value = "1m", value_parser = parse_duration)]
    pub activity_flush_interval: Duration,
    /// How often expiry notices, unused-key revocation and audit retention run.
    #[arg(long, env = "TOKENMINT_HOUSEKEEPING_INTERVAL", default_value = "1m", value_parser = parse_duration)]
    pub housekeeping_interval: Duration,
    /// How often each replica re-reads the signing keys (and adds the next one when due).
    #[arg(long, env = "TOKENMINT_SIGNING_KEY_REFRESH_PERIOD", default_value = "1m", value_parser = parse_duration)]
    pub signing_key_refresh_period: Duration,
    /// PEM certificate chain: serve gRPC and HTTP over TLS (with `--tls-key`).
    #[arg(long, env = "TOKENMINT_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `--tls-cert`.
    #[arg(long, env = "TOKENMINT_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

fn parse_algorithm(text: &str) -> Result<tokenmint_token::SigningAlgorithm, String> {
    tokenmint_token::SigningAlgorithm::parse(text)
        .ok_or_else(|| format!("{text:?} is not one of EdDSA, ES256, RS256"))
}

fn parse_cidr(text: &str) -> Result<ipnet::IpNet, String> {
    crate::domain::api_keys::parse_cidr(text.trim())
        .ok_or_else(|| format!("{text:?} is not a CIDR block like 10.0.0.0/8"))
}

/// `tokenmint bootstrap`.
#[derive(Clone, Debug, Args)]
pub struct BootstrapArgs {
    /// Shared settings.
    #[command(flatten)]
    pub core: CoreArgs,
    /// Print `{"organization_id","service_user_id","key_id","secret"}` on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Returns `args` with the settings of the config file (from `--config` or `TOKENMINT_CONFIG`,
/// read through `env`) added as flags after the subcommand, except those also given as a flag or
/// through their environment variable. Unknown settings are an error.
pub fn apply_config_file(
    args: Vec<OsString>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Vec<OsString>, String> {
    let text = arg_texts(&args);
    let path = text
        .iter()
        .position(|a| a == "--config")
        .and_then(|i| text.get(i + 1).cloned())
        .or_else(|| {
            text.iter()
                .find_map(|a| a.strip_prefix("--config=").map(str::to_owned))
        })
        .or_else(|| env("TOKENMINT_CONFIG"));
    let Some(path) = path else { return Ok(args) };
    let content = std::fs::read_to_string(&path).map_err(|e| format!("config file {path}: {e}"))?;
    apply_config(args, &path, &content, env)
}

fn arg_texts(args: &[OsString]) -> Vec<String> {
    args.iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect()
}

/// [`apply_config_file`] once the file is read: `content` is the TOML text, `path` only names
/// it in errors.
pub fn apply_config(
    args: Vec<OsString>,
    path: &str,
    content: &str,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Vec<OsString>, String> {
    let text = arg_texts(&args);
    let table: toml::Table = content
        .parse()
        .map_err(|e| format!("config file {path}: {e}"))?;

    let root = Cli::command();
    let global_flags: Vec<String> = root
        .get_arguments()
        .filter_map(|a| a.get_long().map(|l| format!("--{l}")))
        .collect();
    let mut i = 1;
    let subcommand_at = loop {
        let Some(arg) = text.get(i) else {
            return Ok(args);
        };
        if global_flags.contains(arg) {
            i += 2;
        } else if arg.starts_with('-') {
            i += 1;
        } else {
            break i;
        }
    };
    let Some(mut subcommand) = root.find_subcommand(&text[subcommand_at]) else {
        return Ok(args);
    };
    let mut subcommand_at = subcommand_at;
    // `signing-keys rotate`: the flags go after the innermost subcommand.
    while let Some(inner) = text
        .get(subcommand_at + 1)
        .and_then(|name| subcommand.find_subcommand(name))
    {
        subcommand = inner;
        subcommand_at += 1;
    }
    let known_anywhere = |long: &str| {
        fn walk(command: &clap::Command, long: &str) -> bool {
            command.get_arguments().any(|a| a.get_long() == Some(long))
                || command.get_subcommands().any(|c| walk(c, long))
        }
        walk(&root, long)
    };

    let mut injected = Vec::new();
    for (key, value) in &table {
        let long = key.replace('_', "-");
        let arg = subcommand
            .get_arguments()
            .chain(root.get_arguments())
            .find(|a| a.get_long() == Some(long.as_str()) && long != "config");
        let Some(arg) = arg else {
            // One file serves every command: a `serve` setting is no error for `bootstrap`.
            if long != "config" && known_anywhere(&long) {
                continue;
            }
            return Err(format!("config file {path}: unknown setting {key:?}"));
        };
        let flag = format!("--{long}");
        let given_as_flag = text
            .iter()
            .any(|a| *a == flag || a.starts_with(&format!("{flag}=")));
        let given_in_env = arg
            .get_env()
            .and_then(|e| env(&e.to_string_lossy()))
            .is_some();
        if given_as_flag || given_in_env {
            continue;
        }
        let value = match value {
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(n) => n.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            other => {
                return Err(format!(
                    "config file {path}: {key} must be a string, number or boolean, not {}",
                    other.type_str()
                ));
            }
        };
        injected.push(OsString::from(format!("{flag}={value}")));
    }
    let mut result = args;
    let tail = result.split_off(subcommand_at + 1);
    result.extend(injected);
    result.extend(tail);
    Ok(result)
}

/// The secret-bearing flags given on the command line itself, where every local user can read
/// them in the process list (environment variables and files are private to the process).
pub fn secrets_on_command_line(args: &[OsString]) -> Vec<&'static str> {
    ["--key-encryption-key", "--secret-pepper"]
        .into_iter()
        .filter(|flag| {
            args.iter().any(|a| {
                let a = a.to_string_lossy();
                a == *flag || a.starts_with(&format!("{flag}="))
            })
        })
        .collect()
}

/// Longest file a `…-file` setting reads.
pub const MAX_SETTING_FILE_BYTES: u64 = 4096;

/// Reads a setting kept in a file (a mounted secret: `--database-url-file`,
/// `--key-encryption-key-file`, `--secret-pepper-file`). A wrong path (a device, a large file)
/// is refused after [`MAX_SETTING_FILE_BYTES`], never read whole.
pub fn read_setting_file(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(MAX_SETTING_FILE_BYTES + 1)
        .read_to_string(&mut text)?;
    if text.len() as u64 > MAX_SETTING_FILE_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("longer than {MAX_SETTING_FILE_BYTES} bytes: not a setting"),
        ));
    }
    Ok(text)
}

/// Parses `500ms`, `30s`, `15m`, `1h`, `2d` or plain seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 30s, 15m or 1h"))?;
    let (milliseconds_per_unit, per_unit) = match unit {
        "ms" => (1, 0),
        "" | "s" => (0, 1),
        "m" => (0, 60),
        "h" => (0, 3600),
        "d" => (0, 86_400),
        _ => {
            return Err(format!(
                "{text:?} has an unknown unit; use ms, s, m, h or d"
            ));
        }
    };
    let duration = if milliseconds_per_unit == 1 {
        Some(Duration::from_millis(n))
    } else {
        n.checked_mul(per_unit).map(Duration::from_secs)
    };
    // Longer than any setting needs, and short enough to add to any instant without overflow.
    duration
        .filter(|d| *d <= MAX_DURATION)
        .ok_or_else(|| format!("{text:?} is longer than 100 years"))
}

/// The longest duration any setting takes.
const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 86_400);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("1y").is_err());
        assert!(parse_duration("h").is_err());
    }

    fn config_file(content: &str) -> (tempfile::TempDir, String) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenmint.toml");
        std::fs::write(&path, content).unwrap();
        (dir, path.display().to_string())
    }

    fn serve_args(args: &[&str], env: &[(&str, &str)]) -> Result<ServeArgs, String> {
        let args = args.iter().map(OsString::from).collect();
        let env = |name: &str| {
            env.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        };
        let cli = Cli::try_parse_from(apply_config_file(args, env)?).map_err(|e| e.to_string())?;
        match cli.command {
            Command::Serve(args) => Ok(args),
            _ => Err("not serve".into()),
        }
    }

    #[test]
    fn config_file_settings_apply_below_flags_and_environment() {
        let (_dir, path) = config_file(
            "grpc_addr = \"127.0.0.1:7000\"\nissuer = \"https://file\"\nmax_request_bytes = 1000\n",
        );
        let args = serve_args(
            &[
                "tokenmint",
                "--config",
                &path,
                "serve",
                "--issuer",
                "https://flag",
            ],
            &[],
        )
        .unwrap();
        assert_eq!(args.grpc_addr.port(), 7000, "from the file");
        assert_eq!(args.max_request_bytes, 1000, "numbers work");
        assert_eq!(
            args.core.issuer.as_deref(),
            Some("https://flag"),
            "a flag beats the file"
        );

        let env = [("TOKENMINT_CONFIG", path.as_str())];
        let args = serve_args(&["tokenmint", "serve"], &env).unwrap();
        assert_eq!(
            args.core.issuer.as_deref(),
            Some("https://file"),
            "TOKENMINT_CONFIG names the file"
        );
    }

    #[test]
    fn environment_variable_beats_the_file() {
        let (_dir, path) = config_file("issuer = \"https://file\"\n");
        let args = ["tokenmint", "serve", "--config", &path]
            .iter()
            .map(OsString::from)
            .collect();
        let env = |name: &str| (name == "TOKENMINT_ISSUER").then(|| "https://env".to_owned());
        let patched = apply_config_file(args, env).unwrap();
        assert!(
            !patched
                .iter()
                .any(|a| a.to_string_lossy().contains("https://file"))
        );
    }

    #[test]
    fn unknown_config_setting_is_an_error() {
        let (_dir, path) = config_file("databse_url = \"typo\"\n");
        let err = serve_args(&["tokenmint", "serve", "--config", &path], &[]).unwrap_err();
        assert!(err.contains("databse_url"), "{err}");
    }

    #[test]
    fn secret_flags_on_the_command_line_are_noticed() {
        let args: Vec<OsString> = [
            "tokenmint",
            "serve",
            "--secret-pepper=abc",
            "--key-encryption-key-file",
            "/k",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        assert_eq!(secrets_on_command_line(&args), ["--secret-pepper"]);
    }

    fn serve_with_database_url_file(path: &std::ffi::OsStr) -> ServeArgs {
        let cli = Cli::try_parse_from([
            "tokenmint".as_ref(),
            "serve".as_ref(),
            "--database-url-file".as_ref(),
            path,
        ])
        .unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("not serve")
        };
        args
    }

    #[test]
    fn the_database_url_can_come_from_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("url");
        std::fs::write(&path, "postgres://u:p@db/tokenmint\n").unwrap();
        let args = serve_with_database_url_file(path.as_os_str());
        assert_eq!(
            crate::server::database_url(&args.core).unwrap(),
            "postgres://u:p@db/tokenmint",
            "read, with the trailing newline a mounted Secret often has removed"
        );
    }

    #[test]
    fn an_empty_or_missing_database_url_file_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        for path in [empty, dir.path().join("missing")] {
            let args = serve_with_database_url_file(path.as_os_str());
            let err = crate::server::database_url(&args.core)
                .unwrap_err()
                .to_string();
            assert!(err.contains("--database-url-file"), "{err}");
        }
    }

    #[test]
    fn a_duration_too_long_is_refused_not_wrapped() {
        assert_eq!(
            parse_duration("36500d"),
            Ok(Duration::from_secs(36_500 * 86_400))
        );
        for text in ["36501d", "99999999999999999d", "18446744073709551615m"] {
            let err = parse_duration(text).unwrap_err();
            assert!(err.contains("100 years"), "{text}: {err}");
        }
    }

    #[test]
    fn a_database_url_file_that_is_not_a_url_is_refused_unread() {
        let args = serve_with_database_url_file("/dev/zero".as_ref());
        let err = crate::server::database_url(&args.core)
            .unwrap_err()
            .to_string();
        assert!(err.contains("longer than"), "{err}");
    }

    #[test]
    fn the_database_url_and_its_file_conflict() {
        let parsed = Cli::try_parse_from([
            "tokenmint",
            "serve",
            "--database-url",
            "postgres://x",
            "--database-url-file",
            "/u",
        ]);
        assert!(parsed.is_err());
    }

    #[test]
    fn a_secret_and_its_file_conflict() {
        let parsed = Cli::try_parse_from([
            "tokenmint",
            "serve",
            "--secret-pepper",
            "a",
            "--secret-pepper-file",
            "/p",
        ]);
        assert!(parsed.is_err());
    }

    #[test]
    fn cli_parses_the_fixed_flags() {
        let cli = Cli::try_parse_from([
            "tokenmint",
            "serve",
            "--database-url",
            "postgres://x",
            "--data-dir",
            "/d",
            "--grpc-addr",
            "127.0.0.1:1",
            "--http-addr",
            "127.0.0.1:2",
            "--issuer",
            "https://i",
        ])
        .unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("not serve")
        };
        assert_eq!(args.core.database_url.as_deref(), Some("postgres://x"));
        assert_eq!(args.grpc_addr.port(), 1);
        assert_eq!(args.core.issuer.as_deref(), Some("https://i"));
    }
}
