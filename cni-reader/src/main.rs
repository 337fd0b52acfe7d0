//! `spiderpool`: the aipam CNI IPAM plugin binary. See the crate's README.

use std::io::{Read, Write};
use std::process::ExitCode;

use aipam_cni::config::{log_settings, SUPPORTED_VERSIONS};
use aipam_cni::env::{from_env, Command};
use aipam_cni::error::{CniError, IO_FAILURE};
use aipam_cni::plugin::{error_version, run, ApiFactory};

fn main() -> ExitCode {
    let env = match from_env(|k| std::env::var(k).ok()) {
        Ok(Some(env)) => env,
        Ok(None) => {
            // Run by hand: say what this is (as the reference skel does), on stderr.
            eprintln!(
                "CNI IPAM plugin spiderpool (aipam {}): reads the addresses reserved at Pod admission",
                env!("CARGO_PKG_VERSION")
            );
            eprintln!(
                "CNI protocol versions supported: {}",
                SUPPORTED_VERSIONS.join(", ")
            );
            return ExitCode::SUCCESS;
        }
        Err(e) => return fail(&e, &[]),
    };
    let mut stdin = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut stdin) {
        if env.command != Command::Version {
            return fail(
                &CniError::new(IO_FAILURE, format!("error reading from stdin: {e}")),
                &[],
            );
        }
    }
    aipam_cni::logging::init(&log_settings(&stdin));
    match run(&env, &stdin, &ApiFactory) {
        Ok(out) => {
            if let Some(out) = out {
                let mut stdout = std::io::stdout().lock();
                if writeln!(stdout, "{out}")
                    .and_then(|()| stdout.flush())
                    .is_err()
                {
                    return ExitCode::FAILURE;
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e, &stdin),
    }
}

fn fail(e: &CniError, stdin: &[u8]) -> ExitCode {
    tracing::error!(code = e.code, details = %e.details, "{}", e.msg);
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{}", e.to_json(&error_version(stdin)));
    let _ = stdout.flush();
    ExitCode::FAILURE
}
