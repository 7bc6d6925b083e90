//! Is a device answering? One 4 KiB O_DIRECT read, timed, bounded by a deadline.

use std::time::{Duration, Instant};

use thiserror::Error;

use crate::reader::{DeviceReader, ReadError, ReadTarget};

pub const HEALTH_READ_LEN: usize = 4096;

#[derive(Debug, Error)]
pub enum HealthError {
    /// No answer by the deadline: the path is likely dead or the target stuck.
    #[error("{device} is stuck: a {HEALTH_READ_LEN}-byte read did not complete in {waited:?}")]
    Stuck { device: String, waited: Duration },
    #[error("{device}: read returned {got} of {HEALTH_READ_LEN} bytes")]
    ShortRead { device: String, got: usize },
    #[error("{device}: {source}")]
    Io {
        device: String,
        #[source]
        source: ReadError,
    },
}

/// Time a 4 KiB O_DIRECT read of block 0 of `dev_path` (a path, or an fd already open).
pub fn read_latency<'a>(
    reader: &DeviceReader,
    dev_path: impl Into<ReadTarget<'a>>,
    deadline: Instant,
) -> Result<Duration, HealthError> {
    let target = dev_path.into();
    let device = target.to_string();
    let start = Instant::now();
    match reader.read_at(target, 0, HEALTH_READ_LEN, deadline) {
        Ok(b) if b.len() == HEALTH_READ_LEN => Ok(start.elapsed()),
        Ok(b) => Err(HealthError::ShortRead {
            device,
            got: b.len(),
        }),
        Err(ReadError::Timeout { waited, .. }) => Err(HealthError::Stuck { device, waited }),
        Err(source) => Err(HealthError::Io { device, source }),
    }
}
