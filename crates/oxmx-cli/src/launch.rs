//! `oxmx launch -n N [--hosts …] [--backend …] -- program args…`: starts N ranks of a program.
//!
//! - MPI (CPUs; also any multi-host run): through Open MPI's own `mpirun`, which starts the ranks
//!   here or over ssh on `--hosts`, gives each its rank, and kills the rest when one dies.
//! - NCCL on one machine: the ranks are started here with `OXMX_RANK`, `OXMX_WORLD_SIZE`,
//!   `OXMX_LOCAL_RANK`, `OXMX_COORDINATOR` (rank 0's rendezvous address) and one GPU each
//!   (`OXMX_DEFAULT_DEVICE=gpu:<local rank % GPUs>`). This process watches them: when one fails,
//!   the others are stopped (an NCCL collective would otherwise wait for the dead rank forever)
//!   and the failure is reported with the rank and its exit status.

use clap::Args;
use oxmx_core::{Error, Result};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

#[derive(Args, Debug)]
pub struct LaunchArgs {
    /// Number of ranks.
    #[arg(short = 'n', long = "nproc", default_value_t = 1)]
    pub n: usize,
    /// Hosts to run on, comma-separated (`host` or `host:slots`); default: this machine.
    #[arg(long)]
    pub hosts: Option<String>,
    /// An MPI hostfile, instead of --hosts.
    #[arg(long)]
    pub hostfile: Option<PathBuf>,
    /// `mpi`, `nccl`, or `any` (NCCL when this machine has a GPU and NCCL's library, else MPI).
    #[arg(long, default_value = "any")]
    pub backend: String,
    /// The coordinator port for NCCL's rendezvous (default: a free port).
    #[arg(long)]
    pub port: Option<u16>,
    /// Print what would be started, and start nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// The program and its arguments (after `--`).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    pub command: Vec<String>,
}

pub fn run(a: LaunchArgs) -> Result<()> {
    if a.n == 0 {
        return Err(Error::invalid("[launch] -n must be at least 1"));
    }
    let backend = match a.backend.as_str() {
        "any" if oxmx_core::distributed::is_available("nccl") => "nccl",
        "any" => "mpi",
        "mpi" | "nccl" => a.backend.as_str(),
        other => return Err(Error::invalid(format!("[launch] unknown backend {other:?}; expected mpi, nccl or any"))),
    };
    let remote = a.hosts.is_some() || a.hostfile.is_some();
    if backend == "mpi" || remote {
        return run_mpirun(&a, backend);
    }
    run_local(&a, backend)
}

/// Environment every rank gets.
fn common_env(backend: &str) -> Vec<(String, String)> {
    vec![("OXMX_DISTRIBUTED_BACKEND".into(), backend.into())]
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| Error::runtime(format!("[launch] finding a free port: {e}")))?;
    Ok(l.local_addr().map_err(|e| Error::runtime(format!("[launch] {e}")))?.port())
}

fn run_mpirun(a: &LaunchArgs, backend: &str) -> Result<()> {
    let mut cmd = Command::new("mpirun");
    cmd.args(["-np", &a.n.to_string(), "--oversubscribe", "--bind-to", "none"]);
    if let Some(h) = &a.hosts {
        cmd.args(["--host", h]);
    }
    if let Some(f) = &a.hostfile {
        cmd.arg("--hostfile").arg(f);
    }
    let mut env = common_env(backend);
    if backend == "nccl" {
        // mpirun only starts the processes; NCCL meets at the first host.
        let first = a.hosts.as_deref().and_then(|h| h.split(',').next()).map(|h| h.split(':').next().unwrap_or(h).to_string());
        let host = first.unwrap_or_else(|| "127.0.0.1".into());
        env.push(("OXMX_COORDINATOR".into(), format!("{host}:{}", a.port.map_or_else(free_port, Ok)?)));
    }
    for (k, v) in &env {
        cmd.arg("-x").arg(format!("{k}={v}"));
    }
    // Open MPI refuses root without these; containers often forbid its cross-process copies.
    cmd.env("OMPI_ALLOW_RUN_AS_ROOT", "1").env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1");
    if std::env::var_os("OMPI_MCA_btl_vader_single_copy_mechanism").is_none() {
        cmd.env("OMPI_MCA_btl_vader_single_copy_mechanism", "none");
    }
    // More ranks than cores: waiting ranks yield the core instead of spinning.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if a.n > cores && std::env::var_os("OMPI_MCA_mpi_yield_when_idle").is_none() {
        cmd.env("OMPI_MCA_mpi_yield_when_idle", "1");
    }
    cmd.args(&a.command);
    if a.dry_run {
        println!("{cmd:?}");
        return Ok(());
    }
    let status = cmd.status().map_err(|e| {
        Error::runtime(format!(
            "[launch] could not start mpirun ({e}): the MPI backend needs Open MPI (apt-get install openmpi-bin libopenmpi-dev)"
        ))
    })?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::runtime(format!("[launch] the job failed: mpirun exited with {} (its report is above)", describe(status))))
    }
}

