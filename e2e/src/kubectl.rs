//! The real `kubectl`, when the machine has one: users read pools and endpoints with it.

use std::path::Path;
use std::process::Command;

/// Runs `kubectl --kubeconfig <kubeconfig> <args>`; `None` when kubectl is not installed,
/// else its stdout, or its stderr when it failed.
pub fn kubectl(kubeconfig: &Path, args: &[&str]) -> Option<Result<String, String>> {
    let out = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .ok()?;
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    Some(if out.status.success() {
        Ok(text(&out.stdout))
    } else {
        Err(text(&out.stderr))
    })
}
