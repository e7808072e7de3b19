//! The files Tokenmint keeps in its data directory, private to the user it runs as: the
//! directory itself (0700), the SQLite database with its WAL and shared-memory files (0600) and
//! the one-time bootstrap credential (0600), whatever the process's umask.

use crate::domain::bootstrap::BootstrapCredential;
use crate::server::StartError;
use std::io::Write;
use std::path::{Path, PathBuf};

/// File name of the bootstrap credential inside the data directory.
pub const BOOTSTRAP_CREDENTIAL_FILE: &str = "bootstrap-credential.json";

fn io_error(path: &Path, error: std::io::Error) -> StartError {
    StartError::Config(format!("{}: {error}", path.display()))
}

/// Creates the data directory (0700) or, if it exists, takes its group and other permissions
/// away: it holds the database, the secret pepper and the key-encryption key.
pub fn prepare_data_dir(dir: &Path) -> Result<(), StartError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(|e| io_error(dir, e))?;
    match restrict_mode(dir, 0o700) {
        // A directory the platform mounted for us and owns (a Kubernetes emptyDir is root's,
        // mode 0777 or 2777): only its owner may change its mode. The files in it are still
        // created 0600, so carry on rather than refuse to start.
        Err(error) if error.kind() == std::io::ErrorKind::PermissionDenied => {
            tracing::warn!(path = %dir.display(), %error, "the data directory belongs to another user and stays as it is; its files are created private (0600)");
            Ok(())
        }
        other => other.map_err(|e| io_error(dir, e)),
    }
}

/// Fails unless a file can be created in the data directory: checked before bootstrapping, so
/// a bootstrap never commits a credential that cannot then be handed over.
pub fn check_writable(dir: &Path) -> Result<(), StartError> {
    prepare_data_dir(dir)?;
    let probe = dir.join(".write-probe");
    write_private_file(&probe, |_| Ok(()))?;
    std::fs::remove_file(&probe).map_err(|e| io_error(&probe, e))
}

/// Creates the SQLite file 0600 before SQLite opens it (SQLite gives its `-wal` and `-shm`
/// files the database file's mode) and tightens files an earlier release left readable.
pub fn private_sqlite_files(database: &Path) -> Result<(), StartError> {
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(database).map_err(|e| io_error(database, e))?;
    for suffix in ["", "-wal", "-shm"] {
        let path = PathBuf::from(format!("{}{suffix}", database.display()));
        if path.exists() {
            restrict(&path, 0o600)?;
        }
    }
    Ok(())
}

/// Writes the bootstrap credential, readable by this user only, and returns its path.
pub fn write_bootstrap_credential(
    dir: &Path,
    credential: &BootstrapCredential,
) -> Result<PathBuf, StartError> {
    prepare_data_dir(dir)?;
    let path = dir.join(BOOTSTRAP_CREDENTIAL_FILE);
    let json = serde_json::json!({
        "organization_id": credential.organization_id.as_str(),
        "service_user_id": credential.service_user_id.as_str(),
        "key_id": credential.key_id.as_str(),
        "secret": credential.secret.expose(),
    });
    write_private_file(&path, |file| writeln!(file, "{json}"))?;
    Ok(path)
}

/// Writes a file readable by this user only (an existing one is made private first), through a
/// buffer, and syncs it.
pub fn write_private_file(
    path: &Path,
    write: impl FnOnce(&mut std::io::BufWriter<&std::fs::File>) -> std::io::Result<()>,
) -> Result<(), StartError> {
    let file = create_private_file(path)?;
    let mut buffered = std::io::BufWriter::new(&file);
    write(&mut buffered)
        .and_then(|()| buffered.flush())
        .and_then(|()| file.sync_all())
        .map_err(|e| io_error(path, e))
}

/// Creates (or truncates) a file readable by this user only.
pub fn create_private_file(path: &Path) -> Result<std::fs::File, StartError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options.open(path).map_err(|e| io_error(path, e))?;
    // An existing file keeps its mode on open: make sure it is private before writing.
    restrict(path, 0o600)?;
    Ok(file)
}

/// Takes away every permission bit outside `mode`, saying so when it changed anything.
fn restrict(path: &Path, mode: u32) -> Result<(), StartError> {
    restrict_mode(path, mode).map_err(|e| io_error(path, e))
}

#[cfg(unix)]
fn restrict_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let current = std::fs::metadata(path)?.permissions().mode() & 0o777;
    if current & !mode != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(current & mode))?;
        tracing::info!(path = %path.display(), from = format!("{current:o}"), to = format!("{:o}", current & mode), "tightened permissions");
    }
    Ok(())
}

#[cfg(not(unix))]
fn restrict_mode(_path: &Path, _mode: u32) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
#[cfg(unix)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn an_existing_open_data_dir_is_tightened() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("data");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        prepare_data_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
    }

    #[test]
    fn sqlite_files_left_readable_are_tightened() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("t.db");
        for name in ["t.db", "t.db-wal"] {
            let path = dir.path().join(name);
            std::fs::write(&path, b"").unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        private_sqlite_files(&db).unwrap();
        assert_eq!(mode(&db), 0o600);
        assert_eq!(mode(&dir.path().join("t.db-wal")), 0o600);
    }
}
