//! The admin token, found the same way by the server and by the CLI's admin commands: the flag
//! or `REVENANT_ADMIN_TOKEN`, then the project file's `admin.token`, then the file
//! `<data>/admin.token`, which `revenant serve` creates at its first start (mode 0600: only its
//! owner may read it) when nothing else sets a token.

use anyhow::{Context, bail};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub const TOKEN_FILE: &str = "admin.token";

/// Bytes of entropy in a generated token (hex-encoded: 64 characters).
const GENERATED_TOKEN_BYTES: usize = 32;

pub fn file_in(data: &Path) -> PathBuf {
    data.join(TOKEN_FILE)
}

/// The server's token: the configured one, or the one kept in `data` (made now if missing).
/// Returns the token and, when it lives in a file, that file.
pub fn for_server(
    configured: Option<String>,
    data: &Path,
) -> anyhow::Result<(String, Option<PathBuf>)> {
    if let Some(token) = configured {
        return Ok((token, None));
    }
    let path = file_in(data);
    std::fs::create_dir_all(data).with_context(|| format!("creating {}", data.display()))?;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
    {
        Ok(mut file) => {
            let mut bytes = [0u8; GENERATED_TOKEN_BYTES];
            getrandom::fill(&mut bytes).context("drawing a random admin token")?;
            let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            file.write_all(format!("{token}\n").as_bytes())
                .and_then(|()| file.sync_all())
                .with_context(|| format!("writing {}", path.display()))?;
            Ok((token, Some(path)))
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok((read(&path)?, Some(path))),
        Err(e) => Err(e).with_context(|| format!("creating {}", path.display())),
    }
}

/// Reads a token file, refusing one that others may read.
pub fn read(path: &Path) -> anyhow::Result<String> {
    let mode = std::fs::metadata(path)
        .with_context(|| format!("reading {}", path.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        bail!(
            "{} may be read by others (mode {:o}); make it private: chmod 600 {}",
            path.display(),
            mode & 0o777,
            path.display()
        );
    }
    let token = std::fs::read_to_string(path)
        .with_context(|| format!("reading {}", path.display()))?
        .trim()
        .to_string();
    if token.len() < revenant_gateway::admin::TOKEN_CHARS_MIN {
        bail!(
            "{} holds no admin token of at least {} characters",
            path.display(),
            revenant_gateway::admin::TOKEN_CHARS_MIN
        );
    }
    Ok(token)
}
