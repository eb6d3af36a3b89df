//! Files and directories of the state, readable by their owner only (SPEC §9): the state holds
//! every policy key and the TLS private key.
//!
//! A directory the emulator creates is 0700 from the start (no window in which it is wider). A
//! directory that exists already keeps its mode: it may be one its owner chose (`--state .`), and
//! what protects the keys is the files. Every file the emulator keeps is 0600, created so and
//! narrowed again on each start, so state left by an older version with wider modes is closed
//! too. Elsewhere than Unix the platform's defaults apply.

use std::io::Write;
use std::path::Path;

use anyhow::Context;

/// Creates `dir` and any missing parents, each 0700; an existing one is left as it is.
pub(crate) fn create_dir(dir: &Path) -> anyhow::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))
}

/// Makes an existing file 0600.
pub(crate) fn narrow(path: &Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("making {} readable by its owner only", path.display()))?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Creates `path` empty with mode 0600 unless it exists, and makes it 0600 either way: for a file
/// another library then opens (the database).
pub(crate) fn touch(path: &Path) -> anyhow::Result<()> {
    options(false)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    narrow(path)
}

/// Writes `bytes` to `path` (replacing it) durably, mode 0600.
pub(crate) fn write(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut file = options(true)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    narrow(path)?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

fn options(truncate: bool) -> std::fs::OpenOptions {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(truncate);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
}
