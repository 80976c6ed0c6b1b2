//! The upload key (and the other secrets: notification secrets, the PostgreSQL password file,
//! the daemon's bearer token). It is only ever used to sign or compare; `Debug` and `Display`
//! print `[redacted]`, equality is constant-time (`subtle`), and the bytes are overwritten with
//! zeros when the value is dropped (`zeroize`), so a freed key does not linger in the heap.

use std::fmt;
use std::path::Path;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// A secret byte string that never shows itself, compares in constant time and is wiped on
/// drop (copies made by `clone` are wiped when they are dropped too).
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl PartialEq for Secret {
    /// Constant-time in the contents (the lengths may differ in time: they are not secret).
    fn eq(&self, other: &Secret) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl Eq for Secret {}

impl Drop for Secret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl ZeroizeOnDrop for Secret {}

impl Secret {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Secret {
        Secret(bytes.into())
    }

    /// The key bytes, for signing only.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Whether `given` equals the secret, compared in constant time (`subtle`): for checking a
    /// presented credential such as the daemon's bearer token.
    pub fn matches(&self, given: &[u8]) -> bool {
        self.0.as_slice().ct_eq(given).into()
    }

    /// Reads a key file (trailing newline removed). Returns a warning when the file can be read
    /// by group or others.
    pub fn from_file(path: &Path) -> Result<(Secret, Option<String>), String> {
        let text = std::fs::read(path).map_err(|e| format!("cannot read `upload.key_file` {}: {e}", path.display()))?;
        let mut secret = Secret(text);
        while secret.0.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            secret.0.pop();
        }
        if secret.0.is_empty() {
            return Err(format!("`upload.key_file` {} is empty", path.display()));
        }
        Ok((secret, permission_warning(path, "key file")))
    }
}

/// A warning when the secret file at `path` (`what`, for the message: "key file") may be read
/// by group or others; `None` when only its owner can, or its mode cannot be read.
#[cfg(unix)]
pub(crate) fn permission_warning(path: &Path, what: &str) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode();
    (mode & 0o077 != 0).then(|| {
        format!("{what} {} is readable by group or others (mode {:o}); run `chmod 600 {}`", path.display(), mode & 0o777, path.display())
    })
}

#[cfg(not(unix))]
pub(crate) fn permission_warning(_path: &Path, _what: &str) -> Option<String> {
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

    #[test]
    fn compares_by_contents() {
        let s = Secret::new("token-1");
        assert!(s.matches(b"token-1"));
        assert!(!s.matches(b"token-2"));
        assert!(!s.matches(b"token-12"));
        assert!(!s.matches(b""));
        assert_eq!(s, Secret::new("token-1"));
        assert_ne!(s, Secret::new("token-2"));
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
