//! The key-encryption key and secret pepper: from configuration, or generated once into a
//! mode-0600 file in the data directory so a single-node install needs no setup.

use crate::config::CoreArgs;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;

/// File name inside the data directory.
pub const FILE_NAME: &str = "secrets.json";

/// The server's own secrets. `Debug` hides them.
pub struct LocalSecrets {
    /// Encrypts signing keys at rest.
    pub key_encryption_key: Vec<u8>,
    /// Keys the HMAC of API-key secrets.
    pub secret_pepper: Vec<u8>,
}

impl std::fmt::Debug for LocalSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LocalSecrets(<redacted>)")
    }
}

#[derive(Serialize, Deserialize)]
struct SecretsFile {
    key_encryption_key: String,
    secret_pepper: String,
}

/// Why the secrets could not be had.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    /// A configured value is not what it should be.
    #[error("{0}")]
    Invalid(String),
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

fn decode(
    name: &str,
    value: &str,
    min_len: usize,
    max_len: usize,
) -> Result<Vec<u8>, SecretsError> {
    let bytes = STANDARD
        .decode(value.trim())
        .map_err(|_| SecretsError::Invalid(format!("{name} must be base64")))?;
    if bytes.len() < min_len || bytes.len() > max_len {
        return Err(SecretsError::Invalid(format!(
            "{name} must decode to {min_len}..={max_len} bytes, got {}",
            bytes.len()
        )));
    }
    Ok(bytes)
}

impl LocalSecrets {
    /// Configured values where given, the data directory's file for the rest (created if needed).
    pub fn load(core: &CoreArgs) -> Result<Self, SecretsError> {
        let configured_kek = configured(
            core.key_encryption_key.as_deref(),
            core.key_encryption_key_file.as_deref(),
        )?
        .map(|v| decode("key encryption key", &v, 32, 32))
        .transpose()?;
        let configured_pepper = configured(
            core.secret_pepper.as_deref(),
            core.secret_pepper_file.as_deref(),
        )?
        .map(|v| decode("secret pepper", &v, 32, 1024))
        .transpose()?;
        if let (Some(key_encryption_key), Some(secret_pepper)) =
            (&configured_kek, &configured_pepper)
        {
            return Ok(Self {
                key_encryption_key: key_encryption_key.clone(),
                secret_pepper: secret_pepper.clone(),
            });
        }
        let file = read_or_create(&core.data_dir)?;
        Ok(Self {
            key_encryption_key: match configured_kek {
                Some(v) => v,
                None => decode(
                    "secrets.json key_encryption_key",
                    &file.key_encryption_key,
                    32,
                    32,
                )?,
            },
            secret_pepper: match configured_pepper {
                Some(v) => v,
                None => decode("secrets.json secret_pepper", &file.secret_pepper, 32, 1024)?,
            },
        })
    }
}

/// A secret given directly, or read from the file that holds it.
fn configured(value: Option<&str>, file: Option<&Path>) -> Result<Option<String>, SecretsError> {
    match (value, file) {
        (Some(value), _) => Ok(Some(value.to_owned())),
        (None, Some(path)) => crate::config::read_setting_file(path)
            .map(Some)
            .map_err(|source| SecretsError::Io {
                path: path.display().to_string(),
                source,
            }),
        (None, None) => Ok(None),
    }
}

fn read_or_create(dir: &Path) -> Result<SecretsFile, SecretsError> {
    let path = dir.join(FILE_NAME);
    let io = |source| SecretsError::Io {
        path: path.display().to_string(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            return serde_json::from_str(&text)
                .map_err(|e| SecretsError::Invalid(format!("{}: {e}", path.display())));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    std::fs::create_dir_all(dir).map_err(io)?;
    let rng = SystemRandom::new();
    let random = || -> Result<String, SecretsError> {
        let mut bytes = [0u8; 32];
        rng.fill(&mut bytes)
            .map_err(|_| SecretsError::Invalid("random number generator failed".into()))?;
        Ok(STANDARD.encode(bytes))
    };
    let file = SecretsFile {
        key_encryption_key: random()?,
        secret_pepper: random()?,
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(&path) {
        Ok(mut handle) => {
            let text = serde_json::to_string_pretty(&file)
                .map_err(|e| SecretsError::Invalid(e.to_string()))?;
            handle.write_all(text.as_bytes()).map_err(io)?;
            handle.sync_all().map_err(io)?;
            tracing::info!(path = %path.display(), "generated local secrets file (mode 0600); back it up with the database");
            Ok(file)
        }
        // Another process created it between our read and our create: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read_or_create(dir),
        Err(e) => Err(io(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn core(dir: &Path) -> CoreArgs {
        let cli = crate::config::Cli::parse_from([
            "tokenmint",
            "bootstrap",
            "--data-dir",
            dir.to_str().unwrap(),
        ]);
        match cli.command {
            crate::config::Command::Bootstrap(b) => b.core,
            _ => unreachable!(),
        }
    }

    #[test]
    fn file_is_created_once_with_mode_0600_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = LocalSecrets::load(&core(dir.path())).unwrap();
        let second = LocalSecrets::load(&core(dir.path())).unwrap();
        assert_eq!(first.key_encryption_key, second.key_encryption_key);
        assert_eq!(first.secret_pepper, second.secret_pepper);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(FILE_NAME))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn configured_values_win_and_must_be_32_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let mut args = core(dir.path());
        args.key_encryption_key = Some(STANDARD.encode([1u8; 32]));
        args.secret_pepper = Some(STANDARD.encode([2u8; 32]));
        let secrets = LocalSecrets::load(&args).unwrap();
        assert_eq!(secrets.key_encryption_key, vec![1u8; 32]);
        assert!(!dir.path().join(FILE_NAME).exists());
        args.key_encryption_key = Some(STANDARD.encode([1u8; 16]));
        assert!(LocalSecrets::load(&args).is_err());
    }

    #[test]
    fn secrets_can_come_from_files() {
        let dir = tempfile::tempdir().unwrap();
        let (kek, pepper) = (dir.path().join("kek"), dir.path().join("pepper"));
        std::fs::write(&kek, format!("{}\n", STANDARD.encode([3u8; 32]))).unwrap();
        std::fs::write(&pepper, STANDARD.encode([4u8; 40])).unwrap();
        let mut args = core(dir.path());
        args.key_encryption_key_file = Some(kek);
        args.secret_pepper_file = Some(pepper);
        let secrets = LocalSecrets::load(&args).unwrap();
        assert_eq!(secrets.key_encryption_key, vec![3u8; 32]);
        assert_eq!(secrets.secret_pepper, vec![4u8; 40]);
        assert!(!dir.path().join(FILE_NAME).exists());
    }
}
