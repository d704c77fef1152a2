//! Files local mode keeps secrets in (the master key, the gateway's credentials): created once,
//! owner-only, never half-written.

use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use zeroize::Zeroizing;

/// Writes `bytes` to a temporary file (mode 0600) and links it into place at `path`, so a concurrent
/// first run never reads a half-written file and never replaces one that already exists (which then
/// wins, silently). Creates the parent folder.
pub fn create_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    create_private_dir(dir)?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}", std::process::id()));
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    let linked = std::fs::hard_link(&tmp, path);
    std::fs::remove_file(&tmp)?;
    match linked {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(e),
        _ => Ok(()),
    }
}

/// Creates `dir` (and missing parents) owner-only (0700); an existing folder is left as it is.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

/// Refuses a secret file other users can read.
pub fn ensure_private(path: &Path) -> Result<(), String> {
    let mode = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?.permissions().mode();
    owner_only(path, mode)
}

/// Refuses a mode that lets group or others in.
fn owner_only(path: &Path, mode: u32) -> Result<(), String> {
    if mode & 0o077 != 0 {
        return Err(format!(
            "{} is readable by other users (mode {:o}); run chmod 600 on it",
            path.display(),
            mode & 0o777
        ));
    }
    Ok(())
}

/// Refuses a file or folder another user owns (who could read or replace it).
fn ours(path: &Path, owner: u32) -> Result<(), String> {
    let me = rustix::process::getuid().as_raw();
    if owner != me {
        return Err(format!("{} belongs to user {owner}, not to the user running keyward ({me})", path.display()));
    }
    Ok(())
}

/// Reads a secret file through one descriptor opened without following a symbolic link, checked
/// on that descriptor (a regular file of ours that only we can read): nothing can swap the file
/// between the checks and the read.
pub fn read_private(path: &Path) -> Result<Zeroizing<Vec<u8>>, String> {
    use rustix::fs::{FileType, Mode, OFlags};
    let shown = path.display();
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK;
    let fd = rustix::fs::open(path, flags, Mode::empty()).map_err(|e| match e {
        rustix::io::Errno::LOOP => symbolic_link(path),
        e => format!("{shown}: {e}"),
    })?;
    let stat = rustix::fs::fstat(&fd).map_err(|e| format!("{shown}: {e}"))?;
    if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
        return Err(format!("{shown} is not a regular file"));
    }
    ours(path, stat.st_uid)?;
    owner_only(path, stat.st_mode)?;
    let mut bytes = Zeroizing::new(Vec::new());
    std::fs::File::from(fd).read_to_end(&mut bytes).map_err(|e| format!("{shown}: {e}"))?;
    Ok(bytes)
}

/// Refuses a secret file or folder that is a symbolic link (it could point anywhere, and be
/// re-pointed later) or that another user owns (who could read or replace it).
pub fn ensure_own(path: &Path) -> Result<(), String> {
    let metadata = std::fs::symlink_metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if metadata.file_type().is_symlink() {
        return Err(symbolic_link(path));
    }
    ours(path, metadata.uid())
}

fn symbolic_link(path: &Path) -> String {
    format!("{} is a symbolic link; keyward keeps its secrets only in real files", path.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_must_be_real_files_of_our_own() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("master.key");
        create_private(&real, b"0123456789abcdef0123456789abcdef").unwrap();
        assert_eq!(ensure_own(&real), Ok(()));
        assert_eq!(ensure_own(dir.path()), Ok(()));
        let link = dir.path().join("linked.key");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert!(ensure_own(&link).unwrap_err().contains("symbolic link"));
        let linked_dir = dir.path().join("data");
        std::os::unix::fs::symlink(dir.path(), &linked_dir).unwrap();
        assert!(ensure_own(&linked_dir).unwrap_err().contains("symbolic link"));
        // `/` belongs to root; whoever runs the tests as another user sees it refused.
        if rustix::process::getuid().as_raw() != 0 {
            assert!(ensure_own(Path::new("/")).unwrap_err().contains("belongs to user 0"));
        }
    }

    #[test]
    fn a_secret_is_read_only_from_a_private_real_file_through_one_descriptor() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("master.key");
        create_private(&real, b"0123456789abcdef0123456789abcdef").unwrap();
        assert_eq!(&read_private(&real).unwrap()[..], b"0123456789abcdef0123456789abcdef");
        let link = dir.path().join("linked.key");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert!(read_private(&link).unwrap_err().contains("symbolic link"), "refused when opened, not before");
        let fifo = dir.path().join("fifo.key");
        rustix::fs::mknodat(rustix::fs::CWD, &fifo, rustix::fs::FileType::Fifo, rustix::fs::Mode::RUSR, 0).unwrap();
        assert!(read_private(&fifo).unwrap_err().contains("not a regular file"));
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(read_private(&real).unwrap_err().contains("readable by other users"));
    }
}
