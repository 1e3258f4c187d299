//! How ranks find each other without MPI (the NCCL backend): the launcher puts the rank, the
//! world size and a coordinator address in the environment; rank 0 listens there and hands
//! every other rank the bytes they must share (NCCL's unique id) over TCP.

use crate::error::{Error, Result};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// This process's rank and the world size, from `oxmx launch` (`OXMX_RANK`, `OXMX_WORLD_SIZE`)
/// or from mpirun (`OMPI_COMM_WORLD_RANK`, `OMPI_COMM_WORLD_SIZE`).
pub(crate) fn rank_and_size() -> Option<(usize, usize)> {
    let get = |a: &str, b: &str| std::env::var(a).or_else(|_| std::env::var(b)).ok().and_then(|v| v.trim().parse::<usize>().ok());
    let rank = get("OXMX_RANK", "OMPI_COMM_WORLD_RANK")?;
    let size = get("OXMX_WORLD_SIZE", "OMPI_COMM_WORLD_SIZE")?;
    (rank < size).then_some((rank, size))
}

/// The coordinator's `host:port` (`OXMX_COORDINATOR`).
pub(crate) fn coordinator() -> Option<String> {
    std::env::var("OXMX_COORDINATOR").ok().filter(|s| !s.is_empty())
}

/// Whether a launcher started this process with everything a rendezvous needs.
pub(crate) fn launched() -> bool {
    rank_and_size().is_some() && coordinator().is_some()
}

/// How long ranks wait for each other (`OXMX_DIST_TIMEOUT` seconds, default 120).
pub(crate) fn timeout() -> Duration {
    let s = std::env::var("OXMX_DIST_TIMEOUT").ok().and_then(|v| v.parse::<f64>().ok()).filter(|&s| s > 0.0).unwrap_or(120.0);
    Duration::from_secs_f64(s)
}

/// Rank 0 sends `payload` to every other rank; the others receive it. Fails (instead of
/// waiting forever) when the others do not show up within `timeout()`.
pub(crate) fn share(payload: Option<&[u8]>, len: usize, rank: usize, size: usize, address: &str) -> Result<Vec<u8>> {
    let deadline = Instant::now() + timeout();
    if rank == 0 {
        let payload = payload.ok_or_else(|| Error::runtime("internal: rank 0 has nothing to share"))?;
        let listener = TcpListener::bind(address)
            .map_err(|e| Error::runtime(format!("[distributed] rank 0 cannot listen on the coordinator address {address}: {e}")))?;
        listener.set_nonblocking(true).map_err(|e| Error::runtime(format!("[distributed] {e}")))?;
        let mut served = 0;
        while served + 1 < size {
            match listener.accept() {
                Ok((mut s, _)) => {
                    s.set_nonblocking(false).ok();
                    s.write_all(payload).map_err(|e| Error::runtime(format!("[distributed] sending the rendezvous: {e}")))?;
                    served += 1;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if Instant::now() > deadline {
                        return Err(Error::runtime(format!(
                            "[distributed] only {served} of {} other ranks reached the coordinator {address} within {:?} (OXMX_DIST_TIMEOUT); did they start, and do they all use the same OXMX_COORDINATOR?",
                            size - 1,
                            timeout()
                        )));
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(Error::runtime(format!("[distributed] accepting a rank on {address}: {e}"))),
            }
        }
        Ok(payload.to_vec())
    } else {
        loop {
            match TcpStream::connect(address) {
                Ok(mut s) => {
                    let mut buf = vec![0u8; len];
                    s.set_read_timeout(Some(deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1)))).ok();
                    s.read_exact(&mut buf)
                        .map_err(|e| Error::runtime(format!("[distributed] rank {rank}: reading the rendezvous from {address}: {e}")))?;
                    return Ok(buf);
                }
                Err(e) => {
                    if Instant::now() > deadline {
                        return Err(Error::runtime(format!(
                            "[distributed] rank {rank} could not reach rank 0 at the coordinator {address} within {:?} (OXMX_DIST_TIMEOUT): {e}",
                            timeout()
                        )));
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }
}
