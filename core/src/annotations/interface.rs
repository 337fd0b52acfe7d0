//! Linux interface names, as annotations name them.

use serde_json::{Map, Value};

use super::json::opt_string;

/// Longest Linux interface name (IFNAMSIZ − 1).
pub const INTERFACE_NAME_MAX_LEN: usize = 15;

/// Checks a Linux interface name: non-empty, at most 15 bytes, not `.` or `..`, no `/`, `:`
/// or whitespace.
pub fn validate_interface_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the interface name is empty: write it, e.g. \"eth0\" or \"net1\"".to_string());
    }
    if name.len() > INTERFACE_NAME_MAX_LEN {
        return Err(format!(
            "interface name `{name}` is longer than {INTERFACE_NAME_MAX_LEN} characters (Linux \
             limit)"
        ));
    }
    if name == "." || name == ".." {
        return Err(format!("`{name}` is not a usable interface name"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| *c == '/' || *c == ':' || c.is_whitespace())
    {
        return Err(format!(
            "interface name `{name}` contains {}, which Linux does not allow",
            describe_char(c)
        ));
    }
    Ok(())
}

fn describe_char(c: char) -> String {
    if c.is_whitespace() {
        "whitespace".to_string()
    } else {
        format!("`{c}`")
    }
}

/// The optional `interface` field of an entry, checked; `""` counts as not named, as in
/// Spiderpool (whose entries without a name go to the Pod's interfaces in order).
pub(super) fn interface_field(obj: &Map<String, Value>) -> Result<Option<String>, String> {
    let iface = opt_string(obj, "interface", "\"eth0\"")?.filter(|i| !i.is_empty());
    if let Some(name) = &iface {
        validate_interface_name(name)?;
    }
    Ok(iface)
}