fn describe(s: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (s.code(), s.signal()) {
        (Some(c), _) => format!("status {c}"),
        (None, Some(sig)) => format!("signal {sig}{}", signal_name(sig).map(|n| format!(" ({n})")).unwrap_or_default()),
        _ => "an unknown status".into(),
    }
}

fn signal_name(sig: i32) -> Option<&'static str> {
    Some(match sig {
        libc_sig::SIGABRT => "SIGABRT",
        libc_sig::SIGKILL => "SIGKILL",
        libc_sig::SIGSEGV => "SIGSEGV",
        libc_sig::SIGTERM => "SIGTERM",
        libc_sig::SIGINT => "SIGINT",
        libc_sig::SIGBUS => "SIGBUS",
        _ => return None,
    })
}

/// Linux signal numbers (x86-64 and aarch64 agree on these).
mod libc_sig {
    pub const SIGINT: i32 = 2;
    pub const SIGABRT: i32 = 6;
    pub const SIGBUS: i32 = 7;
    pub const SIGKILL: i32 = 9;
    pub const SIGSEGV: i32 = 11;
    pub const SIGTERM: i32 = 15;
}

fn run_local(a: &LaunchArgs, backend: &str) -> Result<()> {
    let port = a.port.map_or_else(free_port, Ok)?;
    let gpus = oxmx_core::backend::cuda::device_count().max(1);
    let mut children: Vec<(usize, Child)> = Vec::new();
    for rank in 0..a.n {
        let mut cmd = Command::new(&a.command[0]);
        cmd.args(&a.command[1..]);
        for (k, v) in common_env(backend) {
            cmd.env(k, v);
        }
        cmd.env("OXMX_RANK", rank.to_string())
            .env("OXMX_WORLD_SIZE", a.n.to_string())
            .env("OXMX_LOCAL_RANK", rank.to_string())
            .env("OXMX_COORDINATOR", format!("127.0.0.1:{port}"));
        if backend == "nccl" && std::env::var_os("OXMX_DEFAULT_DEVICE").is_none() {
            cmd.env("OXMX_DEFAULT_DEVICE", format!("gpu:{}", rank % gpus));
        }
        if a.dry_run {
            println!("rank {rank}: {cmd:?}");
            continue;
        }
        match cmd.spawn() {
            Ok(c) => children.push((rank, c)),
            Err(e) => {
                stop_all(&mut children);
                return Err(Error::runtime(format!("[launch] could not start rank {rank} ({}): {e}", a.command[0])));
            }
        }
    }
    if a.dry_run {
        return Ok(());
    }
    watch(children)
}

/// Waits for every rank; the first failure stops the others and is the error.
fn watch(mut children: Vec<(usize, Child)>) -> Result<()> {
    loop {
        let mut i = 0;
        while i < children.len() {
            let (rank, child) = &mut children[i];
            match child.try_wait() {
                Ok(Some(status)) if status.success() => {
                    children.remove(i);
                    continue;
                }
                Ok(Some(status)) => {
                    let rank = *rank;
                    children.remove(i);
                    let others = children.len();
                    stop_all(&mut children);
                    return Err(Error::runtime(format!(
                        "[launch] rank {rank} exited with {}; stopped the other {others} running rank(s)",
                        describe(status)
                    )));
                }
                Ok(None) => {}
                Err(e) => {
                    let rank = *rank;
                    stop_all(&mut children);
                    return Err(Error::runtime(format!("[launch] waiting for rank {rank}: {e}")));
                }
            }
            i += 1;
        }
        if children.is_empty() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// SIGTERM, then SIGKILL for ranks still alive after 5 seconds.
fn stop_all(children: &mut [(usize, Child)]) {
    for (_, c) in children.iter() {
        // SAFETY: signalling our own child by pid.
        unsafe {
            kill(c.id() as i32, libc_sig::SIGTERM);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    for (_, c) in children.iter_mut() {
        while c.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

extern "C" {
    fn kill(pid: i32, sig: i32) -> i32;
}
