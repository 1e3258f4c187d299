//! Starting a test binary's ignored `worker_*` tests as MPI ranks (used by the distributed tests
//! of oxmx-core and of the facade crate).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub const WORKER_ENV: &str = "OXMX_TEST_DIST_WORKER";

pub fn mpirun() -> Option<String> {
    let found = Command::new("mpirun").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success());
    if !found {
        eprintln!("skipping: mpirun (Open MPI) is not installed; apt-get install openmpi-bin libopenmpi-dev");
        return None;
    }
    Some("mpirun".into())
}

/// Runs the ignored test `worker` on `n` ranks; returns (success, output, seconds).
pub fn run_ranks(n: usize, worker: &str, limit: Duration) -> (bool, String, f64) {
    let exe = std::env::current_exe().expect("test executable path");
    let mut child = Command::new("mpirun")
        .args(["-np", &n.to_string(), "--oversubscribe", "--bind-to", "none"])
        .arg(exe)
        .args(["--exact", worker, "--ignored", "--nocapture", "--test-threads=1"])
        .env(WORKER_ENV, "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        // Containers often forbid the cross-process memory copies of the shared-memory transport.
        .env("OMPI_MCA_btl_vader_single_copy_mechanism", "none")
        // Ranks outnumber cores here: waiting ranks yield instead of spinning.
        .env("OMPI_MCA_mpi_yield_when_idle", "1")
        .env("RAYON_NUM_THREADS", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting mpirun");
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("waiting for mpirun") {
            break Some(s);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let secs = start.elapsed().as_secs_f64();
    let out = child.wait_with_output().expect("mpirun output");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (status.is_some_and(|s| s.success()), if status.is_none() { format!("TIMED OUT after {secs:.0}s\n{text}") } else { text }, secs)
}
