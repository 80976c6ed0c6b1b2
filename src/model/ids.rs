//! Identifier rules shared by every door (design §2): event ids, instance ids and package ids.
//! Each check returns the message a user sees, naming the field, so the CLI, HTTP and the
//! library refuse the same id with the same words. Pure; no I/O.

/// An event `id`: 1–128 printable ASCII characters (space to `~`).
pub fn valid_event_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > 128 {
        return Err(format!("`id` must be 1–128 characters, got {}", id.chars().count()));
    }
    if let Some(c) = id.chars().find(|c| !(' '..='~').contains(c)) {
        return Err(format!("`id` must be printable ASCII; it contains {:?}", c));
    }
    Ok(())
}

/// An `instance_id`: 1–64 of ASCII letters, digits and `. _ : -` (the store's field).
pub fn valid_instance_id(id: &str) -> Result<(), String> {
    valid_key("`instance_id`", id)
}

/// A package id: the same characters as an instance id (the store relates records to it in
/// `relate_pkg_instance`, an instance-id field).
pub fn valid_package_id(id: &str) -> Result<(), String> {
    valid_key("package id", id)
}

/// The instance-id rule, its message naming `field`.
fn valid_key(field: &str, id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > 64 {
        return Err(format!("{field} must be 1–64 characters, got {}", id.chars().count()));
    }
    if let Some(c) = id.chars().find(|c| !(c.is_ascii_alphanumeric() || "._:-".contains(*c))) {
        return Err(format!("{field} may only hold letters, digits and . _ : -; it contains {:?}", c));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_field() {
        assert!(valid_event_id("a b~").is_ok());
        assert_eq!(valid_event_id("").unwrap_err(), "`id` must be 1–128 characters, got 0");
        assert_eq!(valid_instance_id("a/b").unwrap_err(), "`instance_id` may only hold letters, digits and . _ : -; it contains '/'");
        assert_eq!(valid_package_id(&"p".repeat(65)).unwrap_err(), "package id must be 1–64 characters, got 65");
        assert!(valid_instance_id("cust-1.a_b:c").is_ok());
    }
}
