//! The upload key. It is only ever used to sign; `Debug` and `Display` print `[redacted]`.

use std::fmt;
use std::path::Path;

/// A secret byte string that never shows itself.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Secret {
        Secret(bytes.into())
    }

    /// The key bytes, for signing only.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Reads a key file (trailing newline removed). Returns a warning when the file can be read
    /// by group or others.
    pub fn from_file(path: &Path) -> Result<(Secret, Option<String>), String> {
        let text = std::fs::read(path).map_err(|e| format!("cannot read `upload.key_file` {}: {e}", path.display()))?;
        let mut bytes = text;
        while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            bytes.pop();
        }
        if bytes.is_empty() {
            return Err(format!("`upload.key_file` {} is empty", path.display()));
        }
        Ok((Secret(bytes), permission_warning(path)))
    }
}

#[cfg(unix)]
fn permission_warning(path: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode();
    (mode & 0o077 != 0).then(|| {
        format!("key file {} is readable by group or others (mode {:o}); run `chmod 600 {}`", path.display(), mode & 0o777, path.display())
    })
}

#[cfg(not(unix))]
fn permission_warning(_path: &Path) -> Option<String> {
    None
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_shows_itself() {
        let s = Secret::new("hunter2-very-secret");
        assert!(!format!("{s:?} {s}").contains("hunter2"));
    }

    #[cfg(unix)]
    #[test]
    fn warns_on_open_key_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("key");
        std::fs::write(&p, "k\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let (s, warn) = Secret::from_file(&p).unwrap();
        assert_eq!(s.expose(), b"k");
        assert!(warn.unwrap().contains("chmod 600"));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(Secret::from_file(&p).unwrap().1.is_none());
    }
}
