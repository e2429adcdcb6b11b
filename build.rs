//! Records the git revision the binary was built from, for results files.
use std::process::Command;

fn main() {
    // The regression gate builds the baseline revision from an exported
    // tree, where `git describe` would name the checkout around it.
    println!("cargo:rerun-if-env-changed=PUSHBENCH_GIT_REVISION");
    if let Ok(rev) = std::env::var("PUSHBENCH_GIT_REVISION") {
        println!("cargo:rustc-env=PUSHBENCH_GIT_REVISION={rev}");
        return;
    }
    let rev = Command::new("git")
        .args(["describe", "--always", "--dirty", "--abbrev=12"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=PUSHBENCH_GIT_REVISION={rev}");
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/index");
}
